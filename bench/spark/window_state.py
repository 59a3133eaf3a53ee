"""bench/window_state.sh's Structured Streaming job in Python (issue 28's benchmark): a windowed
count over many keys with a watermark, in append mode, fed by the rate source, written to the
noop sink, on a 1-second processing-time trigger:

    rate(rowsPerSecond=R, numPartitions=2).withWatermark("timestamp", "10 seconds")
        .groupBy(window("timestamp", "10 seconds"), (col("value") % KEYS).alias("key")).count()

With QUERY ``join`` (a fifth argument), instead, a stream-stream inner join of two such rate
sources on the value, each with that watermark, within 5 seconds of each other.

Run by PySpark (the JVM's Structured Streaming), or with ``--ember`` by ember's Python package
with only the imports changed. One line per micro-batch with input, from the progress reports:

    BATCH t_ms=T rows=N proc_ms=P state=S watermark=W

Usage: window_state.py [--ember] ROWS_PER_SECOND SECONDS KEYS MASTER [window|join] [--conf KEY=VALUE ...]
"""

import sys
import time

args, confs = [], []
argv = sys.argv[1:]
while argv:
    if argv[0] == "--conf" and len(argv) > 1 and "=" in argv[1]:
        confs.append(argv[1].split("=", 1))
        argv = argv[2:]
    else:
        args.append(argv.pop(0))
EMBER = bool(args) and args[0] == "--ember"
if EMBER:
    args = args[1:]
    from ember.pyspark.sql import SparkSession
    from ember.pyspark.sql.functions import col, expr, window
else:
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, expr, window

rate, seconds, keys, master = int(args[0]), int(args[1]), int(args[2]), args[3]
query_kind = args[4] if len(args) > 4 else "window"
builder = (
    SparkSession.builder.appName("WindowState")
    .master(master)
    .config("spark.sql.shuffle.partitions", "2")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.session.timeZone", "UTC")
)
for key, value in confs:
    builder = builder.config(key, value)
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")


def rate_rows():
    return spark.readStream.format("rate").option("rowsPerSecond", rate).option("numPartitions", 2).load()


if query_kind == "join":
    left = rate_rows().select(col("value").alias("lkey"), col("timestamp").alias("ltime")).withWatermark("ltime", "10 seconds")
    right = rate_rows().select(col("value").alias("rkey"), col("timestamp").alias("rtime")).withWatermark("rtime", "10 seconds")
    within = "lkey = rkey AND rtime >= ltime - interval 5 seconds AND rtime <= ltime + interval 5 seconds"
    counts = left.join(right, expr(within), "inner")
else:
    counts = rate_rows().withWatermark("timestamp", "10 seconds").groupBy(window("timestamp", "10 seconds"), (col("value") % keys).alias("key")).count()
query = counts.writeStream.outputMode("append").format("noop").trigger(processingTime="1 second").start()
started = time.time()
next_batch = 0
while time.time() - started < seconds and query.isActive:
    time.sleep(0.2)
    for report in query.recentProgress:
        if report["batchId"] < next_batch:
            continue
        next_batch = report["batchId"] + 1
        states = report.get("stateOperators") or [{}]
        print(
            "BATCH t_ms=%d rows=%d proc_ms=%d state=%d watermark=%s"
            % ((time.time() - started) * 1000, report["numInputRows"], report["durationMs"].get("triggerExecution", 0),
               states[0].get("numRowsTotal", 0), (report.get("eventTime") or {}).get("watermark", "-")),
            flush=True,
        )
query.stop()
spark.stop()
