# Seed 000 (notebook "Spark Streaming基础 - DStream API"), sections 1 "创建StreamingContext",
# 2.1 "从队列创建DStream", 2.2 "从文本文件创建DStream" and 2.3 "创建模拟数据生成器": the notebook's
# first StreamingContext, which the notebook itself never starts.
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - the monitored directory is argv[1] (was "/home/jovyan/data/streaming");
#   - random.seed(0) after the imports, and the generator's timestamp is FIXED_TIMESTAMP (was
#     int(time.time()));
#   - start, awaitTerminationOrTimeout(SEED_RUN_SECONDS, default 16) and a graceful stop added at
#     the end (the notebook stops this context without starting it, in section 3).
# As the seed wrote it, section 1 reads ssc._batchDuration, which PySpark 3.5's StreamingContext
# does not have (AttributeError); python/tests/golden/README.md says how the golden deals with it.
# Usage: 000_queue_stream.py STREAMING_DIR
import os
import sys

from pyspark import SparkContext, SparkConf
from pyspark.streaming import StreamingContext
import time
import threading
import socket
import random

random.seed(0)
FIXED_TIMESTAMP = 1700000000
RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "16"))

# 创建SparkContext
conf = SparkConf().setAppName("DStream基础")
sc = SparkContext(conf=conf)

# 创建StreamingContext，批处理间隔为2秒
ssc = StreamingContext(sc, 2)

print("StreamingContext创建成功")
print(f"批处理间隔: {ssc._batchDuration} 秒")

# 创建一个队列用于模拟数据流
import queue

# 创建RDD队列
rdd_queue = []

# 创建一些示例数据
for i in range(5):
    rdd = sc.parallelize([f"batch_{i}_item_{j}" for j in range(10)])
    rdd_queue.append(rdd)

# 从队列创建DStream
queue_stream = ssc.queueStream(rdd_queue, oneAtATime=True)

print("从队列创建的DStream:")
queue_stream.pprint()

# 创建一个目录用于监控新文件
import os
streaming_dir = sys.argv[1]
os.makedirs(streaming_dir, exist_ok=True)

# 从文件目录创建DStream
file_stream = ssc.textFileStream(streaming_dir)

print(f"监控目录: {streaming_dir}")
print("文件流DStream创建成功")

# 创建一个简单的数据生成器
def generate_sample_data():
    """生成示例数据"""
    products = ['laptop', 'phone', 'tablet', 'watch', 'headphones']
    regions = ['North', 'South', 'East', 'West']
    
    data = []
    for _ in range(10):
        product = random.choice(products)
        region = random.choice(regions)
        price = random.randint(100, 1000)
        timestamp = FIXED_TIMESTAMP
        data.append(f"{timestamp},{product},{region},{price}")
    
    return data

# 测试数据生成器
sample_data = generate_sample_data()
print("示例数据:")
for item in sample_data[:5]:
    print(item)

ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
