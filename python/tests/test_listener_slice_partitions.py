"""addStreamingListener with PySpark's event objects, slice over remembered batches,
mapPartitionsWithIndex, partitionBy, and StreamingContext.transform of several streams."""

import collections
import threading
from datetime import datetime

import pytest

from ember.pyspark.streaming import StreamingContext
from ember.pyspark.streaming.listener import StreamingListener


def run(ssc, seconds):
    ssc.start()
    ssc.awaitTerminationOrTimeout(seconds)
    ssc.stop(stopSparkContext=False, stopGraceFully=True)


def test_a_listener_sees_every_batch_with_its_records_and_delays(sc):
    ssc = StreamingContext(sc, 0.05)
    batches = [["a", "b"], ["c"], ["d", "e", "f"]]
    ssc.queueStream(batches).map(lambda x: x.upper()).foreachRDD(lambda rdd: rdd.count())
    events = collections.defaultdict(list)
    lock = threading.Lock()

    class Recorder(StreamingListener):
        def onStreamingStarted(self, streamingStarted):
            with lock:
                events["started"].append(streamingStarted.time())

        def onBatchCompleted(self, batchCompleted):
            info = batchCompleted.batchInfo()
            with lock:
                events["completed"].append(info)

        def onOutputOperationCompleted(self, outputOperationCompleted):
            with lock:
                events["output"].append(outputOperationCompleted.outputOperationInfo())

    ssc.addStreamingListener(Recorder())
    run(ssc, 0.6)
    assert len(events["started"]) == 1 and events["started"][0] > 0
    completed = sorted(events["completed"], key=lambda i: i.batchTime().milliseconds())
    assert [i.numRecords() for i in completed[: len(batches)]] == [len(b) for b in batches]
    times = [i.batchTime().milliseconds() for i in completed]
    assert all(b - a == 50 for a, b in zip(times, times[1:])), times
    for info in completed:
        assert info.processingStartTime() >= info.submissionTime() > 0
        assert info.processingEndTime() >= info.processingStartTime()
        assert info.totalDelay() == info.schedulingDelay() + info.processingDelay() >= 0
        assert sum(s.numRecords() for s in info.streamIdToInputInfo().values()) == info.numRecords()
        (output,) = info.outputOperationInfos().values()
        assert output.failureReason() is None and output.endTime() >= output.startTime()
    assert {o.batchTime().milliseconds() for o in events["output"]} >= set(times)


def test_an_exception_in_a_listener_is_printed_and_the_job_goes_on(sc, capfd):
    ssc = StreamingContext(sc, 0.05)
    seen = []
    ssc.queueStream([[1], [2], [3]]).foreachRDD(lambda rdd: seen.extend(rdd.collect()))

    class Broken(StreamingListener):
        def onBatchCompleted(self, batchCompleted):
            raise RuntimeError("listener broke")

    ssc.addStreamingListener(Broken())
    run(ssc, 0.5)
    assert seen == [1, 2, 3]
    err = capfd.readouterr().err
    assert "onBatchCompleted raised" in err and "RuntimeError: listener broke" in err


def test_add_streaming_listener_refuses_what_is_not_a_listener(sc):
    ssc = StreamingContext(sc, 0.05)
    with pytest.raises(TypeError, match="streamingListener must be a StreamingListener"):
        ssc.addStreamingListener(object())


def test_slice_returns_the_remembered_batches_between_two_times(sc):
    ssc = StreamingContext(sc, 0.05)
    batches = [[i, i + 100] for i in range(8)]
    numbers = ssc.queueStream(batches)
    seen = []
    numbers.foreachRDD(lambda time, rdd: seen.append((time, sorted(rdd.collect()))))
    ssc.remember(10)
    run(ssc, 0.7)
    assert [b for _, b in seen[: len(batches)]] == [sorted(b) for b in batches]
    first, last = seen[2][0], seen[5][0]
    # PySpark's slice takes datetimes to the second, or seconds since the epoch.
    sliced = numbers.slice(first.timestamp(), last.timestamp())
    assert [sorted(r.collect()) for r in sliced] == [b for _, b in seen[2:6]]
    assert numbers.slice(datetime.fromtimestamp(0), datetime.fromtimestamp(1)) == []


def test_slice_without_remember_says_why(sc):
    ssc = StreamingContext(sc, 0.05)
    numbers = ssc.queueStream([[1]])
    numbers.foreachRDD(lambda rdd: None)
    run(ssc, 0.2)
    with pytest.raises(RuntimeError, match="remember"):
        numbers.slice(0, 10)


def test_map_partitions_with_index_numbers_each_batchs_partitions(sc):
    ssc = StreamingContext(sc, 0.05)
    batches = [sc.parallelize(list(range(10)), 3), sc.parallelize(["x"], 1)]
    out = []
    ssc.queueStream(batches).mapPartitionsWithIndex(lambda i, it: [(i, x) for x in it]).foreachRDD(
        lambda rdd: out.append(rdd.glom().collect())
    )
    run(ssc, 0.4)
    expected = [[[(i, x) for x in part] for i, part in enumerate(b._partitions)] for b in batches]
    assert out[: len(batches)] == expected


def test_partition_by_places_each_key_by_the_function_or_by_a_stable_hash(sc):
    ssc = StreamingContext(sc, 0.05)
    pairs = [[(n, str(n)) for n in range(20)], [(n, n) for n in range(-5, 5)]]
    by_function, by_hash = [], []
    stream = ssc.queueStream(pairs)
    stream.partitionBy(3, lambda k: k).foreachRDD(lambda rdd: by_function.append(rdd.glom().collect()))
    stream.partitionBy(4).foreachRDD(lambda rdd: by_hash.append(rdd.glom().collect()))
    run(ssc, 0.4)
    for batch, parts in zip(pairs, by_function):
        assert len(parts) == 3
        # Python's modulo: -5 % 3 == 1, as PySpark computes partitionFunc(k) % numPartitions.
        assert [sorted(p) for p in parts] == [sorted(kv for kv in batch if kv[0] % 3 == i) for i in range(3)]
    for batch, parts in zip(pairs, by_hash):
        assert len(parts) == 4 and sorted(kv for p in parts for kv in p) == sorted(batch)
        homes = collections.defaultdict(set)
        for i, p in enumerate(parts):
            for k, _ in p:
                homes[k].add(i)
        assert all(len(h) == 1 for h in homes.values())


def test_partition_by_fails_the_batch_when_the_function_does_not_return_an_int(sc):
    ssc = StreamingContext(sc, 0.05)
    ssc.queueStream([[("a", 1)]]).partitionBy(2, lambda k: "zero").foreachRDD(lambda rdd: rdd.count())
    ssc.start()
    with pytest.raises(Exception) as raised:
        ssc.awaitTermination(5)
    ssc.stop(stopSparkContext=False)
    assert "partition_by" in str(raised.value) and "TypeError" in str(raised.value)


def test_context_transform_of_three_streams_gets_their_rdds_in_order(sc):
    ssc = StreamingContext(sc, 0.05)
    a = ssc.queueStream([[1, 2], [3]])
    b = ssc.queueStream([["x"], ["y", "z"]])
    c = ssc.queueStream([[10.0], []])
    out = []
    ssc.transform([a, b, c], lambda rdds: rdds[0].union(rdds[1]).union(rdds[2]).map(lambda x: (len(rdds), x))).foreachRDD(
        lambda rdd: out.append(sorted(rdd.collect(), key=repr))
    )
    run(ssc, 0.4)
    assert out[:2] == [sorted([(3, 1), (3, 2), (3, "x"), (3, 10.0)], key=repr), sorted([(3, 3), (3, "y"), (3, "z")], key=repr)]
