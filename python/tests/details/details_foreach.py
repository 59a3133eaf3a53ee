"""How PySpark calls foreachRDD and transform functions (by their number of positional
parameters), what they get, and what saveAsTextFiles writes. Not a seed program: written for the
goldens, with the same two pyspark imports.

Usage: details_foreach.py OUTPUT_DIR   (1-second batches, about 5 s; saveAsTextFiles writes
under OUTPUT_DIR, which make_goldens.py lists into details_foreach.files)
"""
import functools
import os
import sys

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "5"))
out = sys.argv[1]

sc = SparkContext(master="local[2]", appName="details_foreach")
ssc = StreamingContext(sc, 1)

stream = ssc.queueStream([[3, 1, 2], ["a", ("b", 2), {"c": 3}, None, 1.5, b"x", "中文", "two\nlines"]])

first_time = []


def one(rdd):
    print("one parameter: called with", type(rdd).__name__, sorted(map(repr, rdd.collect())))


def two(time, rdd):
    if not first_time:
        first_time.append(time)
    print(
        "two parameters: called with", type(time).__name__, "tzinfo=%r" % time.tzinfo,
        "offset=%s" % (time - first_time[0]), type(rdd).__name__, rdd.count(),
    )


def star(*args):
    print("*args: called with", [type(a).__name__ for a in args])


def defaulted(rdd, extra="default"):
    print("(rdd, extra='default'): first argument is", type(rdd).__name__, "second is", type(extra).__name__)


stream.foreachRDD(one)
stream.foreachRDD(two)
stream.foreachRDD(star)
stream.foreachRDD(defaulted)
stream.foreachRDD(lambda rdd: print("lambda rdd: count", rdd.count()))
stream.foreachRDD(lambda t, rdd: print("lambda t, rdd:", type(t).__name__, rdd.count()))


class CallableObject:
    def __call__(self, rdd):
        print("never")


for label, func in (("callable object", CallableObject()), ("functools.partial", functools.partial(two))):
    try:
        stream.foreachRDD(func)
        print(label + ": accepted")
    except Exception as e:
        print(label + ": foreachRDD raised", type(e).__name__, e)

stream.transform(lambda rdd: rdd.map(lambda x: "transform(rdd)")).pprint(1)
stream.transform(lambda t, rdd: rdd.map(lambda x, name=type(t).__name__: "transform(t, rdd): t is " + name)).pprint(1)

stream.saveAsTextFiles(os.path.join(out, "saved"), "txt")
stream.saveAsTextFiles(os.path.join(out, "plain"))

ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
