"""The functions ember runs natively (ember.pyspark.streaming.native): recognised only in their
exact shapes, and giving the same results as calling them in Python, batch by batch."""

import collections
import operator
import socket
import threading
import time

from ember.pyspark.streaming import StreamingContext
from ember.pyspark.streaming import native

LINES = ["the cat  sat", " leading", "trailing ", "", "ünïcödé wörds ünïcödé", "tab\tinside word", "a a a a"]


def serve(lines, ready):
    """Serves `lines` (then keeps the connection open) to the first client; returns the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def run():
        conn, _ = server.accept()
        conn.sendall(("\n".join(lines) + "\n").encode("utf-8"))
        ready.wait(10)
        conn.close()
        server.close()

    threading.Thread(target=run, daemon=True).start()
    return server.getsockname()[1]


def test_shapes_are_recognised_exactly():
    def split_comma(line):
        return line.split(",")

    three = 3
    assert native.split_separator(lambda line: line.split(" ")) == " "
    assert native.split_separator(split_comma) == ","
    assert native.split_separator(lambda line: line.split()) is None
    assert native.split_separator(lambda line: line.split(" ", 1)) is None
    assert native.split_separator(lambda line: line.lower().split(" ")) is None
    assert native.pair_constant(lambda w: (w, 1)) == 1
    assert native.pair_constant(lambda w: (w, -7)) == -7
    assert native.pair_constant(lambda w: (w, three)) is None
    assert native.pair_constant(lambda w: (w, True)) is None
    assert native.pair_constant(lambda w: (w, 2**31)) is None
    assert native.pair_constant(lambda w: (w, 1.0)) is None
    assert native.is_add(lambda a, b: a + b) and native.is_add(operator.add)
    assert not native.is_add(lambda a, b: b + a) and not native.is_add(lambda a, b: a * b)


def test_a_recognised_word_count_runs_natively_and_counts_as_python_does(sc):
    ready = threading.Event()
    port = serve(LINES, ready)
    ssc = StreamingContext(sc, 0.1)
    lines = ssc.socketTextStream("127.0.0.1", port)
    fast = lines.flatMap(lambda line: line.split(" ")).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b)
    slow = (
        lines.flatMap(lambda line: [w for w in line.split(" ")])
        .map(lambda w: (w, int("1")))
        .reduceByKey(lambda a, b: b + a)
    )
    assert fast._native is not None and fast._native.kind() == "pairs"
    assert slow._native is None
    by_time = collections.defaultdict(dict)
    fast.foreachRDD(lambda t, rdd: by_time[t].__setitem__("fast", sorted(rdd.collect())))
    slow.foreachRDD(lambda t, rdd: by_time[t].__setitem__("slow", sorted(rdd.collect())))
    ssc.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = collections.Counter()
        for outputs in list(by_time.values()):
            for word, n in outputs.get("fast", []):
                seen[word] += n
        if sum(seen.values()) >= sum(len(line.split(" ")) for line in LINES):
            break
        time.sleep(0.05)
    ssc.stop(stopSparkContext=False, stopGraceFully=True)
    ready.set()
    expected = collections.Counter(w for line in LINES for w in line.split(" "))
    assert seen == expected
    for t, outputs in by_time.items():
        assert outputs.get("fast") == outputs.get("slow"), t
        for word, n in outputs.get("fast", []):
            assert type(word) is str and type(n) is int


def test_other_operations_take_the_native_streams_elements_as_python_objects(sc):
    ready = threading.Event()
    port = serve(["x y", "y"], ready)
    ssc = StreamingContext(sc, 0.1)
    pairs = ssc.socketTextStream("127.0.0.1", port).flatMap(lambda l: l.split(" ")).map(lambda w: (w, 1))
    out = []
    pairs.groupByKey().mapValues(len).foreachRDD(lambda rdd: out.extend(rdd.collect()))
    ssc.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(n for _, n in out) < 3:
        time.sleep(0.05)
    ssc.stop(stopSparkContext=False, stopGraceFully=True)
    ready.set()
    totals = collections.Counter()
    for word, n in out:
        totals[word] += n
    assert totals == {"x": 1, "y": 2}
