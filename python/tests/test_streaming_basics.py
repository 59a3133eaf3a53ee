"""The DStream surface from Python: queue streams, element-wise and keyed operations, state and
windows against a recomputation from scratch, pprint's format, and the errors PySpark users
expect (the user's own exception with its traceback, TypeError/ValueError naming arguments)."""

import collections
import re
import traceback

import pytest

from ember.pyspark import SparkContext
from ember.pyspark.streaming import StreamingContext, StreamingJobError


def run(ssc, seconds):
    ssc.start()
    ssc.awaitTerminationOrTimeout(seconds)
    ssc.stop(stopSparkContext=False, stopGraceFully=True)


def collect_batches(dstream):
    """Every batch's elements, in batch order (each batch sorted by repr)."""
    batches = []
    dstream.foreachRDD(lambda time, rdd: batches.append((time, sorted(rdd.collect(), key=repr))))
    return batches


def test_element_wise_and_keyed_operations_per_batch(sc):
    ssc = StreamingContext(sc, 0.05)
    lines = [["a b", "b c c"], ["c"], [], ["a a a"]]
    words = ssc.queueStream(lines).flatMap(lambda l: l.split(" "))
    counts = collect_batches(words.map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b))
    lengths = collect_batches(words.filter(lambda w: w != "b").map(len))
    run(ssc, 0.5)
    expected = [sorted(collections.Counter(w for l in batch for w in l.split(" ")).items()) for batch in lines]
    assert [b for _, b in counts[: len(lines)]] == expected
    assert [b for _, b in lengths[:2]] == [[1, 1, 1], [1]]
    times = [t for t, _ in counts]
    assert all(b - a == times[1] - times[0] for a, b in zip(times, times[1:]))


def test_update_state_by_key_and_windows_match_a_recomputation(sc):
    ssc = StreamingContext(sc, 0.05)
    batches = [["k%d" % ((i * 3 + j) % 5) for j in range(i % 4)] for i in range(12)]
    pairs = ssc.queueStream(batches).map(lambda w: (w, 1))
    totals = collect_batches(pairs.updateStateByKey(lambda vs, s: sum(vs) + (s or 0)))
    windowed = collect_batches(pairs.reduceByKeyAndWindow(lambda a, b: a + b, lambda a, b: a - b, 0.15, 0.05))
    plain = collect_batches(pairs.reduceByKeyAndWindow(lambda a, b: a + b, None, 0.15, 0.05))
    by_value = collect_batches(ssc.queueStream(batches).countByValueAndWindow(0.1, 0.05))
    run(ssc, 1.0)
    for i in range(len(batches)):
        seen = collections.Counter(w for b in batches[: i + 1] for w in b)
        assert totals[i][1] == sorted(seen.items())
        window = collections.Counter(w for b in batches[max(0, i - 2): i + 1] for w in b)
        # With the inverse function, keys whose count fell to 0 stay (as in Spark without a filter).
        assert [kv for kv in windowed[i][1] if kv[1]] == sorted(window.items())
        assert plain[i][1] == sorted(window.items())
        two = collections.Counter(w for b in batches[max(0, i - 1): i + 1] for w in b)
        assert by_value[i][1] == sorted(two.items())


def test_pprint_prints_pysparks_format(sc, capsys):
    ssc = StreamingContext(sc, 0.05)
    ssc.queueStream([list(range(12)), ["x"]]).pprint(num=10)
    run(ssc, 0.3)
    out = capsys.readouterr().out
    blocks = out.split("-------------------------------------------\nTime: ")
    first = blocks[1]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\n-------------------------------------------\n", first)
    body = first.split("-------------------------------------------\n", 1)[1]
    assert body == "".join("%d\n" % i for i in range(10)) + "...\n\n"
    assert blocks[2].split("-------------------------------------------\n", 1)[1] == "x\n\n"


def test_a_users_exception_is_raised_by_await_termination_with_its_traceback(sc):
    ssc = StreamingContext(sc, 0.05)

    def parse(x):
        if x == "bad":
            raise ValueError("cannot parse %r" % x)
        return int(x)

    ssc.queueStream([["1", "2"], ["bad"]]).map(parse).foreachRDD(lambda rdd: None)
    ssc.start()
    with pytest.raises(StreamingJobError) as raised:
        ssc.awaitTermination(10)
    ssc.stop(stopSparkContext=False)
    message = str(raised.value)
    # As PySpark's error message does: the operation, the batch and the function's traceback.
    assert re.match(r"job for batch \d+ ms failed in map#\d+:\nTraceback \(most recent call last\)", message), message
    assert "in parse" in message and "ValueError: cannot parse 'bad'" in message, message
    cause = raised.value.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "cannot parse 'bad'"
    assert "in parse" in "".join(traceback.format_exception(cause))


def test_a_key_without_a_stable_hash_fails_the_batch_with_a_type_error_naming_its_type(sc):
    ssc = StreamingContext(sc, 0.05)
    ssc.queueStream([[([1], 2)]]).reduceByKey(lambda a, b: a + b).foreachRDD(lambda rdd: None)
    ssc.start()
    with pytest.raises(StreamingJobError, match="key of type 'list' has no stable hash") as raised:
        ssc.awaitTermination(10)
    assert isinstance(raised.value.__cause__, TypeError)
    ssc.stop(stopSparkContext=False)


def test_keys_compare_as_python_dict_keys_do(sc):
    ssc = StreamingContext(sc, 0.05)
    out = collect_batches(ssc.queueStream([[(1, "a"), (1.0, "b"), (True, "c"), (("t", 2), "d"), (None, "e")]]).groupByKey())
    run(ssc, 0.3)
    groups = {k: sorted(v) for k, v in out[0][1]}
    assert groups == {1: ["a", "b", "c"], ("t", 2): ["d"], None: ["e"]}


def test_bad_arguments_raise_type_and_value_errors_naming_them(sc):
    with pytest.raises(TypeError, match="batchDuration"):
        StreamingContext(sc, "1s")
    with pytest.raises(ValueError, match="batchDuration"):
        StreamingContext(sc, 0)
    ssc = StreamingContext(sc, 1)
    stream = ssc.queueStream([[1]])
    with pytest.raises(TypeError, match="f must be callable"):
        stream.map(3)
    with pytest.raises(ValueError, match="port"):
        ssc.socketTextStream("localhost", 70000)
    with pytest.raises(ValueError):
        stream.window(1.5, 1)
    with pytest.raises(ValueError, match="master"):
        SparkContext("yarn", "x")


def test_foreach_rdd_passes_time_and_rdd_or_the_rdd_alone(sc):
    import datetime

    ssc = StreamingContext(sc, 0.05)
    stream = ssc.queueStream([[3, 1, 2]])
    seen = []
    stream.foreachRDD(lambda rdd: seen.append(("one", rdd.count())))
    stream.foreachRDD(lambda time, rdd: seen.append(("two", type(time), rdd.sortBy(lambda x: -x).collect())))
    run(ssc, 0.2)
    assert ("one", 3) in seen
    assert ("two", datetime.datetime, [3, 2, 1]) in seen
