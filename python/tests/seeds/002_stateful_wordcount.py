# Seed 002 ("Python Spark Streaming 如何实时处理数据?"), section "Stateful Processing: The
# updateStateByKey Example" (socket running word count, 1-second batches). The seed says
# "(Assuming SparkSession and StreamingContext are already created)": the setup is the one of its
# first example (002_streaming_wordcount.py), copied here.
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - SparkSession.builder...getOrCreate() and spark.sparkContext became
#     SparkContext(appName="PythonStreamingWordCount"), as in 002_streaming_wordcount.py;
#   - the socket's host and port are argv[1] and argv[2] (were "localhost", 9999);
#   - ssc.awaitTermination() became awaitTerminationOrTimeout(SEED_RUN_SECONDS, default 12)
#     followed by a graceful stop (the seed ran until Ctrl-C).
# As the seed wrote it, no checkpoint directory is set, which PySpark requires for
# updateStateByKey: ssc.start() fails. python/tests/golden/README.md says how the golden deals
# with it.
# Usage: 002_stateful_wordcount.py HOST PORT
import os
import sys

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "12"))

sc = SparkContext(appName="PythonStreamingWordCount")
sc.setLogLevel("ERROR")
ssc = StreamingContext(sc, 1)

# (Assuming SparkSession and StreamingContext are already created)
# ... (lines, words, pairs are the same as before)
lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))
words = lines.flatMap(lambda line: line.split(" "))
pairs = words.map(lambda word: (word, 1))
# Define the function to update the state
# The function takes two arguments:
# 1. The values for a key in the new batch (e.g., [1, 1] for the word 'spark')
# 2. The previous state for that key (e.g., 10)
# It should return the new state (e.g., 12)
def update_function(new_values, previous_count):
    # previous_count is an Optional integer, it will be None for the first time
    return sum(new_values) + (previous_count or 0)
# Use updateStateByKey to maintain a running total
running_counts = pairs.updateStateByKey(update_function)
# Print the running totals
running_counts.pprint()
ssc.start()
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
