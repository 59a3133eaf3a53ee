"""A job that runs until interrupted: test_interrupt.py sends it SIGINT."""

import time

from ember.pyspark import SparkContext
from ember.pyspark.streaming import StreamingContext

sc = SparkContext("local[2]", "Interruptible")
ssc = StreamingContext(sc, 0.1)
ssc.queueStream([[1, 2, 3]], default=[0]).count().foreachRDD(lambda rdd: None)
ssc.start()
print("STARTED", flush=True)
try:
    ssc.awaitTermination()
except KeyboardInterrupt:
    print("INTERRUPTED", ssc._ctx.get_state(), flush=True)
    raise
