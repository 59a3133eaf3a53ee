# Seed 001 ("PySpark之SparkStreaming基本操作"), section "词频统计(有状态操作)": the file
# calcultor.py (socket word count with updateStateByKey, 3-second batches).
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - `import findspark; findspark.init()` removed (PySpark comes from pip);
#   - the socket's host and port are argv[1] and argv[2] (were "localhost", 9999), the
#     checkpoint directory is argv[3] (was "checkpoint", relative to the working directory; the
#     seed's run failed there because its Hadoop default file system was hdfs://localhost:9000);
#   - ssc.awaitTermination() became awaitTerminationOrTimeout(SEED_RUN_SECONDS, default 18)
#     followed by a graceful stop (the seed ran until Ctrl-C).
# Usage: 001_stateful_word_count.py HOST PORT CHECKPOINT_DIR
import os
import sys

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "18"))

# 创建环境
sc = SparkContext(master="local[2]", appName="NetworkWordCount")
ssc = StreamingContext(sc, 3)  # 每隔一秒钟监听一次数据

# 设置检测点
ssc.checkpoint(sys.argv[3])

# 状态更新函数
def updatefun(new_values,last_sum):
    
    # 向前转态加上当前状态的key状态的value值
    return sum(new_values) + (last_sum or 0)

# 监听端口数据
lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))
#　拆分单词
words = lines.flatMap(lambda line: line.split(" "))
#  统计词频
pairs = words.map(lambda word:(word, 1))
wordCounts = pairs.updateStateByKey(updateFunc=updatefun)
wordCounts.pprint()

ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
