# Seed 001 ("PySpark之SparkStreaming基本操作"), section "词频统计(无状态操作)": the file sscrun.py
# (socket word count, 10-second batches).
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - `import findspark; findspark.init()` removed (PySpark comes from pip);
#   - the socket's host and port are argv[1] and argv[2] (were "localhost", 9999);
#   - ssc.awaitTermination() became awaitTerminationOrTimeout(SEED_RUN_SECONDS, default 32)
#     followed by a graceful stop (the seed ran until Ctrl-C).
# Usage: 001_network_word_count.py HOST PORT
import os
import sys

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "32"))

# 创建环境
sc = SparkContext(master="local[2]", appName="NetworkWordCount")
ssc = StreamingContext(sc, 10)  # 每隔一秒钟监听一次数据

# 监听端口数据
lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))
#　拆分单词
words = lines.flatMap(lambda line: line.split(" "))
# 统计词频
pairs = words.map(lambda word:(word, 1))
wordCounts = pairs.reduceByKey(lambda x, y:x+y)
# 打印数据
wordCounts.pprint()

# 开启流式处理
ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
