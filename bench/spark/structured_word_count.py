"""bench/compare.sh's Structured Streaming job in Python: seed 002's word count (socket lines,
or with ``--files DIR`` the text file source over a directory new files are moved into;
explode(split(value, " ")), groupBy("word").count(), complete mode, the console sink) on a
processing-time trigger, run by PySpark (the JVM's Structured Streaming), or with ``--ember``
by ember's Python package with only the imports changed. One line per micro-batch with input
for bench/verdict.py, from the query's progress reports:

    BATCH time_ms=T keys=K words=W proc_ms=P sched_ms=S total_ms=D

words: the batch's input lines times WORDS_PER_LINE; keys: the state's rows; proc_ms: the
batch's triggerExecution; total_ms: from the batch's slot on the trigger's grid (the first
batch's start plus whole intervals) to its end, so a batch that starts late because the last
one overran carries that lateness (a backlog shows as growing total_ms); sched_ms: that
lateness.

Usage: structured_word_count.py [--ember] (HOST PORT | --files DIR) BATCHES INTERVAL_MS MASTER [WORDS_PER_LINE]
       [--conf KEY=VALUE ...] (settings for the session's builder: spark.driver.memory, ...)
"""

import datetime
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
    from ember.pyspark.sql.functions import explode, split
else:
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import explode, split

FILES = args[0] == "--files"
host, port, batches, interval_ms, master = args[0], args[1], int(args[2]), int(args[3]), args[4]
words_per_line = int(args[5]) if len(args) > 5 else 10

builder = (
    SparkSession.builder.appName("StructuredNetworkWordCount")
    .master(master)
    .config("spark.sql.shuffle.partitions", "2")
    .config("spark.ui.enabled", "false")
)
for key, value in confs:
    builder = builder.config(key, value)
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
if FILES:
    lines = spark.readStream.format("text").load(port)
else:
    lines = spark.readStream.format("socket").option("host", host).option("port", int(port)).load()
words = lines.select(explode(split(lines.value, " ")).alias("word"))
word_counts = words.groupBy("word").count()
query = (
    word_counts.writeStream.outputMode("complete")
    .format("console")
    .trigger(processingTime="%d milliseconds" % interval_ms)
    .start()
)


def millis(timestamp):
    moment = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


printed, next_batch, first_start = 0, 0, None
while printed < batches and query.isActive:
    time.sleep(0.02)
    for report in query.recentProgress:
        if report["batchId"] < next_batch or report["numInputRows"] == 0:
            continue
        next_batch = report["batchId"] + 1
        start = millis(report["timestamp"])
        if first_start is None:
            first_start = start
        slot = first_start + (start - first_start) // interval_ms * interval_ms
        proc = int(report["durationMs"]["triggerExecution"])
        states = report.get("stateOperators") or [{}]
        print(
            "BATCH time_ms=%d keys=%d words=%d proc_ms=%d sched_ms=%d total_ms=%d"
            % (start, states[0].get("numRowsTotal", 0), report["numInputRows"] * words_per_line, proc,
               start - slot, start - slot + proc),
            flush=True,
        )
        printed += 1
query.stop()
spark.stop()
