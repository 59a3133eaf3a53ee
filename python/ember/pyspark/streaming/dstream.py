"""``DStream``: PySpark's, on ember's engine. Functions are called with the arguments PySpark
passes; durations are in seconds."""

import operator
import time as _time
from datetime import datetime

from ember.pyspark.rdd import RDD
from ember.pyspark.streaming import native
from ember.pyspark.streaming.durations import to_ms


def _arity(func, name):
    """PySpark's rule for the functions of ``foreachRDD`` and ``transform``:
    ``func.__code__.co_argcount`` (a callable without ``__code__``, such as a
    ``functools.partial``, raises ``AttributeError`` as in PySpark)."""
    if not callable(func):
        raise TypeError("%s must be callable, got %s" % (name, type(func).__name__))
    return func.__code__.co_argcount


def _partitions_of(result, name):
    """The partitions of what a ``transform`` function returned: an RDD, or a list."""
    if result is None:
        # Spark's words, as PySpark users see them.
        raise TypeError("Transform function must not return null (the function given to %s returned None)" % name)
    if isinstance(result, RDD):
        return result._partitions
    if isinstance(result, (list, tuple)):
        return [list(result)]
    raise TypeError("the function given to %s must return an RDD, got %s" % (name, type(result).__name__))


def _ms_of(timestamp, name):
    """PySpark's ``_jtime``: a ``datetime`` (local time, to the second) or seconds since the
    epoch, in milliseconds."""
    if isinstance(timestamp, datetime):
        timestamp = _time.mktime(timestamp.timetuple())
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        raise TypeError("%s must be a datetime or seconds since the epoch, got %s" % (name, type(timestamp).__name__))
    if timestamp < 0:
        raise ValueError("%s must not be before the epoch, got %r" % (name, timestamp))
    return int(timestamp * 1000)


def _callable(func, name):
    if not callable(func):
        raise TypeError("%s must be callable, got %s" % (name, type(func).__name__))
    return func


class DStream:
    """A discretized stream of Python objects.

    A stream of a text source starts as a native stream of ``str`` (``_native``): the
    functions ``native.py`` recognises run on it in Rust, and any other operation takes its
    elements as Python objects (``_stream``)."""

    def __init__(self, stream, ssc, native_stream=None):
        self._python = stream
        self._native = native_stream
        self._ssc = ssc

    @property
    def _stream(self):
        """The stream of Python objects (made from the native stream the first time)."""
        if self._python is None:
            self._python = self._native.to_python()
        return self._python

    def _native_kind(self):
        return None if self._native is None else self._native.kind()

    def _wrap_native(self, native_stream):
        self._ssc._check_definable()
        return DStream(None, self._ssc, native_stream)

    def __repr__(self):
        if self._python is None:
            return "DStream(%s)" % self._native.operator_name()
        return "DStream(%s)" % self._stream.operator_name()

    def context(self):
        return self._ssc

    def _wrap(self, stream):
        self._ssc._check_definable()
        return DStream(stream, self._ssc)

    def _validate_window_param(self, window, slide):
        """PySpark's check, before anything else: the durations must be multiples of this
        stream's slide."""
        duration = self._stream.slide_ms()
        if to_ms(window, "windowDuration") % duration != 0:
            raise ValueError(
                "windowDuration must be multiple of the parent dstream's slide (batch) duration (%d ms)" % duration
            )
        if slide is not None and to_ms(slide, "slideDuration") % duration != 0:
            raise ValueError(
                "slideDuration must be multiple of the parent dstream's slide (batch) duration (%d ms)" % duration
            )

    def _slide_ms(self, slideDuration):
        """``slideDuration`` in ms, or this stream's own slide (PySpark's default)."""
        if slideDuration is None:
            return self._stream.slide_ms()
        return to_ms(slideDuration, "slideDuration")

    # element-wise

    def map(self, f, preservesPartitioning=False):
        if self._native_kind() == "text":
            constant = native.pair_constant(f)
            if constant is not None:
                return self._wrap_native(self._native.pair(constant))
        return self._wrap(self._stream.map(_callable(f, "f")))

    def flatMap(self, f, preservesPartitioning=False):
        if self._native_kind() == "text":
            sep = native.split_separator(f)
            if sep is not None:
                return self._wrap_native(self._native.split(sep))
        return self._wrap(self._stream.flat_map(_callable(f, "f")))

    def filter(self, f):
        return self._wrap(self._stream.filter(_callable(f, "f")))

    def mapPartitions(self, f, preservesPartitioning=False):
        f = _callable(f, "f")
        return self._wrap(self._stream.map_partitions(lambda part: f(iter(part))))

    def mapPartitionsWithIndex(self, f, preservesPartitioning=False):
        """``f(index, iterator)`` of each partition of each batch (as PySpark, through
        ``transform``: the batch is gathered on one worker)."""
        f = _callable(f, "f")
        return self.transform(lambda rdd: rdd.mapPartitionsWithIndex(f, preservesPartitioning))

    def glom(self):
        return self._wrap(self._stream.map_partitions(lambda part: [list(part)]))

    def mapValues(self, f):
        return self._wrap(self._stream.map_values(_callable(f, "f")))

    def flatMapValues(self, f):
        return self._wrap(self._stream.flat_map_values(_callable(f, "f")))

    # per batch

    def count(self):
        return self._wrap(self._stream.count())

    def reduce(self, func):
        func = _callable(func, "func")
        return self.map(lambda x: (None, x)).reduceByKey(func, 1).map(lambda kv: kv[1])

    def countByValue(self):
        return self._wrap(self._stream.count_by_value())

    def reduceByKey(self, func, numPartitions=None):
        if self._native_kind() == "pairs" and native.is_add(func):
            return self._wrap_native(self._native.reduce_add(numPartitions))
        return self._wrap(self._stream.reduce_by_key(_callable(func, "func"), numPartitions))

    def groupByKey(self, numPartitions=None):
        return self._wrap(self._stream.group_by_key())

    def combineByKey(self, createCombiner, mergeValue, mergeCombiners, numPartitions=None):
        create = _callable(createCombiner, "createCombiner")
        merge = _callable(mergeValue, "mergeValue")
        grouped = self.groupByKey(numPartitions)

        def combine(values):
            acc = create(values[0])
            for v in values[1:]:
                acc = merge(acc, v)
            return acc

        return grouped.mapValues(combine)

    def partitionBy(self, numPartitions, partitionFunc=None):
        """Each batch's pairs in ``numPartitions`` partitions by key: partition
        ``partitionFunc(key) % numPartitions``, or by ember's stable hash of the key when no
        function is given (PySpark's default, ``portable_hash``, needs ``PYTHONHASHSEED``
        for strings; ember's hash does not)."""
        if not isinstance(numPartitions, int) or isinstance(numPartitions, bool) or numPartitions < 1:
            raise ValueError("numPartitions must be a positive int, got %r" % (numPartitions,))
        if partitionFunc is not None:
            partitionFunc = _callable(partitionFunc, "partitionFunc")
        return self._wrap(self._stream.partition_by(numPartitions, partitionFunc))

    def union(self, other):
        if not isinstance(other, DStream):
            raise TypeError("other must be a DStream, got %s" % type(other).__name__)
        return self._wrap(self._stream.union(other._stream))

    def repartition(self, numPartitions):
        return self._wrap(self._stream.repartition(numPartitions))

    def cache(self):
        return self

    def persist(self, storageLevel=None):
        return self

    def checkpoint(self, interval):
        return self._wrap(self._stream.checkpoint(to_ms(interval, "interval")))

    # windows and state

    def window(self, windowDuration, slideDuration=None):
        self._validate_window_param(windowDuration, slideDuration)
        return self._wrap(self._stream.window(to_ms(windowDuration, "windowDuration"), self._slide_ms(slideDuration)))

    def reduceByKeyAndWindow(self, func, invFunc, windowDuration, slideDuration=None, numPartitions=None,
                             filterFunc=None):
        """PySpark's: with ``invFunc``, a window of at least 5 slides is computed incrementally
        (keys whose values all left it stay, with what ``invFunc`` left, unless ``filterFunc``
        drops them); a shorter one is reduced from its batches, and ``invFunc`` is not used (as
        PySpark's ``PythonReducedWindowedDStream`` does)."""
        self._validate_window_param(windowDuration, slideDuration)
        func = _callable(func, "func")
        window_ms, slide_ms = to_ms(windowDuration, "windowDuration"), self._slide_ms(slideDuration)
        if filterFunc is not None:
            _callable(filterFunc, "filterFunc")
        if invFunc and window_ms >= 5 * slide_ms:
            _callable(invFunc, "invFunc")
            return self._wrap(self._stream.reduce_by_key_and_window(func, invFunc, window_ms, slide_ms, filterFunc))
        windowed = self._wrap(self._stream.reduce_by_key_and_window(func, None, window_ms, slide_ms, None))
        return windowed.filter(filterFunc) if invFunc and filterFunc is not None else windowed

    def reduceByWindow(self, reduceFunc, invReduceFunc, windowDuration, slideDuration):
        keyed = self.map(lambda x: (1, x))
        reduced = keyed.reduceByKeyAndWindow(reduceFunc, invReduceFunc, windowDuration, slideDuration, 1)
        return reduced.map(lambda kv: kv[1])

    def countByWindow(self, windowDuration, slideDuration):
        return self.map(lambda x: 1).reduceByWindow(operator.add, operator.sub, windowDuration, slideDuration)

    def countByValueAndWindow(self, windowDuration, slideDuration, numPartitions=None):
        self._validate_window_param(windowDuration, slideDuration)
        return self._wrap(
            self._stream.count_by_value_and_window(to_ms(windowDuration, "windowDuration"), self._slide_ms(slideDuration))
        )

    def groupByKeyAndWindow(self, windowDuration, slideDuration, numPartitions=None):
        """PySpark's: the values of each key in the window, as a list, through
        ``reduceByKeyAndWindow`` with an inverse function; so from 5 slides on (where the
        inverse function is used) a key whose values all left the window stays, with ``[]``."""
        lists = self.mapValues(lambda x: [x])
        grouped = lists.reduceByKeyAndWindow(
            lambda a, b: a + b, lambda a, b: a[len(b):], windowDuration, slideDuration, numPartitions
        )
        return grouped

    def updateStateByKey(self, updateFunc, numPartitions=None, initialRDD=None):
        """``updateFunc(new_values, last_state)`` returns the new state, or ``None`` to drop
        the key."""
        initial = None
        if initialRDD is not None:
            initial = initialRDD.collect() if isinstance(initialRDD, RDD) else list(initialRDD)
        return self._wrap(self._stream.update_state_by_key(_callable(updateFunc, "updateFunc"), initial))

    # transform and two-stream operations

    def _rdd_func(self, func, name):
        """``func(rdd)`` or ``func(time, rdd)`` as a function of ``(ms, partitions)``."""
        arity = _arity(func, name)
        if arity == 1:
            return lambda ms, partitions: func(RDD(partitions))
        return lambda ms, partitions: func(datetime.fromtimestamp(ms / 1000.0), RDD(partitions))

    def transform(self, func):
        """``func(rdd)`` or ``func(time, rdd)`` returns this batch's new RDD."""
        call = self._rdd_func(func, "func")

        def apply(ms, partitions):
            return _partitions_of(call(ms, partitions), "transform")

        return self._wrap(self._stream.transform(apply))

    def transformWith(self, func, other, keepSerializer=False):
        """``func(rdd, other_rdd)`` or ``func(time, rdd, other_rdd)`` returns the new RDD."""
        arity = _arity(func, "func")
        if arity == 2:
            def apply(ms, left, right):
                return _partitions_of(func(RDD(left), RDD(right)), "transformWith")
        else:
            def apply(ms, left, right):
                return _partitions_of(func(datetime.fromtimestamp(ms / 1000.0), RDD(left), RDD(right)), "transformWith")
        return self._wrap(self._stream.transform_with(other._stream, apply))

    def cogroup(self, other, numPartitions=None):
        """``(k, (values, other_values))`` for every key of either stream (lists, where PySpark
        gives iterables)."""
        return self._wrap(self._stream.cogroup(other._stream, numPartitions))

    def join(self, other, numPartitions=None):
        return self.cogroup(other, numPartitions).flatMapValues(lambda vw: [(v, w) for v in vw[0] for w in vw[1]])

    def leftOuterJoin(self, other, numPartitions=None):
        return self.cogroup(other, numPartitions).flatMapValues(
            lambda vw: [(v, w) for v in vw[0] for w in (vw[1] or [None])]
        )

    def rightOuterJoin(self, other, numPartitions=None):
        return self.cogroup(other, numPartitions).flatMapValues(
            lambda vw: [(v, w) for v in (vw[0] or [None]) for w in vw[1]]
        )

    def fullOuterJoin(self, other, numPartitions=None):
        return self.cogroup(other, numPartitions).flatMapValues(
            lambda vw: [(v, w) for v in (vw[0] or [None]) for w in (vw[1] or [None])]
        )

    def slice(self, begin, end):
        """The RDDs of the batches from ``begin`` to ``end`` (``datetime`` or seconds since the
        epoch, both included), as PySpark's ``slice``. ember keeps batches for this only when
        ``ssc.remember(duration)`` was set before ``start``, and only for streams some output
        computes; otherwise ``RuntimeError`` says why."""
        return [RDD(partitions) for partitions in self._stream.slice(_ms_of(begin, "begin"), _ms_of(end, "end"))]

    # outputs

    def foreachRDD(self, func):
        """``func(rdd)`` or ``func(time, rdd)`` (PySpark's rule: a one-argument function gets
        the RDD only); ``time`` is a ``datetime``."""
        self._ssc._check_definable()
        self._stream.foreach_rdd(self._rdd_func(func, "func"))

    def pprint(self, num=10):
        """Prints the first ``num`` elements of every batch, as PySpark does."""

        def takeAndPrint(time, rdd):
            taken = rdd.take(num + 1)
            print("-------------------------------------------")
            print("Time: %s" % time)
            print("-------------------------------------------")
            for record in taken[:num]:
                print(record)
            if len(taken) > num:
                print("...")
            print("")

        self.foreachRDD(takeAndPrint)

    def saveAsTextFiles(self, prefix, suffix=None):
        """``prefix-<ms>[.suffix]/part-NNNNN`` with ``str()`` of each element."""
        self._ssc._check_definable()
        self._stream.save_as_text_files(str(prefix), "" if suffix is None else str(suffix))
