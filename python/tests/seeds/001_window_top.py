# Seed 001 ("PySpark之SparkStreaming基本操作"), section "Windows": the file top.py (socket input,
# reduceByKeyAndWindow with an inverse function, 6 s window sliding every 3 s, 1-second batches).
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - `from pyspark.sql.session import SparkSession` (unused) removed: the only pyspark imports
#     are the two that ember replaces;
#   - the socket's host and port are argv[1] and argv[2] (were "localhost", 9999), the
#     checkpoint directory is argv[3] (was "checkpoint", relative to the working directory);
#   - ssc.awaitTermination() became awaitTerminationOrTimeout(SEED_RUN_SECONDS, default 20)
#     followed by a graceful stop (the seed ran until Ctrl-C).
# Usage: 001_window_top.py HOST PORT CHECKPOINT_DIR
import os
import sys

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "20"))

def get_countryname(line):
    country_name = line.strip()

    if country_name == 'usa':
        output = 'USA'
    elif country_name == 'ind':
        output = 'India'
    elif country_name == 'aus':
        output = 'Australia'
    else:
        output = 'Unknown'

    return (output, 1)

# 设置参数
batch_interval = 1
window_length = 6*batch_interval
frquency = 3*batch_interval

sc =  sc = SparkContext(master="local[2]", appName="NetworkWordCount")
ssc = StreamingContext(sc, batch_interval)

ssc.checkpoint(sys.argv[3])
# 监听端口数据
lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))

addFunc = lambda x, y: x+y
invAddFunc = lambda x, y: x-y
word_counts = lines.map(get_countryname).reduceByKeyAndWindow(addFunc, invAddFunc, window_length, frquency)
word_counts.pprint()

ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
