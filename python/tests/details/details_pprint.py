"""What PySpark's pprint prints, beyond the seeds: element types (str printed as is, the rest
through str(), so tuples show their members' reprs), num and "...", an empty batch, count() of an
empty batch. Not a seed program: written for the goldens, with the same two pyspark imports.

Usage: details_pprint.py   (1-second batches, about 11 s)
"""
import os

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "11"))

sc = SparkContext(master="local[2]", appName="details_pprint")
ssc = StreamingContext(sc, 1)

batches = [
    ["plain str", "中文", "with 'quotes' and \"double\"", "two\nlines", "trailing space ", "tab\there"],
    [1, -2, 3.0, 0.1, 1e20, 1.5e-7, float("inf"), float("nan"), True, None],
    [(1, "a"), ("k", (2, 3.5)), [1, "x"], {"a": 1, "b": [2]}, b"bytes", ("t", None), (), ("solo",)],
    list(range(11)),
    list(range(10)),
    [],
]
stream = ssc.queueStream(batches)
stream.pprint()
stream.pprint(3)
stream.count().pprint()

ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
