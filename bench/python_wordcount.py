"""The seeds' word count written in Python on ember, in memory on the no-wait clock: 10 batches
of 20,000 lines of 10 words from a 5,000-word vocabulary (7 letters each), `flatMap(split)`,
`map((w, 1))`, `reduceByKey(add)`; prints words per second. Not a side-by-side comparison (that
is bench/compare.sh's job); a quick figure for the Python binding's own cost.

    python bench/python_wordcount.py WORKERS      # with the package installed (pip install ./python)
"""

import random
import sys
import time

from ember import _ember
from ember.pyspark import SparkContext
from ember.pyspark.streaming import StreamingContext
from ember.pyspark.streaming.dstream import DStream

BATCHES, LINES = 10, 20000


def main():
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    rng = random.Random(1)
    vocab = ["".join(rng.choice("abcdefghij") for _ in range(7)) for _ in range(5000)]
    lines = [" ".join(rng.choice(vocab) for _ in range(10)) for _ in range(LINES)]
    sc = SparkContext("local[%d]" % workers)
    ctx = _ember.StreamingContext(100, workers, clock="no_wait")
    ssc = StreamingContext(sc, 0.1, jssc=ctx)
    done = []
    source = DStream(ctx.replay_stream([lines] * BATCHES, 2), ssc)
    counts = source.flatMap(lambda line: line.split(" ")).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b)
    counts.foreachRDD(lambda rdd: done.append(rdd.count()))
    started = time.monotonic()
    ssc.start()
    while len(done) < BATCHES:
        time.sleep(0.005)
    took = time.monotonic() - started
    ssc.stop()
    print("workers %d: %.0f words/s" % (workers, BATCHES * LINES * 10 / took))


if __name__ == "__main__":
    main()
