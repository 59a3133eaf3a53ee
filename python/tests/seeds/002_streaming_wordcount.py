# Seed 002 ("Python Spark Streaming 如何实时处理数据?"), section "A Simple, End-to-End Python
# Example": streaming_wordcount.py (socket word count, 1-second batches).
# Changed for unattended, deterministic runs (everything else is the seed's text):
#   - the seed makes its SparkContext through `from pyspark.sql import SparkSession` and
#     `SparkSession.builder.appName("PythonStreamingWordCount").getOrCreate()`, then uses
#     `spark.sparkContext`; here that is `SparkContext(appName="PythonStreamingWordCount")` (the
#     same master, local[*], when run with plain python), so that the only pyspark imports are
#     the two that ember replaces;
#   - the socket's host and port are argv[1] and argv[2] (were "localhost", 9999);
#   - ssc.awaitTermination() became awaitTerminationOrTimeout(SEED_RUN_SECONDS, default 12)
#     followed by a graceful stop (the seed ran until Ctrl-C).
# Usage: 002_streaming_wordcount.py HOST PORT
import os
import sys

from pyspark import SparkContext
from pyspark.streaming import StreamingContext

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "12"))

# 1. Create a SparkSession
# A SparkSession is the entry point to any Spark functionality.
# We also need to create a StreamingContext from it.
sc = SparkContext(appName="PythonStreamingWordCount")
# Set the log level to ERROR to reduce verbosity in the console
sc.setLogLevel("ERROR")
# 2. Create a StreamingContext with a batch interval of 1 second
# The batch interval is the time at which Spark will process the data.
ssc = StreamingContext(sc, 1)
# 3. Create a DStream that will connect to a source
# We'll connect to a TCP socket. The hostname is 'localhost' and the port is 9999.
# Data can be sent to this socket using tools like 'netcat' or 'telnet'.
lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))
# 4. Perform transformations on the DStream
# Split each line into words
words = lines.flatMap(lambda line: line.split(" "))
# Count each word in each batch
# The 'reduceByKey' operation groups the data by key (the word) and
# applies a function to combine the values for each key.
pairs = words.map(lambda word: (word, 1))
word_counts = pairs.reduceByKey(lambda x, y: x + y)
# 5. Print the first 10 elements of each RDD in the DStream to the console
# Note: In a real application, you would save this to a database or file.
# .pprint() is a useful action for debugging.
word_counts.pprint()
# 6. Start the computation
# This is a crucial step. The streaming context will now start processing
# data as it arrives. The program will run until you manually stop it.
ssc.start()
# Wait for the computation to terminate
ssc.awaitTerminationOrTimeout(RUN_SECONDS)
ssc.stop(stopSparkContext=True, stopGraceFully=True)
