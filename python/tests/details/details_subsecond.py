"""pprint's Time line and foreachRDD's datetime when the batch interval is not whole seconds
(0.5 s). Not a seed program: written for the goldens, with the same two pyspark imports.

Usage: details_subsecond.py   (about 4 s)
"""
import os

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "4"))

sc = SparkContext(master="local[2]", appName="details_subsecond")
ssc = StreamingContext(sc, 0.5)

stream = ssc.queueStream([["a"], ["b"], ["c"]])
stream.pprint()


def show_time(time, rdd):
    # Whether a batch falls on a whole second depends on when the run started, so this prints
    # only what holds for every batch (the .out file shows the times themselves).
    fraction = "" if time.microsecond == 0 else ".%06d" % time.microsecond
    print(
        "foreachRDD time: tzinfo=%r, microsecond in (0, 500000): %s, str() ends with the fraction exactly when it is not 0: %s"
        % (time.tzinfo, time.microsecond in (0, 500000), str(time)[19:] == fraction)
    )


stream.foreachRDD(show_time)

ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
