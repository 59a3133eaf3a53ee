"""reduceByKeyAndWindow with an inverse function in PySpark: when the window is shorter than 5
slides, PySpark reduces the whole window again each slide (the inverse function is not used and
a key whose values all left the window disappears); from 5 slides on it subtracts with the
inverse function, and such a key stays with its "zero" unless filterFunc drops it.
countByValueAndWindow filters counts of 0; countByWindow does not. Not a seed program: written
for the goldens, with the same two pyspark imports.

Usage: details_window_inverse.py CHECKPOINT_DIR   (1-second batches, about 12 s)
"""
import os
import sys

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "12"))

sc = SparkContext(master="local[2]", appName="details_window_inverse")
ssc = StreamingContext(sc, 1)
ssc.checkpoint(sys.argv[1])

words = ssc.queueStream([["a", "b", "a"], ["b", "c"]])
pairs = words.map(lambda w: (w, 1))


def add(x, y):
    return x + y


def sub(x, y):
    return x - y


print("reduceByKeyAndWindow(add, sub, 4, 1), then (add, sub, 5, 1), then (add, sub, 5, 1, filterFunc=kv[1] > 0),")
print("then countByValueAndWindow(5, 1), then countByWindow(4, 1), then countByWindow(5, 1), each batch:")
pairs.reduceByKeyAndWindow(add, sub, 4, 1).pprint()
pairs.reduceByKeyAndWindow(add, sub, 5, 1).pprint()
pairs.reduceByKeyAndWindow(add, sub, 5, 1, filterFunc=lambda kv: kv[1] > 0).pprint()
words.countByValueAndWindow(5, 1).pprint()
words.countByWindow(4, 1).pprint()
words.countByWindow(5, 1).pprint()

ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
