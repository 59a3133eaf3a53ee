# Seed 000 (notebook "Spark Streaming基础 - DStream API"), section 9 "练习2：网络流量监控"
# (3-second batches), with section 1's SparkContext and the notebook's last cell (sc.stop()).
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - the checkpoint directory is argv[1] (was "/home/jovyan/data/checkpoint_network");
#   - random.seed(0) after the imports, and the generator's timestamp is FIXED_TIMESTAMP (was
#     int(time.time()));
#   - the stop thread sleeps SEED_RUN_SECONDS, default 30 (was 12: four queued batches of 3 s
#     plus the 9 s window need more, and 12 s cut the last batches at a point that depended on
#     timing).
# Usage: 000_network_monitor.py CHECKPOINT_DIR
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
RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "30"))

# 创建SparkContext
conf = SparkConf().setAppName("DStream基础")
sc = SparkContext(conf=conf)

# 生成网络流量数据
def generate_network_data():
    ips = ['192.168.1.1', '192.168.1.2', '192.168.1.3', '10.0.0.1', '10.0.0.2']
    actions = ['GET', 'POST', 'PUT', 'DELETE']
    
    data = []
    for _ in range(20):
        ip = random.choice(ips)
        action = random.choice(actions)
        bytes_sent = random.randint(100, 10000)
        timestamp = FIXED_TIMESTAMP
        data.append(f"{timestamp},{ip},{action},{bytes_sent}")
    
    return data

# 创建StreamingContext
ssc_network = StreamingContext(sc, 3)
ssc_network.checkpoint(sys.argv[1])

# 创建网络数据流
network_queue = []
for i in range(4):
    data = generate_network_data()
    rdd = sc.parallelize(data)
    network_queue.append(rdd)

network_stream = ssc_network.queueStream(network_queue, oneAtATime=True)

# 解析网络数据
def parse_network_line(line):
    parts = line.split(',')
    if len(parts) == 4:
        return {
            'timestamp': int(parts[0]),
            'ip': parts[1],
            'action': parts[2],
            'bytes': int(parts[3])
        }
    return None

parsed_network = network_stream.map(parse_network_line).filter(lambda x: x is not None)

# 按IP统计流量
ip_traffic = parsed_network.map(lambda x: (x['ip'], x['bytes']))
ip_totals = ip_traffic.reduceByKeyAndWindow(
    lambda x, y: x + y,
    9,  # 9秒窗口
    3   # 3秒滑动
)

# 检测异常流量
def detect_traffic_anomalies(rdd):
    if not rdd.isEmpty():
        traffic_data = rdd.collect()
        
        if traffic_data:
            # 计算平均流量
            total_bytes = sum(bytes_count for ip, bytes_count in traffic_data)
            avg_bytes = total_bytes / len(traffic_data)
            threshold = avg_bytes * 2  # 异常阈值
            
            print(f"=== 网络流量监控 ===")
            print(f"平均流量: {avg_bytes:.2f} bytes")
            print(f"异常阈值: {threshold:.2f} bytes")
            
            anomalies = [(ip, bytes_count) for ip, bytes_count in traffic_data if bytes_count > threshold]
            
            if anomalies:
                print("检测到异常流量:")
                for ip, bytes_count in anomalies:
                    print(f"  {ip}: {bytes_count} bytes")
            else:
                print("未检测到异常流量")
            print("=" * 25)

ip_totals.foreachRDD(detect_traffic_anomalies)

# 启动网络监控
def stop_network_streaming():
    time.sleep(RUN_SECONDS)
    ssc_network.stop(stopSparkContext=False)

stop_thread = threading.Thread(target=stop_network_streaming)
stop_thread.start()

ssc_network.start()
ssc_network.awaitTermination()

print("网络流量监控练习完成")

# 清理资源
sc.stop()
print("SparkContext已停止")
