"""StreamingContext's finding and input methods from Python: getActive and
getActiveOrCreate, union of contexts' streams, binaryRecordsStream, SparkConf, remember."""

import os
import time

import pytest

from ember.pyspark import SparkConf, SparkContext
from ember.pyspark.streaming import StreamingContext


def test_get_active_is_the_started_context_until_it_stops(sc):
    ssc = StreamingContext(sc, 0.05)
    ssc.queueStream([[1]]).foreachRDD(lambda rdd: None)
    assert StreamingContext.getActive() is None
    ssc.start()
    try:
        assert StreamingContext.getActive() is ssc
        assert StreamingContext.getActiveOrCreate(None, lambda: pytest.fail("should not be called")) is ssc
    finally:
        ssc.stop(stopSparkContext=False)
    assert StreamingContext.getActive() is None
    made = StreamingContext.getActiveOrCreate(None, lambda: StreamingContext(sc, 0.05))
    assert isinstance(made, StreamingContext) and made is not ssc


def test_union_of_several_streams_gives_every_element(sc):
    ssc = StreamingContext(sc, 0.05)
    streams = [ssc.queueStream([[i, i + 10]]) for i in range(3)]
    seen = []
    ssc.union(*streams).foreachRDD(lambda rdd: seen.append(sorted(rdd.collect())))
    ssc.start()
    ssc.awaitTerminationOrTimeout(0.3)
    ssc.stop(stopSparkContext=False)
    assert seen[0] == [0, 1, 2, 10, 11, 12]
    with pytest.raises(ValueError):
        ssc.union()


def test_binary_records_stream_gives_fixed_length_bytes(sc, tmp_path):
    ssc = StreamingContext(sc, 0.05)
    records = []
    ssc.binaryRecordsStream(str(tmp_path), 4).foreachRDD(lambda rdd: records.extend(rdd.collect()))
    ssc.start()
    time.sleep(0.2)
    tmp = tmp_path / ".r.tmp"
    tmp.write_bytes(b"abcdWXYZ1234")
    os.rename(tmp, tmp_path / "r.bin")
    deadline = time.monotonic() + 10
    while len(records) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    ssc.stop(stopSparkContext=False)
    assert records == [b"abcd", b"WXYZ", b"1234"]
    with pytest.raises(ValueError, match="recordLength"):
        ssc.binaryRecordsStream(str(tmp_path), 0)


def test_spark_conf_sets_master_and_app_name():
    conf = SparkConf().setMaster("local[3]").setAppName("conf-test").set("spark.some.setting", 7)
    sc = SparkContext(conf=conf)
    try:
        assert (sc.master, sc.appName, sc.defaultParallelism) == ("local[3]", "conf-test", 3)
        assert sc.getConf().get("spark.some.setting") == "7"
        assert conf.contains("spark.app.name") and not conf.contains("spark.nothing")
    finally:
        sc.stop()


def test_remember_takes_seconds_and_refuses_nonsense(sc):
    ssc = StreamingContext(sc, 1)
    ssc.remember(60)
    with pytest.raises(TypeError, match="duration"):
        ssc.remember("a minute")
