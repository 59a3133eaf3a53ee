"""A stateful word count that test_cluster.py runs on one process and on a cluster of two
(``python -m ember.launch -n 2``). Process 0 prints the totals after the last batch; every
process that holds keyed partitions leaves a file named after its pid in the directory given
as the first argument."""

import os
import sys
import time

from ember.pyspark import SparkContext
from ember.pyspark.streaming import StreamingContext

marks = sys.argv[1]
BATCHES = 20


def mark(partition):
    items = list(partition)
    if items:
        open(os.path.join(marks, str(os.getpid())), "w").close()
    return items


sc = SparkContext("local[2]", "ClusterWordCount")
ssc = StreamingContext(sc, 0.1)
batches = [" ".join("w%d" % ((i * 5 + j) % 17) for j in range(8)) for i in range(BATCHES)]
words = ssc.queueStream([[line] for line in batches]).flatMap(lambda line: line.split(" "))
counts = words.map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).mapPartitions(mark)
totals = counts.updateStateByKey(lambda new, last: sum(new) + (last or 0))
seen = []
totals.foreachRDD(lambda rdd: seen.append(sorted(rdd.collect())))
ssc.start()
if os.environ.get("EMBER_CLUSTER_PROCESS", "0") != "0":
    ssc.awaitTermination()
    sys.exit(0)
deadline = time.monotonic() + 60
while len(seen) < BATCHES + 2:
    if ssc.awaitTerminationOrTimeout(0.05):
        break
    if time.monotonic() > deadline:
        sys.exit("the job did not run %d batches within 60 s" % BATCHES)
print("TOTALS", seen[-1], flush=True)
ssc.stop(stopGraceFully=True)
