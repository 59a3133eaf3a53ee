# Seed 002 ("Python Spark Streaming 如何实时处理数据?"), section "Example: Structured Streaming
# Word Count". Changed for unattended runs (everything else is the seed's text):
#   - the socket's host and port are argv[1] and argv[2] (were "localhost", 9999);
#   - the output mode is argv[3] when given (the seed's is "complete");
#   - query.awaitTermination() became awaitTermination(SEED_RUN_SECONDS, default 12) followed by
#     query.stop() (the seed ran until Ctrl-C).
# Usage: 002_structured_wordcount.py HOST PORT [OUTPUT_MODE]
import os
import sys

from pyspark.sql import SparkSession
from pyspark.sql.functions import explode, split, col

RUN_SECONDS = float(os.environ.get("SEED_RUN_SECONDS", "12"))
MODE = sys.argv[3] if len(sys.argv) > 3 else "complete"

spark = SparkSession \
    .builder \
    .appName("StructuredStreamingWordCount") \
    .getOrCreate()
# Create a streaming DataFrame that represents an unbounded table
# The 'format' is 'socket', 'schema' is the structure of the data
lines = spark \
    .readStream \
    .format("socket") \
    .option("host", sys.argv[1]) \
    .option("port", int(sys.argv[2])) \
    .load()
# Split the lines into words
words = lines.select(
    explode(
        split(lines.value, " ")
    ).alias("word")
)
# Generate running word counts
wordCounts = words.groupBy("word").count()
# Start running the query that prints the running counts to the console
# 'outputMode("complete")' means the entire result of the aggregation will be printed.
query = wordCounts \
    .writeStream \
    .outputMode(MODE) \
    .format("console") \
    .start()
query.awaitTermination(RUN_SECONDS)
query.stop()
