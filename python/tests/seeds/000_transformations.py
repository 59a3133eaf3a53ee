# Seed 000 (notebook "Spark Streaming基础 - DStream API"), sections 3 "DStream转换操作",
# 4 "DStream输出操作", 5 "有状态转换" and 6 "窗口操作": the notebook's second StreamingContext
# (2-second batches), which the notebook itself never starts. Needs section 1's SparkContext and
# section 2.3's generate_sample_data, copied here.
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - saveAsTextFiles' directory is argv[1] (was "/home/jovyan/data/output/streaming"; the prefix
#     is now ARGV1/streaming, so the batches land in ARGV1/streaming-<ms>), the checkpoint
#     directory is argv[2] (was "/home/jovyan/data/checkpoint");
#   - random.seed(0) after the imports, and the generator's timestamp is FIXED_TIMESTAMP (was
#     int(time.time()));
#   - start, awaitTerminationOrTimeout(SEED_RUN_SECONDS, default 24) and a graceful stop added at
#     the end (the notebook stops this context without starting it, in section 7).
# Usage: 000_transformations.py OUTPUT_DIR CHECKPOINT_DIR
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
RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "24"))

# 创建SparkContext
conf = SparkConf().setAppName("DStream基础")
sc = SparkContext(conf=conf)

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

# 重新创建StreamingContext用于演示
if 'ssc' in locals():
    ssc.stop(stopSparkContext=False)

ssc = StreamingContext(sc, 2)

# 创建测试数据队列
test_queue = []
for i in range(3):
    data = generate_sample_data()
    rdd = sc.parallelize(data)
    test_queue.append(rdd)

# 创建DStream
lines = ssc.queueStream(test_queue, oneAtATime=True)

print("原始数据流:")
lines.pprint()

# map操作：解析CSV数据
def parse_line(line):
    parts = line.split(',')
    if len(parts) == 4:
        return {
            'timestamp': int(parts[0]),
            'product': parts[1],
            'region': parts[2],
            'price': int(parts[3])
        }
    return None

parsed_stream = lines.map(parse_line).filter(lambda x: x is not None)

print("解析后的数据流:")
parsed_stream.pprint()

# filter操作：过滤高价商品
expensive_items = parsed_stream.filter(lambda x: x['price'] > 500)

print("高价商品流:")
expensive_items.pprint()

# flatMap操作：展开数据
product_stream = parsed_stream.flatMap(lambda x: [(x['product'], x['price'])])

print("产品价格流:")
product_stream.pprint()

# pprint：打印到控制台
parsed_stream.pprint(10)  # 打印每个批次的前10个元素

# saveAsTextFiles：保存到文件
output_dir = os.path.join(sys.argv[1], "streaming")
parsed_stream.saveAsTextFiles(output_dir)

# foreachRDD：自定义处理
def process_rdd(rdd):
    if not rdd.isEmpty():
        count = rdd.count()
        print(f"处理了 {count} 条记录")
        
        # 计算平均价格
        if count > 0:
            total_price = rdd.map(lambda x: x['price']).sum()
            avg_price = total_price / count
            print(f"平均价格: {avg_price:.2f}")

parsed_stream.foreachRDD(process_rdd)

# 设置检查点目录（有状态操作需要）
checkpoint_dir = sys.argv[2]
ssc.checkpoint(checkpoint_dir)

# updateStateByKey：维护每个键的状态
def update_function(new_values, running_count):
    if running_count is None:
        running_count = 0
    return sum(new_values, running_count)

# 计算每个产品的累计销售数量
product_counts = product_stream.map(lambda x: (x[0], 1))
running_counts = product_counts.updateStateByKey(update_function)

print("产品累计销售数量:")
running_counts.pprint()

# 窗口操作：在6秒的窗口内，每4秒计算一次
windowed_stream = product_stream.window(6, 4)  # 窗口长度6秒，滑动间隔4秒

print("窗口内的数据:")
windowed_stream.pprint()

# 窗口内的聚合操作
windowed_counts = product_stream.map(lambda x: (x[0], 1)).reduceByKeyAndWindow(
    lambda x, y: x + y,  # 聚合函数
    lambda x, y: x - y,  # 逆聚合函数（可选，用于优化）
    6,  # 窗口长度
    4   # 滑动间隔
)

print("窗口内产品计数:")
windowed_counts.pprint()

ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
