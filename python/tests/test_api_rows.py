"""The rows of docs/pyspark-api.md that no other test covered: SparkContext's getOrCreate,
setLogLevel, stop and defaultParallelism; StreamingContext's start, awaitTerminationOrTimeout,
sparkContext and transform; the DStream methods per batch, by window, by two streams; and the
RDD methods a foreachRDD function calls on a batch. Expected values are PySpark 3.5's, computed
here from each test's input with plain Python.

Most jobs run on a manual clock (as test_conformance.py drives them): batch k (1, 2, ...) is at
k * BATCH_MS and holds the k-th entry of its queueStream; each batch is awaited before the next,
so a test takes milliseconds and does not depend on timing. The tests of start() and
awaitTerminationOrTimeout use the system clock, as a program does.
"""

import collections
import datetime
import functools
import operator
import os
import threading
import time

import pytest

from ember import _ember
from ember.pyspark import SparkConf, SparkContext
from ember.pyspark.streaming import StreamingContext, StreamingJobError

BATCH_MS = 100
# How long one batch may take before the test fails (a hang, not slowness).
BATCH_TIMEOUT_MS = 10000


def manual_context(sc):
    """A StreamingContext of BATCH_MS batches on a manual clock at 0: ``(clock, ssc)``."""
    clock = _ember.StreamingContext(BATCH_MS, sc.defaultParallelism, clock="manual")
    return clock, StreamingContext(sc, BATCH_MS / 1000, jssc=clock)


def run_batches(clock, ssc, count):
    """Starts ``ssc``, runs batches 1..count one at a time (each awaited; a failed batch's
    error is raised here), then stops ``ssc`` but not its SparkContext. Every job of these
    tests has an output in every batch, so every batch can be awaited."""
    ssc.start()
    try:
        for k in range(1, count + 1):
            clock.set_clock(k * BATCH_MS)
            if not clock.await_batch(k * BATCH_MS, BATCH_TIMEOUT_MS):
                pytest.fail("batch %d did not complete within %d ms" % (k, BATCH_TIMEOUT_MS))
            ssc.awaitTerminationOrTimeout(0.001)
    finally:
        ssc.stop(stopSparkContext=False)


def batch_number(time):
    """The batch (1, 2, ...) of the ``time`` foreachRDD passes, on the manual clock."""
    ms = round(time.timestamp() * 1000)
    assert ms % BATCH_MS == 0, ms
    return ms // BATCH_MS


def by_batch(dstream, convert=lambda rdd: rdd.collect()):
    """``{batch number: convert(rdd)}`` for every batch ``dstream`` emits."""
    out = {}
    dstream.foreachRDD(lambda time, rdd: out.__setitem__(batch_number(time), convert(rdd)))
    return out


def unordered(items):
    return sorted(items, key=repr)


def in_window(inputs, k, length):
    """The elements of batches k-length+1 .. k (entries of ``inputs`` past its end are empty)."""
    return [x for j in range(max(1, k - length + 1), k + 1) if j <= len(inputs) for x in inputs[j - 1]]


def on_each_batch(sc, batches, func):
    """``func(rdd)`` in a foreachRDD over ``queueStream(batches)``: its results in batch order."""
    clock, ssc = manual_context(sc)
    results = []
    ssc.queueStream(batches).foreachRDD(lambda rdd: results.append(func(rdd)))
    run_batches(clock, ssc, len(batches))
    assert len(results) == len(batches)
    return results


def wait_until(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met within %s s" % seconds)
        time.sleep(0.01)


# SparkContext


def test_get_or_create_returns_the_active_context(sc):
    """With a context active, getOrCreate returns it (a conf given then is ignored, as in PySpark)."""
    assert SparkContext.getOrCreate() is sc
    assert SparkContext.getOrCreate(SparkConf().setMaster("local[3]").setAppName("other")) is sc


def test_get_or_create_without_an_active_context_makes_one_from_its_conf(sc):
    """With no context active, getOrCreate(conf) makes SparkContext(conf=conf): its master and app name."""
    sc.stop()
    made = SparkContext.getOrCreate(SparkConf().setMaster("local[3]").setAppName("made-by-get-or-create"))
    try:
        assert made is not sc
        assert (made.master, made.appName, made.defaultParallelism) == ("local[3]", "made-by-get-or-create", 3)
        assert SparkContext.getOrCreate() is made
    finally:
        made.stop()


def test_set_log_level_accepts_sparks_levels_in_any_case_and_refuses_others(sc):
    """setLogLevel takes Spark's levels, case-insensitively; another level is refused, naming it."""
    for level in ["ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN"]:
        sc.setLogLevel(level)
        sc.setLogLevel(level.lower())
    with pytest.raises(ValueError, match="verbose"):
        sc.setLogLevel("verbose")


def test_spark_context_stop_ends_it_so_get_or_create_makes_a_new_one():
    """After stop() (twice is harmless), getOrCreate no longer returns the stopped context."""
    sc = SparkContext("local[2]", "to-stop")
    assert SparkContext.getOrCreate() is sc
    sc.stop()
    sc.stop()
    made = SparkContext.getOrCreate(SparkConf().setMaster("local[1]").setAppName("after-stop"))
    try:
        assert made is not sc
    finally:
        made.stop()


def test_streaming_context_stop_stops_the_spark_context_unless_told_not_to(sc):
    """ssc.stop(stopSparkContext=False) leaves sc active; ssc.stop() stops sc too."""
    for stop_spark_context in (False, True):
        ssc = StreamingContext(sc, 0.05)
        ssc.queueStream([[1]]).foreachRDD(lambda rdd: None)
        ssc.start()
        ssc.stop(stopSparkContext=stop_spark_context)
        active = SparkContext.getOrCreate()
        if active is not sc:
            active.stop()
        assert (active is sc) is not stop_spark_context


def test_default_parallelism_is_the_local_masters_thread_count():
    """local is 1 thread, local[N] N, local[*] the machine's cores (one context at a time, as in PySpark)."""
    for master, expected in [("local", 1), ("local[3]", 3), ("local[*]", os.cpu_count())]:
        sc = SparkContext(master, "parallelism")
        try:
            assert sc.defaultParallelism == expected, master
        finally:
            sc.stop()


def test_default_parallelism_is_spark_default_parallelism_when_set():
    """In local mode Spark's defaultParallelism is spark.default.parallelism when the conf sets it."""
    sc = SparkContext(conf=SparkConf().setMaster("local[2]").setAppName("p").set("spark.default.parallelism", "5"))
    try:
        assert sc.defaultParallelism == 5
    finally:
        sc.stop()


# StreamingContext


def test_start_runs_the_queued_batches_in_order_and_nothing_before(sc):
    """Nothing runs before start(); after it, the queued batches come one per batch, in order."""
    ssc = StreamingContext(sc, 0.05)
    inputs = [[1, 2], [3], [4, 5, 6]]
    seen = []
    ssc.queueStream(inputs).foreachRDD(lambda rdd: seen.append(sorted(rdd.collect())))
    time.sleep(0.15)
    assert seen == []
    ssc.start()
    try:
        wait_until(lambda: len(seen) >= len(inputs), 10)
    finally:
        ssc.stop(stopSparkContext=False)
    assert seen[: len(inputs)] == [sorted(b) for b in inputs]


def test_start_of_a_started_context_does_nothing(sc):
    """A second start() of an active context only logs a warning in Spark; the context runs on."""
    ssc = StreamingContext(sc, 0.05)
    seen = []
    ssc.queueStream([[1], [2]]).foreachRDD(lambda rdd: seen.extend(rdd.collect()))
    ssc.start()
    try:
        with pytest.warns(UserWarning, match="StreamingContext has already been started"):
            ssc.start()
        assert StreamingContext.getActive() is ssc
        wait_until(lambda: len(seen) >= 2, 10)
    finally:
        ssc.stop(stopSparkContext=False)
    assert seen[:2] == [1, 2]


def test_start_of_a_stopped_context_or_one_without_outputs_raises(sc):
    """start() after stop(), or with no output operation, raises with Spark's message."""
    ssc = StreamingContext(sc, 0.05)
    ssc.queueStream([[1]]).map(lambda x: x)
    with pytest.raises(Exception, match="No output operations registered, so nothing to execute"):
        ssc.start()
    ssc.stop(stopSparkContext=False)
    ssc = StreamingContext(sc, 0.05)
    ssc.queueStream([[1]]).foreachRDD(lambda rdd: None)
    ssc.start()
    ssc.stop(stopSparkContext=False)
    with pytest.raises(Exception, match="StreamingContext has already been stopped"):
        ssc.start()


def test_await_termination_or_timeout_is_false_after_the_timeout_and_true_once_stopped(sc):
    """awaitTerminationOrTimeout waits its timeout and returns False while running; True once stopped."""
    ssc = StreamingContext(sc, 0.05)
    ssc.queueStream([[1]]).foreachRDD(lambda rdd: None)
    ssc.start()
    stopper = threading.Timer(0.2, lambda: ssc.stop(stopSparkContext=False))
    try:
        began = time.monotonic()
        assert ssc.awaitTerminationOrTimeout(0.2) is False
        assert time.monotonic() - began >= 0.19
        stopper.start()
        began = time.monotonic()
        assert ssc.awaitTerminationOrTimeout(30) is True
        assert time.monotonic() - began < 10
    finally:
        stopper.cancel()
        ssc.stop(stopSparkContext=False)
    began = time.monotonic()
    assert ssc.awaitTerminationOrTimeout(5) is True
    assert time.monotonic() - began < 1


def test_await_termination_or_timeout_raises_the_error_of_a_failed_batch(sc):
    """A batch failed in a user function is raised by awaitTerminationOrTimeout, with the function's exception."""
    ssc = StreamingContext(sc, 0.05)
    ssc.queueStream([[1, 0]]).map(lambda x: 1 // x).foreachRDD(lambda rdd: None)
    ssc.start()
    try:
        with pytest.raises(StreamingJobError, match="ZeroDivisionError") as raised:
            wait_until(lambda: ssc.awaitTerminationOrTimeout(0.05), 10)
    finally:
        ssc.stop(stopSparkContext=False)
    assert isinstance(raised.value.__cause__, ZeroDivisionError)


def test_streaming_context_spark_context_is_the_one_it_was_made_with(sc):
    """ssc.sparkContext is the SparkContext given to StreamingContext."""
    assert StreamingContext(sc, 0.05).sparkContext is sc
    assert manual_context(sc)[1].sparkContext is sc


def test_streaming_context_transform_passes_the_rdds_of_its_streams(sc):
    """ssc.transform(dstreams, f) calls f with the batch's RDDs of the streams, in their order."""
    clock, ssc = manual_context(sc)
    a_in, b_in = [[1, 2], [3]], [[10], [20, 30]]
    a, b = ssc.queueStream(a_in), ssc.queueStream(b_in)
    one = by_batch(ssc.transform([a], lambda rdds: rdds[0].map(lambda x: (len(rdds), x))))
    two = by_batch(ssc.transform(
        [a, b], lambda rdds: rdds[0].map(lambda x: ("a", x)).union(rdds[1].map(lambda x: ("b", x)))))
    run_batches(clock, ssc, 2)
    for k in (1, 2):
        assert unordered(one[k]) == unordered((1, x) for x in a_in[k - 1])
        assert unordered(two[k]) == unordered([("a", x) for x in a_in[k - 1]] + [("b", x) for x in b_in[k - 1]])


# DStream: per batch


def test_map_partitions_and_glom_see_each_partition_of_a_batch(sc):
    """mapPartitions calls f with an iterator per partition; glom gives each partition as a list."""
    clock, ssc = manual_context(sc)
    queued = [sc.parallelize(range(10), 3), sc.parallelize(["a", "b", "c", "d"], 2)]
    stream = ssc.queueStream(queued)
    args = []

    def sizes(it):
        args.append(it)
        yield ("size", sum(1 for _ in it))

    sized = by_batch(stream.mapPartitions(sizes))
    glommed = by_batch(stream.glom())
    run_batches(clock, ssc, len(queued))
    assert args and all(isinstance(it, collections.abc.Iterator) for it in args)
    for k, rdd in enumerate(queued, 1):
        partitions = rdd.glom().collect()
        assert glommed[k] == partitions
        assert sized[k] == [("size", len(p)) for p in partitions]


def test_map_values_and_flat_map_values_keep_each_key(sc):
    """mapValues maps each value under its key; flatMapValues gives a pair per value f returns."""
    clock, ssc = manual_context(sc)
    inputs = [[("a", 1), ("b", 2), ("a", 3)], [("c", 0), ("d", 4)]]
    pairs = ssc.queueStream(inputs)
    mapped = by_batch(pairs.mapValues(lambda v: v * 10))
    flat = by_batch(pairs.flatMapValues(lambda v: range(v)))
    run_batches(clock, ssc, len(inputs))
    for k, batch in enumerate(inputs, 1):
        assert unordered(mapped[k]) == unordered((key, v * 10) for key, v in batch)
        assert unordered(flat[k]) == unordered((key, x) for key, v in batch for x in range(v))


def test_count_reduce_and_count_by_value_give_each_batchs_totals(sc):
    """count gives a batch's size (0 when empty); reduce its single reduced element (none when
    empty); countByValue each distinct element with its count."""
    clock, ssc = manual_context(sc)
    inputs = [[3, 1, 3, 7], [5], [], [2, 2, 2, 9, 9]]
    stream = ssc.queueStream(inputs)
    counts = by_batch(stream.count())
    reduced = by_batch(stream.reduce(operator.add))
    by_value = by_batch(stream.countByValue())
    run_batches(clock, ssc, len(inputs))
    for k, batch in enumerate(inputs, 1):
        assert counts[k] == [len(batch)]
        assert reduced[k] == ([sum(batch)] if batch else [])
        assert sorted(by_value[k]) == sorted(collections.Counter(batch).items())


def test_combine_by_key_builds_each_keys_combiner_from_its_values(sc):
    """combineByKey: createCombiner on a key's first value, mergeValue/mergeCombiners for the rest."""
    clock, ssc = manual_context(sc)
    inputs = [[("a", 1), ("b", 5), ("a", 4), ("a", 7), ("c", 2)], [("b", 1), ("b", 1)]]
    combined = by_batch(ssc.queueStream(inputs).combineByKey(
        lambda v: (v, 1), lambda c, v: (c[0] + v, c[1] + 1), lambda c, d: (c[0] + d[0], c[1] + d[1])))
    run_batches(clock, ssc, len(inputs))
    for k, batch in enumerate(inputs, 1):
        expected = {}
        for key, v in batch:
            total, n = expected.get(key, (0, 0))
            expected[key] = (total + v, n + 1)
        assert sorted(combined[k]) == sorted(expected.items())


def test_union_gives_both_streams_elements_and_repartition_the_asked_partitions(sc):
    """union of two streams gives each batch's elements of both; repartition(n) gives n partitions
    holding the same elements."""
    clock, ssc = manual_context(sc)
    a_in, b_in = [[1, 2, 3], [], [4]], [[10], [20, 30], []]
    a, b = ssc.queueStream(a_in), ssc.queueStream(b_in)
    united = by_batch(a.union(b))
    repartitioned = by_batch(a.union(b).repartition(3), lambda rdd: (rdd.getNumPartitions(), rdd.collect()))
    run_batches(clock, ssc, 3)
    for k in (1, 2, 3):
        both = a_in[k - 1] + b_in[k - 1]
        assert sorted(united[k]) == sorted(both)
        assert repartitioned[k][0] == 3
        assert sorted(repartitioned[k][1]) == sorted(both)


def test_union_of_streams_with_different_slides_is_a_value_error(sc):
    """union refuses a stream of another slide duration with a ValueError."""
    _, ssc = manual_context(sc)
    stream = ssc.queueStream([[1]])
    with pytest.raises(ValueError):
        stream.union(stream.window(0.2, 0.2))


def test_cache_returns_the_stream_and_each_batch_is_computed_once(sc):
    """cache() returns the stream; with two outputs on it, its map runs once per element."""
    clock, ssc = manual_context(sc)
    inputs = [[1, 2, 3], [4, 5]]
    calls = []
    stream = ssc.queueStream(inputs).map(lambda x: calls.append(x) or x * 2)
    assert stream.cache() is stream
    first, second = by_batch(stream), by_batch(stream.map(lambda x: x + 1))
    run_batches(clock, ssc, len(inputs))
    assert sorted(calls) == sorted(x for b in inputs for x in b)
    for k, batch in enumerate(inputs, 1):
        assert sorted(first[k]) == sorted(x * 2 for x in batch)
        assert sorted(second[k]) == sorted(x * 2 + 1 for x in batch)


def test_persist_takes_a_storage_level_and_returns_the_stream(sc):
    """persist(StorageLevel.MEMORY_AND_DISK), as PySpark programs write it, returns the stream."""
    from ember.pyspark import StorageLevel

    clock, ssc = manual_context(sc)
    stream = ssc.queueStream([[1, 2]]).map(lambda x: -x)
    assert stream.persist(StorageLevel.MEMORY_AND_DISK) is stream
    out = by_batch(stream)
    run_batches(clock, ssc, 1)
    assert sorted(out[1]) == [-2, -1]


def test_context_of_a_dstream_is_its_streaming_context(sc):
    """context() of an input stream and of streams made from it is their StreamingContext."""
    _, ssc = manual_context(sc)
    stream = ssc.queueStream([[("a", 1)]])
    for s in (stream, stream.map(lambda x: x), stream.window(0.2, 0.1), stream.join(stream)):
        assert s.context() is ssc


# DStream: windows


def test_window_gives_the_elements_of_each_window_at_each_slide(sc):
    """window(w, s) emits at every slide the elements of the batches in the last w seconds;
    without s it slides every batch."""
    clock, ssc = manual_context(sc)
    inputs = [[1, 2], [3], [], [4, 5, 6], [7], [], [], []]
    stream = ssc.queueStream(inputs)
    source = by_batch(stream)
    sliding = by_batch(stream.window(0.3, 0.2))
    every_batch = by_batch(stream.window(0.2))
    run_batches(clock, ssc, len(inputs))
    assert sorted(source) == list(range(1, len(inputs) + 1))
    assert sorted(sliding) == [k for k in range(1, len(inputs) + 1) if k % 2 == 0]
    for k in sliding:
        assert sorted(sliding[k]) == sorted(in_window(inputs, k, 3))
    assert sorted(every_batch) == list(range(1, len(inputs) + 1))
    for k in every_batch:
        assert sorted(every_batch[k]) == sorted(in_window(inputs, k, 2))


def test_reduce_by_window_and_count_by_window_of_short_windows_skip_empty_windows(sc):
    """Windows shorter than 5 slides are reduced from their batches: the reduced value or count of
    the window, and no element for an empty window (PySpark's reduceByKeyAndWindow, key 1)."""
    clock, ssc = manual_context(sc)
    inputs = [[1, 2, 3], [4], [], [], [], [5, 6], [], [], []]
    stream = ssc.queueStream(inputs)
    source = by_batch(stream)
    reduced = by_batch(stream.reduceByWindow(operator.add, operator.sub, 0.3, 0.1))
    without_inverse = by_batch(stream.reduceByWindow(max, None, 0.4, 0.2))
    counted = by_batch(stream.countByWindow(0.3, 0.1))
    run_batches(clock, ssc, len(inputs))
    assert len(source) == len(inputs)
    for k in range(1, len(inputs) + 1):
        window = in_window(inputs, k, 3)
        assert reduced.get(k) == ([sum(window)] if window else []), k
        assert counted.get(k) == ([len(window)] if window else []), k
        if k % 2 == 0:
            window = in_window(inputs, k, 4)
            assert without_inverse.get(k) == ([max(window)] if window else []), k
        else:
            assert k not in without_inverse


def test_reduce_by_window_and_count_by_window_from_five_slides_keep_their_zero(sc):
    """From 5 slides on, reduceByWindow with an inverse and countByWindow subtract what left the
    window, so once there was an element, an empty window gives the inverse's zero (0)."""
    clock, ssc = manual_context(sc)
    inputs = [[], [1, 2, 3], [4], [], [], [], [], [], []]
    stream = ssc.queueStream(inputs)
    source = by_batch(stream)
    reduced = by_batch(stream.reduceByWindow(operator.add, operator.sub, 0.5, 0.1))
    counted = by_batch(stream.countByWindow(0.5, 0.1))
    run_batches(clock, ssc, len(inputs))
    assert len(source) == len(inputs)
    for k in range(1, len(inputs) + 1):
        seen = in_window(inputs, k, k)
        window = in_window(inputs, k, 5)
        assert reduced.get(k) == ([sum(window)] if seen else []), k
        assert counted.get(k) == ([len(window)] if seen else []), k


def test_group_by_key_and_window_groups_each_keys_values_in_the_window(sc):
    """groupByKeyAndWindow over fewer than 5 slides: each key of the window with all its values
    in the window; keys without values in the window are gone."""
    clock, ssc = manual_context(sc)
    inputs = [[("a", 1), ("b", 2)], [("a", 3)], [], [("b", 4), ("c", 5)], [], [], []]
    stream = ssc.queueStream(inputs)
    source = by_batch(stream)
    every_batch = by_batch(stream.groupByKeyAndWindow(0.3, 0.1), lambda rdd: rdd.mapValues(list).collect())
    every_other = by_batch(stream.groupByKeyAndWindow(0.4, 0.2), lambda rdd: rdd.mapValues(list).collect())
    run_batches(clock, ssc, len(inputs))
    assert len(source) == len(inputs)

    def grouped(pairs):
        groups = collections.defaultdict(list)
        for key, v in pairs:
            groups[key].append(v)
        return sorted((key, sorted(vs)) for key, vs in groups.items())

    for k in range(1, len(inputs) + 1):
        assert sorted((key, sorted(vs)) for key, vs in every_batch[k]) == grouped(in_window(inputs, k, 3)), k
    assert sorted(every_other) == [k for k in range(1, len(inputs) + 1) if k % 2 == 0]
    for k in every_other:
        assert sorted((key, sorted(vs)) for key, vs in every_other[k]) == grouped(in_window(inputs, k, 4)), k


def test_group_by_key_and_window_from_five_slides_keeps_keys_whose_values_left(sc):
    """From 5 slides on, PySpark's groupByKeyAndWindow subtracts the values that left the window
    (its inverse function is a[len(b):]), so a key seen since the stream began stays with no values."""
    clock, ssc = manual_context(sc)
    inputs = [[("a", 1), ("b", 2)], [("a", 3)], [("c", 4)], [], [], [], [], [], []]
    stream = ssc.queueStream(inputs)
    source = by_batch(stream)
    grouped = by_batch(stream.groupByKeyAndWindow(0.5, 0.1), lambda rdd: rdd.mapValues(list).collect())
    run_batches(clock, ssc, len(inputs))
    assert len(source) == len(inputs)
    for k in range(1, len(inputs) + 1):
        keys = {key for key, _ in in_window(inputs, k, k)}
        window = in_window(inputs, k, 5)
        expected = sorted((key, sorted(v for kk, v in window if kk == key)) for key in keys)
        assert sorted((key, sorted(vs)) for key, vs in grouped[k]) == expected, k


# DStream: transform and two streams


def test_transform_calls_a_one_argument_function_with_the_rdd_and_a_two_argument_one_with_time_too(sc):
    """transform(f) calls f(rdd), or f(time, rdd) with the batch's time as a datetime, and emits
    the RDD f returns."""
    clock, ssc = manual_context(sc)
    inputs = [[1, 2, 3], [4, 5]]
    stream = ssc.queueStream(inputs)
    times = []

    def stamp(time, rdd):
        times.append(time)
        return rdd.map(lambda x: (batch_number(time), x))

    one = by_batch(stream.transform(lambda rdd: rdd.map(lambda x: x * 10).filter(lambda x: x != 20)))
    two = by_batch(stream.transform(stamp))
    run_batches(clock, ssc, len(inputs))
    assert times and all(isinstance(t, datetime.datetime) for t in times)
    for k, batch in enumerate(inputs, 1):
        assert sorted(one[k]) == sorted(x * 10 for x in batch if x * 10 != 20)
        assert sorted(two[k]) == sorted((k, x) for x in batch)


def test_transform_with_combines_the_batches_of_two_streams_in_both_forms(sc):
    """transformWith(f, other) calls f(rdd, other_rdd), or f(time, rdd, other_rdd), per batch."""
    clock, ssc = manual_context(sc)
    a_in, b_in = [[("a", 1), ("b", 2)], [("a", 3)]], [[("a", "x")], [("a", "y"), ("a", "z")]]
    a, b = ssc.queueStream(a_in), ssc.queueStream(b_in)
    joined = by_batch(a.transformWith(lambda r, s: r.join(s), b))
    stamped = by_batch(a.transformWith(lambda t, r, s: r.union(s).map(lambda kv: (batch_number(t), kv)), b))
    run_batches(clock, ssc, 2)
    for k in (1, 2):
        A, B = a_in[k - 1], b_in[k - 1]
        assert unordered(joined[k]) == unordered((ka, (v, w)) for ka, v in A for kb, w in B if ka == kb)
        assert unordered(stamped[k]) == unordered((k, kv) for kv in A + B)


JOIN_A = [[("a", 1), ("b", 2), ("a", 3)], [("c", 5)], [], [("d", 6), ("d", 7)]]
JOIN_B = [[("a", "x"), ("c", "y"), ("a", "z")], [], [("d", "w")], [("d", "v")]]


def _values(pairs, key):
    return [v for k, v in pairs if k == key]


def test_joins_pair_the_values_of_each_key_across_the_two_streams(sc):
    """join, leftOuterJoin, rightOuterJoin and fullOuterJoin per batch, None standing for the
    missing side, as PySpark's RDD joins give."""
    clock, ssc = manual_context(sc)
    a, b = ssc.queueStream(JOIN_A), ssc.queueStream(JOIN_B)
    names = ("join", "leftOuterJoin", "rightOuterJoin", "fullOuterJoin")
    outs = {name: by_batch(getattr(a, name)(b)) for name in names}
    run_batches(clock, ssc, len(JOIN_A))
    for k in range(1, len(JOIN_A) + 1):
        A, B = JOIN_A[k - 1], JOIN_B[k - 1]
        keys_a, keys_b = {key for key, _ in A}, {key for key, _ in B}
        inner = [(key, (v, w)) for key in keys_a & keys_b for v in _values(A, key) for w in _values(B, key)]
        left_only = [(key, (v, None)) for key in keys_a - keys_b for v in _values(A, key)]
        right_only = [(key, (None, w)) for key in keys_b - keys_a for w in _values(B, key)]
        assert unordered(outs["join"][k]) == unordered(inner), k
        assert unordered(outs["leftOuterJoin"][k]) == unordered(inner + left_only), k
        assert unordered(outs["rightOuterJoin"][k]) == unordered(inner + right_only), k
        assert unordered(outs["fullOuterJoin"][k]) == unordered(inner + left_only + right_only), k


def test_cogroup_gives_every_key_with_its_values_in_each_stream(sc):
    """cogroup gives each key of either stream's batch with (its values in this stream, in the other)."""
    clock, ssc = manual_context(sc)
    a, b = ssc.queueStream(JOIN_A), ssc.queueStream(JOIN_B)
    out = by_batch(a.cogroup(b), lambda rdd: rdd.mapValues(lambda vw: (sorted(vw[0]), sorted(vw[1]))).collect())
    run_batches(clock, ssc, len(JOIN_A))
    for k in range(1, len(JOIN_A) + 1):
        A, B = JOIN_A[k - 1], JOIN_B[k - 1]
        keys = {key for key, _ in A + B}
        expected = [(key, (sorted(_values(A, key)), sorted(_values(B, key)))) for key in keys]
        assert unordered(out[k]) == unordered(expected), k


# The RDD of a batch, in foreachRDD


def test_rdd_collect_count_take_first_and_is_empty_follow_the_batch(sc):
    """collect gives a queued batch in its order; count, take(n), first and isEmpty agree with
    it; first of an empty batch is a ValueError."""

    def actions(rdd):
        try:
            first = rdd.first()
        except ValueError:
            first = ValueError
        return {"collect": rdd.collect(), "count": rdd.count(), "take": rdd.take(4), "take0": rdd.take(0),
                "take_all": rdd.take(100), "first": first, "isEmpty": rdd.isEmpty()}

    batches = [[5, 3, 8, 1, 9, 2], ["only"], []]
    for batch, got in zip(batches, on_each_batch(sc, batches, actions)):
        assert got == {"collect": batch, "count": len(batch), "take": batch[:4], "take0": [], "take_all": batch,
                       "first": batch[0] if batch else ValueError, "isEmpty": not batch}


def test_rdd_reduce_sum_max_min_and_mean_aggregate_the_batch(sc):
    """reduce, sum, max and min (with and without key) and mean are Python's over the batch;
    reduce of an empty batch is a ValueError, its sum 0."""

    def aggregates(rdd):
        try:
            reduced = rdd.reduce(operator.add)
        except ValueError:
            reduced = ValueError
        got = {"reduce": reduced, "sum": rdd.sum()}
        if not rdd.isEmpty():
            got.update(max=rdd.max(), min=rdd.min(), max_key=rdd.max(key=lambda x: -x),
                       min_key=rdd.min(key=lambda x: -x), mean=rdd.mean())
        return got

    batches = [[5, 3, 8, 1, 9, 2], [7], []]
    for batch, got in zip(batches, on_each_batch(sc, batches, aggregates)):
        assert got["reduce"] == (sum(batch) if batch else ValueError)
        assert got["sum"] == sum(batch)
        if batch:
            assert (got["max"], got["min"]) == (max(batch), min(batch))
            assert (got["max_key"], got["min_key"]) == (min(batch), max(batch))
            assert isinstance(got["mean"], float) and got["mean"] == pytest.approx(sum(batch) / len(batch))


def test_rdd_fold_folds_each_partition_from_zero_value_then_the_partitions_results(sc):
    """fold(zeroValue, op) folds each partition from zeroValue, then the partitions' results in
    partition order from zeroValue again (PySpark's RDD.fold), so a zeroValue that is not neutral
    counts once per partition and once more."""

    def folds(rdd):
        def concat(acc, x):
            return acc + (x if isinstance(x, list) else [x])

        return {"partitions": rdd.glom().collect(), "zero": rdd.fold(0, operator.add),
                "ten": rdd.fold(10, operator.add), "lists": rdd.fold([], concat),
                "strings": rdd.map(str).fold("|", operator.add)}

    batches = [[5, 3, 8, 1, 9, 2], [7], []]
    for batch, got in zip(batches, on_each_batch(sc, batches, folds)):
        partitions = got["partitions"]
        assert [x for p in partitions for x in p] == batch

        def pyspark_fold(items_of_partitions, zero, op):
            return functools.reduce(op, [functools.reduce(op, p, zero) for p in items_of_partitions], zero)

        assert got["zero"] == sum(batch)
        assert got["lists"] == batch
        assert got["ten"] == pyspark_fold(partitions, 10, operator.add)
        assert got["strings"] == pyspark_fold([[str(x) for x in p] for p in partitions], "|", operator.add)


def test_rdd_collect_as_map_count_by_key_and_count_by_value_count_the_batch(sc):
    """collectAsMap is dict() of the pairs (the last value of a key wins); countByKey and
    countByValue count keys and elements."""

    def keyed(rdd):
        return {"map": rdd.collectAsMap(), "by_key": dict(rdd.countByKey()), "by_value": dict(rdd.countByValue())}

    batches = [[("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 2)], [("z", 0)]]
    for batch, got in zip(batches, on_each_batch(sc, batches, keyed)):
        assert got["map"] == dict(batch)
        assert got["by_key"] == dict(collections.Counter(k for k, _ in batch))
        assert got["by_value"] == dict(collections.Counter(batch))


def test_rdd_top_and_take_ordered_give_the_largest_and_smallest_in_order(sc):
    """top(n) gives the n largest, largest first; takeOrdered(n) the n smallest, smallest first;
    key orders by key(element)."""

    def ordered(rdd):
        return {"top": rdd.top(3), "top_key": rdd.top(3, key=lambda x: -x), "takeOrdered": rdd.takeOrdered(3),
                "takeOrdered_key": rdd.takeOrdered(3, key=lambda x: -x), "top_all": rdd.top(100)}

    batches = [[5, 3, 8, 1, 9, 2, 8], [4]]
    for batch, got in zip(batches, on_each_batch(sc, batches, ordered)):
        assert got == {"top": sorted(batch, reverse=True)[:3], "top_key": sorted(batch)[:3],
                       "takeOrdered": sorted(batch)[:3], "takeOrdered_key": sorted(batch, reverse=True)[:3],
                       "top_all": sorted(batch, reverse=True)}


def test_rdd_partitions_get_num_partitions_glom_map_partitions_and_foreach_partition(sc):
    """A queued RDD keeps its partitions (a queued list has sc.defaultParallelism of them):
    getNumPartitions counts them, glom gives them, mapPartitions and foreachPartition get an
    iterator over each."""
    queued = [sc.parallelize(range(10), 3), list(range(5)), sc.parallelize(["x"], 1)]

    def partitions(rdd):
        seen = []
        rdd.foreachPartition(lambda it: seen.append((isinstance(it, collections.abc.Iterator), list(it))))
        return {"n": rdd.getNumPartitions(), "glom": rdd.glom().collect(), "collect": rdd.collect(),
                "sums": rdd.mapPartitions(lambda it: [sum(1 for _ in it)]).collect(), "foreachPartition": seen}

    results = on_each_batch(sc, queued, partitions)
    assert [got["n"] for got in results] == [3, sc.defaultParallelism, 1]
    assert results[0]["glom"] == queued[0].glom().collect()
    for got in results:
        assert len(got["glom"]) == got["n"]
        assert [x for p in got["glom"] for x in p] == got["collect"]
        assert got["sums"] == [len(p) for p in got["glom"]]
        assert sorted(got["foreachPartition"], key=repr) == sorted(((True, p) for p in got["glom"]), key=repr)


def test_rdd_foreach_calls_f_on_every_element(sc):
    """foreach(f) calls f once on each element of the batch."""

    def each(rdd):
        seen = []
        rdd.foreach(seen.append)
        return seen

    batches = [[3, 1, 2, 3], []]
    for batch, seen in zip(batches, on_each_batch(sc, batches, each)):
        assert sorted(seen) == sorted(batch)


def _saved(path):
    """{part file name: its text} of a saveAsTextFile directory, and whether _SUCCESS is there."""
    parts = {name: open(os.path.join(path, name), encoding="utf-8").read()
             for name in os.listdir(path) if name.startswith("part-")}
    return parts, os.path.exists(os.path.join(path, "_SUCCESS"))


def test_rdd_save_as_text_file_writes_str_of_each_element_one_part_file_per_partition(sc, tmp_path):
    """saveAsTextFile(path) writes part-00000, part-00001, ... (one per partition, empty ones too)
    with str() of each element on its own line, and _SUCCESS."""
    batches = [[1, "two", (3, "four"), None, 6.5, ["l", 1]], []]
    paths = iter(str(tmp_path / ("batch-%d" % i)) for i in range(len(batches)))

    def save(rdd):
        path = next(paths)
        rdd.saveAsTextFile(path)
        return path, rdd.glom().collect()

    for path, partitions in on_each_batch(sc, batches, save):
        parts, success = _saved(path)
        assert success
        assert parts == {"part-%05d" % i: "".join(str(x) + "\n" for x in p) for i, p in enumerate(partitions)}


def test_rdd_save_as_text_file_writes_bytes_elements_as_they_are(sc, tmp_path):
    """saveAsTextFile writes a bytes element's bytes as its line (PySpark encodes only non-bytes with str())."""
    path = str(tmp_path / "bytes")

    def save(rdd):
        rdd.saveAsTextFile(path)
        return rdd.collect()

    collected = on_each_batch(sc, [[b"raw bytes", "text", b"more"]], save)[0]
    parts, _ = _saved(path)
    lines = [line for text in parts.values() for line in text.splitlines()]
    assert sorted(lines) == sorted(x.decode() if isinstance(x, bytes) else x for x in collected)


def test_rdd_element_wise_transformations_keep_the_batchs_order(sc):
    """map, flatMap, filter, mapPartitions, mapValues, flatMapValues, keys and values, collected,
    are Python's over the batch in its order."""
    batch = [("a", 1), ("b", 2), ("a", 3), ("c", 0), ("d", 5)]

    def transformed(rdd):
        return {"map": rdd.map(lambda kv: kv[1] * 2).collect(),
                "flatMap": rdd.flatMap(lambda kv: [kv[0]] * kv[1]).collect(),
                "filter": rdd.filter(lambda kv: kv[1] % 2).collect(),
                "mapPartitions": rdd.mapPartitions(lambda it: (kv[0] for kv in it)).collect(),
                "mapValues": rdd.mapValues(lambda v: -v).collect(),
                "flatMapValues": rdd.flatMapValues(lambda v: range(v)).collect(),
                "keys": rdd.keys().collect(), "values": rdd.values().collect()}

    got = on_each_batch(sc, [batch], transformed)[0]
    assert got == {"map": [v * 2 for _, v in batch], "flatMap": [k for k, v in batch for _ in range(v)],
                   "filter": [kv for kv in batch if kv[1] % 2], "mapPartitions": [k for k, _ in batch],
                   "mapValues": [(k, -v) for k, v in batch],
                   "flatMapValues": [(k, x) for k, v in batch for x in range(v)],
                   "keys": [k for k, _ in batch], "values": [v for _, v in batch]}


def test_rdd_reduce_by_key_group_by_key_distinct_union_and_join(sc):
    """reduceByKey, groupByKey, distinct, union (the partitions of both) and join over the batch."""
    batch = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 1)]

    def keyed(rdd):
        other = rdd.filter(lambda kv: kv[0] != "b").map(lambda kv: (kv[0], kv[1] * 10))
        united = rdd.union(other)
        return {"reduceByKey": rdd.reduceByKey(operator.add).collect(),
                "reduceByKey_n": rdd.reduceByKey(operator.add, 3).getNumPartitions(),
                "groupByKey": rdd.groupByKey().mapValues(list).collect(),
                "distinct": rdd.distinct().collect(), "keys_distinct": rdd.keys().distinct().collect(),
                "union": united.collect(), "union_n": united.getNumPartitions(),
                "n": rdd.getNumPartitions(), "other_n": other.getNumPartitions(),
                "join": rdd.join(other).collect()}

    got = on_each_batch(sc, [batch], keyed)[0]
    sums = collections.Counter()
    for k, v in batch:
        sums[k] += v
    other = [(k, v * 10) for k, v in batch if k != "b"]
    assert sorted(got["reduceByKey"]) == sorted(sums.items())
    assert got["reduceByKey_n"] == 3
    assert sorted((k, sorted(vs)) for k, vs in got["groupByKey"]) == sorted(
        (k, sorted(v for kk, v in batch if kk == k)) for k in sums)
    assert sorted(got["distinct"]) == sorted(set(batch))
    assert sorted(got["keys_distinct"]) == sorted(sums)
    assert sorted(got["union"]) == sorted(batch + other)
    assert got["union_n"] == got["n"] + got["other_n"]
    assert sorted(got["join"]) == sorted((k, (v, w)) for k, v in batch for kk, w in other if k == kk)


def test_rdd_sort_by_and_sort_by_key_order_the_whole_batch(sc):
    """sortBy(keyfunc, ascending, numPartitions) and sortByKey(ascending, numPartitions, keyfunc)
    order the whole batch, into numPartitions partitions when given."""
    batch = [(3, "c"), (1, "z"), (5, "a"), (2, "y"), (4, "b")]

    def sorts(rdd):
        return {"sortBy": rdd.sortBy(lambda kv: kv[1]).collect(),
                "sortBy_desc": rdd.sortBy(lambda kv: kv[1], ascending=False).collect(),
                "sortBy_n": rdd.sortBy(lambda kv: kv[1], numPartitions=3).getNumPartitions(),
                "sortByKey": rdd.sortByKey().collect(), "sortByKey_desc": rdd.sortByKey(False).collect(),
                "sortByKey_keyfunc": rdd.sortByKey(keyfunc=lambda k: -k).collect(),
                "sortByKey_n": rdd.sortByKey(True, 2).getNumPartitions(),
                "sortByKey_glom": rdd.sortByKey(True, 2).glom().collect()}

    got = on_each_batch(sc, [batch], sorts)[0]
    assert got["sortBy"] == sorted(batch, key=lambda kv: kv[1])
    assert got["sortBy_desc"] == sorted(batch, key=lambda kv: kv[1], reverse=True)
    assert got["sortBy_n"] == 3
    assert got["sortByKey"] == sorted(batch)
    assert got["sortByKey_desc"] == sorted(batch, reverse=True)
    assert got["sortByKey_keyfunc"] == sorted(batch, key=lambda kv: -kv[0])
    assert got["sortByKey_n"] == 2
    assert [kv for p in got["sortByKey_glom"] for kv in p] == sorted(batch)


def test_rdd_cache_and_persist_return_the_rdd(sc):
    """cache() and persist() return the RDD itself, its elements unchanged."""

    def cached(rdd):
        return rdd.cache() is rdd, rdd.persist() is rdd, rdd.collect()

    assert on_each_batch(sc, [[1, 2]], cached) == [(True, True, [1, 2])]


def test_defining_a_stream_or_an_output_after_start_raises_at_the_call(sc):
    """Spark's rule, at the call that breaks it: nothing is added to a started or stopped job."""
    ssc = StreamingContext(sc, 0.05)
    numbers = ssc.queueStream([[1]])
    numbers.foreachRDD(lambda rdd: None)
    ssc.start()
    try:
        with pytest.raises(RuntimeError, match="after starting a context is not supported"):
            numbers.map(lambda x: x)
        with pytest.raises(RuntimeError, match="after starting a context is not supported"):
            numbers.pprint()
        with pytest.raises(RuntimeError, match="after starting a context is not supported"):
            ssc.queueStream([[2]])
    finally:
        ssc.stop(stopSparkContext=False)
    with pytest.raises(RuntimeError, match="after stopping a context is not supported"):
        numbers.filter(bool)
