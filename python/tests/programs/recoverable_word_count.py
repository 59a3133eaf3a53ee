"""A stateful word count over a file stream that recovers with getOrCreate: the job that
test_recovery.py kills with SIGKILL and restarts. Arguments: checkpoint dir, input dir,
output dir."""

import sys

from ember.pyspark import SparkContext
from ember.pyspark.streaming import StreamingContext

checkpoint, source, out = sys.argv[1:4]


def update(new_values, last):
    return sum(new_values) + (last or 0)


def setup():
    sc = SparkContext("local[2]", "RecoverableWordCount")
    ssc = StreamingContext(sc, 0.1)
    ssc.checkpoint(checkpoint)
    lines = ssc.textFileStream(source)
    totals = lines.flatMap(lambda line: line.split(" ")).map(lambda w: (w, 1)).updateStateByKey(update)
    # Every batch is a checkpoint (the default for updateStateByKey is every 10 s).
    totals.checkpoint(0.1)
    totals.saveAsTextFiles(out + "/state")
    return ssc


ssc = StreamingContext.getOrCreate(checkpoint, setup)
ssc.start()
print("STARTED", flush=True)
ssc.awaitTermination()
