#!/usr/bin/env python3
"""PySpark DStreams' word count for bench/compare.sh: the seed program as a PySpark user writes it.

    socketTextStream (or textFileStream) -> flatMap(split(' ')) -> map((w, 1)) -> reduceByKey(+)

Its output collects each batch's counts to the driver (foreachRDD and collect(), as the Java
program and ember's foreach_rdd do) and totals them; a StreamingListener prints one line per
completed batch, the same line as bench/spark/SocketWordCount.java:

    BATCH time_ms=T keys=K words=W records=N proc_ms=P sched_ms=S total_ms=D

records is the lines the receiver stored for the batch; proc, sched and total are Spark's
processing, scheduling and total delay of the batch.

Usage (with the python of the venv that holds pyspark; PYSPARK_PYTHON should name it too):

    socket_word_count.py [--ember] HOST PORT BATCHES INTERVAL_MS [MASTER] [--conf KEY=VALUE ...]
    socket_word_count.py [--ember] --files DIR BATCHES INTERVAL_MS [MASTER] [--conf KEY=VALUE ...]

--ember runs the same program on ember: its imports are taken from ember.pyspark instead of
pyspark, and nothing else changes (as a user takes a program to ember). Run that way under
`python -m ember.launch -n N`, it is N processes of an ember cluster; process 0 prints the
batch lines (the others' listeners see no receiver and no output, so they stay silent).

MASTER defaults to local[2]. --conf settings go to the SparkConf before the JVM starts (so
spark.driver.memory and spark.driver.extraJavaOptions apply to it); the defaults here are the
Java program's: the web UI off, the driver on 127.0.0.1. Stops after BATCHES batches.
"""

import os
import sys
import threading


def usage(message):
    print(f"socket_word_count.py: {message}", file=sys.stderr)
    print(
        "usage: socket_word_count.py HOST PORT BATCHES INTERVAL_MS [MASTER] [--conf KEY=VALUE ...]\n"
        "       socket_word_count.py --files DIR BATCHES INTERVAL_MS [MASTER] [--conf KEY=VALUE ...]",
        file=sys.stderr,
    )
    sys.exit(2)


def parse(argv):
    confs = []
    positional = []
    ember = bool(argv) and argv[0] == "--ember"
    if ember:
        argv = argv[1:]
    i = 0
    while i < len(argv):
        if argv[i] == "--conf":
            if i + 1 >= len(argv) or "=" not in argv[i + 1]:
                usage("--conf needs KEY=VALUE")
            key, value = argv[i + 1].split("=", 1)
            confs.append((key, value))
            i += 2
        else:
            positional.append(argv[i])
            i += 1
    if len(positional) < 4:
        usage("too few arguments")
    files = positional[0] == "--files"
    source = positional[1] if files else (positional[0], positional[1])
    try:
        if not files:
            source = (source[0], int(source[1]))
        batches = int(positional[2])
        interval_ms = int(positional[3])
    except ValueError as e:
        usage(f"not a number: {e}")
    if batches < 1 or interval_ms < 1:
        usage("BATCHES and INTERVAL_MS must be positive")
    # PySpark takes the interval in seconds and makes milliseconds of it with int(s * 1000).
    if int(interval_ms / 1000.0 * 1000) != interval_ms:
        usage(f"INTERVAL_MS {interval_ms} does not survive PySpark's seconds-to-milliseconds rounding; pick another")
    if files and not os.path.isdir(source):
        usage(f"{source} is not a directory")
    master = positional[4] if len(positional) > 4 else "local[2]"
    return ember, files, source, batches, interval_ms, master, confs


def main():
    ember, files, source, batches, interval_ms, master, confs = parse(sys.argv[1:])
    try:
        if ember:
            from ember.pyspark import SparkConf, SparkContext
            from ember.pyspark.streaming import StreamingContext
            from ember.pyspark.streaming.listener import StreamingListener
        else:
            from pyspark import SparkConf, SparkContext
            from pyspark.streaming import StreamingContext
            from pyspark.streaming.listener import StreamingListener
    except ImportError as e:
        system = "ember (pip install ./python)" if ember else "pyspark"
        print(f"socket_word_count.py: cannot import {system} ({e}); run it with the venv's python", file=sys.stderr)
        sys.exit(2)

    conf = SparkConf().setAppName("socket_word_count.py").setMaster(master)
    for key, value in confs:
        conf.set(key, value)
    for key, value in (
        ("spark.ui.enabled", "false"),
        ("spark.driver.host", "127.0.0.1"),
        ("spark.driver.bindAddress", "127.0.0.1"),
    ):
        conf.setIfMissing(key, value)
    sc = SparkContext(conf=conf)
    sc.setLogLevel("WARN")
    ssc = StreamingContext(sc, interval_ms / 1000.0)

    lines = ssc.textFileStream(source) if files else ssc.socketTextStream(*source)
    counts = lines.flatMap(lambda line: line.split(" ")).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b)

    # Keys and words of each batch's output, by batch time, until the listener prints them.
    counted = {}
    lock = threading.Lock()
    completed = [0]

    def output(time, rdd):
        pairs = rdd.collect()
        words = sum(c for _, c in pairs)
        # foreachRDD gives the batch time as a local datetime made from milliseconds / 1000.
        with lock:
            counted[int(round(time.timestamp() * 1000))] = (len(pairs), words)

    counts.foreachRDD(output)

    class Listener(StreamingListener):
        def onBatchCompleted(self, batchCompleted):
            info = batchCompleted.batchInfo()
            time_ms = info.batchTime().milliseconds()
            with lock:
                keys, words = counted.pop(time_ms, (-1, -1))
            print(
                f"BATCH time_ms={time_ms} keys={keys} words={words} records={info.numRecords()}"
                f" proc_ms={info.processingDelay()} sched_ms={info.schedulingDelay()} total_ms={info.totalDelay()}",
                flush=True,
            )
            with lock:
                completed[0] += 1

        def onReceiverError(self, receiverError):
            print(f"RECEIVER error: {receiverError.receiverInfo().lastErrorMessage()}", file=sys.stderr, flush=True)

        def onReceiverStopped(self, receiverStopped):
            print(f"RECEIVER stopped: {receiverStopped.receiverInfo().lastErrorMessage()}", file=sys.stderr, flush=True)

    # In an ember cluster, process 0 runs the receiver and the outputs: only it reports batches.
    if os.environ.get("EMBER_CLUSTER_PROCESS", "0") == "0":
        ssc.addStreamingListener(Listener())
    ssc.start()
    while completed[0] < batches:
        if ssc.awaitTerminationOrTimeout(0.05):
            break
    try:
        ssc.stop(True, False)
    finally:
        sys.stdout.flush()
        # The py4j threads need not linger: the JVM exits once this process's stdin pipe closes.
        os._exit(0)


if __name__ == "__main__":
    main()
