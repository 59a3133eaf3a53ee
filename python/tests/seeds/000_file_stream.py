# Seed 000 (notebook "Spark Streaming基础 - DStream API"), section 2.2 "从文本文件创建DStream"
# (with section 1's SparkContext and the 2-second StreamingContext).
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - the monitored directory is argv[1] (was "/home/jovyan/data/streaming");
#   - the seed gives file_stream no output operation, so nothing it reads would ever show:
#     file_stream.pprint() is added (section 2.1's output operation for its queue stream);
#   - section 1's print of ssc._batchDuration is left out (PySpark 3.5 has no such attribute;
#     000_queue_stream.py keeps it);
#   - start, awaitTerminationOrTimeout(SEED_RUN_SECONDS, default 16) and a graceful stop added.
# Usage: 000_file_stream.py STREAMING_DIR   (files moved into STREAMING_DIR after the start are
# read; names starting with "." are ignored, so write "x.tmp"-style files elsewhere or hidden and
# rename them into place)
import os
import sys

from pyspark import SparkContext, SparkConf
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "16"))

# 创建SparkContext
conf = SparkConf().setAppName("DStream基础")
sc = SparkContext(conf=conf)

# 创建StreamingContext，批处理间隔为2秒
ssc = StreamingContext(sc, 2)

# 创建一个目录用于监控新文件
import os
streaming_dir = sys.argv[1]
os.makedirs(streaming_dir, exist_ok=True)

# 从文件目录创建DStream
file_stream = ssc.textFileStream(streaming_dir)

print(f"监控目录: {streaming_dir}")
print("文件流DStream创建成功")

file_stream.pprint()

ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
