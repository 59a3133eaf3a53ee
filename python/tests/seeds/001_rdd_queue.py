# Seed 001 ("PySpark之SparkStreaming基本操作"), section "RDD队列流": the file rdd_queue.py that the
# notebook writes with %%writefile and runs (10-second batches).
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - `import findspark; findspark.init()` and `from pyspark.sql.session import SparkSession`
#     (unused) removed: PySpark comes from pip, and the only pyspark imports are the two that
#     ember replaces;
#   - ssc.awaitTerminationOrTimeout(SEED_RUN_SECONDS, default 62) added between start() and the
#     seed's graceful stop: the seed stopped at once, so how many batches ran (1 to 3 in the
#     seed's own output) depended on timing; now all five queued RDDs are processed.
# Usage: 001_rdd_queue.py
import os

from pyspark import SparkContext, SparkConf
from pyspark.streaming import StreamingContext
import time

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "62"))

# 环境配置
conf = SparkConf().setAppName("RDD Queue").setMaster("local")
sc = SparkContext(conf=conf)
ssc = StreamingContext(sc, 10)

# 创建RDD数据流
rddQueue = []
for i in range(5):
    rddQueue += [ssc.sparkContext.parallelize([j for j in range(i)], 10)]
    time.sleep(1)
    
inputStream = ssc.queueStream(rddQueue)
reduceedStream = inputStream.map(lambda x: (x%10, 1)).reduceByKey(lambda x, y: x + y)

reduceedStream.pprint()
ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
