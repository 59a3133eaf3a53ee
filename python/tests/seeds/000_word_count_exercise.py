# Seed 000 (notebook "Spark Streaming基础 - DStream API"), section 9 "练习1：实时单词计数"
# (2-second batches), with section 1's SparkContext and the notebook's last cell (sc.stop()).
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - the checkpoint directory is argv[1] (was "/home/jovyan/data/checkpoint_word");
#   - the stop thread sleeps SEED_RUN_SECONDS, default 16 (was 10: five queued batches of 2 s
#     need more, and 10 s cut the last batches at a point that depended on timing).
# Usage: 000_word_count_exercise.py CHECKPOINT_DIR
import os
import sys

from pyspark import SparkContext, SparkConf
from pyspark.streaming import StreamingContext
import time
import threading
import socket
import random

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "16"))

# 创建SparkContext
conf = SparkConf().setAppName("DStream基础")
sc = SparkContext(conf=conf)

# 创建新的StreamingContext
ssc_word = StreamingContext(sc, 2)
ssc_word.checkpoint(sys.argv[1])

# 创建文本数据
text_data = [
    "hello world spark streaming",
    "spark is great for big data",
    "streaming data processing with spark",
    "hello spark hello world",
    "big data analytics with spark streaming"
]

text_queue = []
for text in text_data:
    rdd = sc.parallelize([text])
    text_queue.append(rdd)

# 创建文本流
text_stream = ssc_word.queueStream(text_queue, oneAtATime=True)

# 实现单词计数
words = text_stream.flatMap(lambda line: line.split(" "))
word_pairs = words.map(lambda word: (word, 1))
word_counts = word_pairs.reduceByKey(lambda x, y: x + y)

# 维护累计单词计数
def update_word_count(new_values, running_count):
    if running_count is None:
        running_count = 0
    return sum(new_values, running_count)

running_word_counts = word_pairs.updateStateByKey(update_word_count)

print("实时单词计数:")
word_counts.pprint()

print("累计单词计数:")
running_word_counts.pprint()

# 启动并运行一段时间
def stop_word_streaming():
    time.sleep(RUN_SECONDS)
    ssc_word.stop(stopSparkContext=False)

stop_thread = threading.Thread(target=stop_word_streaming)
stop_thread.start()

ssc_word.start()
ssc_word.awaitTermination()

print("单词计数练习完成")

# 清理资源
sc.stop()
print("SparkContext已停止")
