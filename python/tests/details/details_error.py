"""What PySpark does when a user function raises: which exception awaitTermination raises and
what its message carries. Not a seed program: written for the goldens, with the same two pyspark
imports.

Usage: details_error.py   (1-second batches, up to 10 s)
"""
import os

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "10"))

sc = SparkContext(master="local[2]", appName="details_error")
ssc = StreamingContext(sc, 1)


def boom(x):
    return 10 // x


stream = ssc.queueStream([[0]])


def show(rdd):
    if not rdd.isEmpty():
        print("collected", rdd.collect())


stream.map(boom).foreachRDD(show)

ssc.start()
try:
    stopped = ssc.awaitTerminationOrTimeout(RUN_SECONDS)
    print("awaitTerminationOrTimeout returned", stopped)
except Exception as e:
    message = str(e)
    print("awaitTerminationOrTimeout raised", type(e).__module__ + "." + type(e).__name__)
    print("its message carries the Python traceback:", "Traceback (most recent call last)" in message)
    print("... the user function's line:", "return 10 // x" in message)
    print("... the exception:", "ZeroDivisionError: integer division or modulo by zero" in message)
ssc.stop(stopSparkContext=True, stopGraceFully=False)
