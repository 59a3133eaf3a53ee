# Seed 000 (notebook "Spark Streaming基础 - DStream API"), sections 7 "实际案例：实时销售监控" and
# 8 "启动和停止流处理" (3-second batches), with section 1's SparkContext, section 2.3's
# generate_sample_data, section 3's parse_line and the notebook's last cell (sc.stop()).
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - the checkpoint directory is argv[1] (was "/home/jovyan/data/checkpoint");
#   - random.seed(0) after the imports, and the generator's timestamp is FIXED_TIMESTAMP (was
#     int(time.time()));
#   - the stop thread sleeps SEED_RUN_SECONDS, default 36 (was 15: five queued batches of 3 s
#     plus the 9 s window need more, and 15 s cut the last batches at a point that depended on
#     timing).
# Usage: 000_sales_monitor.py CHECKPOINT_DIR
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
RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "36"))

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

# 重新创建StreamingContext用于完整示例
if 'ssc' in locals():
    ssc.stop(stopSparkContext=False)

ssc = StreamingContext(sc, 3)  # 3秒批处理间隔
ssc.checkpoint(sys.argv[1])

# 创建更多测试数据
sales_queue = []
for i in range(5):
    data = generate_sample_data()
    rdd = sc.parallelize(data)
    sales_queue.append(rdd)

# 创建销售数据流
sales_stream = ssc.queueStream(sales_queue, oneAtATime=True)

# 解析销售数据
parsed_sales = sales_stream.map(parse_line).filter(lambda x: x is not None)

print("实时销售监控系统启动...")

# 1. 实时销售统计
def calculate_sales_stats(rdd):
    if not rdd.isEmpty():
        sales_data = rdd.collect()
        
        total_sales = sum(item['price'] for item in sales_data)
        total_items = len(sales_data)
        avg_price = total_sales / total_items if total_items > 0 else 0
        
        print(f"=== 批次销售统计 ===")
        print(f"总销售额: ${total_sales}")
        print(f"销售数量: {total_items}")
        print(f"平均价格: ${avg_price:.2f}")
        print("=" * 25)

parsed_sales.foreachRDD(calculate_sales_stats)

# 2. 按地区统计销售额
region_sales = parsed_sales.map(lambda x: (x['region'], x['price']))
region_totals = region_sales.reduceByKey(lambda x, y: x + y)

print("按地区销售额:")
region_totals.pprint()

# 3. 热门产品排行（窗口操作）
product_sales = parsed_sales.map(lambda x: (x['product'], x['price']))
windowed_product_sales = product_sales.reduceByKeyAndWindow(
    lambda x, y: x + y,
    9,  # 9秒窗口
    3   # 3秒滑动
)

# 获取热门产品
def get_top_products(rdd):
    if not rdd.isEmpty():
        top_products = rdd.takeOrdered(3, key=lambda x: -x[1])
        print("=== 热门产品排行 ===")
        for i, (product, sales) in enumerate(top_products, 1):
            print(f"{i}. {product}: ${sales}")
        print("=" * 25)

windowed_product_sales.foreachRDD(get_top_products)

# 4. 异常检测：检测异常高价商品
def detect_anomalies(rdd):
    if not rdd.isEmpty():
        sales_data = rdd.collect()
        prices = [item['price'] for item in sales_data]
        
        if len(prices) > 1:
            avg_price = sum(prices) / len(prices)
            threshold = avg_price * 2  # 异常阈值：平均价格的2倍
            
            anomalies = [item for item in sales_data if item['price'] > threshold]
            
            if anomalies:
                print("=== 异常检测 ===")
                print(f"检测到 {len(anomalies)} 个异常高价商品:")
                for item in anomalies:
                    print(f"  {item['product']} - ${item['price']} (阈值: ${threshold:.2f})")
                print("=" * 20)

parsed_sales.foreachRDD(detect_anomalies)

# 启动流处理（注意：这会阻塞执行）
print("启动流处理...")
print("处理5个批次后自动停止")

# 在实际应用中，您可能会使用 ssc.start() 和 ssc.awaitTermination()
# 这里我们使用一个定时器来演示
def stop_streaming():
    time.sleep(RUN_SECONDS)  # 运行15秒
    ssc.stop(stopSparkContext=False)
    print("流处理已停止")

# 在后台线程中启动停止定时器
stop_thread = threading.Thread(target=stop_streaming)
stop_thread.start()

# 启动流处理
ssc.start()
ssc.awaitTermination()

print("流处理完成")

# 清理资源
sc.stop()
print("SparkContext已停止")
