"""``StreamingContext``: PySpark's, on ember's engine."""

import os
import threading

from ember import _ember
from ember.pyspark.context import SparkContext
from ember.pyspark.rdd import RDD
from ember.pyspark.streaming.dstream import DStream
from ember.pyspark.streaming.durations import to_ms


def _items(rdd):
    """The elements of a ``queueStream`` entry: an ``RDD`` from ``parallelize`` or a list."""
    if isinstance(rdd, RDD):
        return rdd.collect()
    if isinstance(rdd, (str, bytes)):
        raise TypeError("queueStream takes RDDs or lists of elements, got %s" % type(rdd).__name__)
    return list(rdd)


def _cluster_from_environment():
    """This process's place in a cluster, as ``python -m ember.launch`` (or a user) sets it:
    ``EMBER_CLUSTER_PROCESS`` (this process's index), ``EMBER_CLUSTER_ADDRESSES`` (every
    process's ``host:port``, comma-separated) and optionally ``EMBER_CLUSTER_CONTROL`` (where
    process 0's control plane listens)."""
    process = os.environ.get("EMBER_CLUSTER_PROCESS")
    addresses = os.environ.get("EMBER_CLUSTER_ADDRESSES")
    if process is None and addresses is None:
        return None
    if process is None or addresses is None:
        raise ValueError("EMBER_CLUSTER_PROCESS and EMBER_CLUSTER_ADDRESSES go together")
    try:
        index = int(process)
    except ValueError:
        raise ValueError("EMBER_CLUSTER_PROCESS must be a process index, got %r" % process) from None
    return (index, [a.strip() for a in addresses.split(",") if a.strip()], os.environ.get("EMBER_CLUSTER_CONTROL"))


def _call_list(func, time, rdds):
    """PySpark's rule for ``StreamingContext.transform``: ``func(rdds)`` or ``func(time, rdds)``."""
    from ember.pyspark.streaming.dstream import _arity

    return func(rdds) if _arity(func, "transformFunc") == 1 else func(time, rdds)


class StreamingContext:
    """PySpark's ``StreamingContext(sparkContext, batchDuration)``; ``batchDuration`` is in
    seconds (an int or a float: ember allows millisecond batches)."""

    _active = None
    _lock = threading.Lock()

    def __init__(self, sparkContext, batchDuration=None, jssc=None):
        if not isinstance(sparkContext, SparkContext):
            raise TypeError("sparkContext must be a SparkContext, got %s" % type(sparkContext).__name__)
        if jssc is not None:
            self._ctx = jssc
        else:
            if batchDuration is None:
                raise ValueError("batchDuration is required")
            self._ctx = _ember.StreamingContext(
                to_ms(batchDuration, "batchDuration"), sparkContext._workers, cluster=_cluster_from_environment()
            )
        self._sc = sparkContext
        self._batch_ms = None if batchDuration is None else to_ms(batchDuration, "batchDuration")
        # The batch duration as given (seed 000 prints it; older PySpark kept it here).
        self._batchDuration = batchDuration

    @property
    def sparkContext(self):
        return self._sc

    # creating and finding contexts

    @classmethod
    def getOrCreate(cls, checkpointPath, setupFunc):
        """Resumes from the checkpoint in ``checkpointPath``, or starts with the context
        ``setupFunc()`` returns. ``setupFunc`` runs in both cases: the functions of the streams
        come back from it (they cannot be stored), matched to the checkpoint by position."""
        made = []

        def setup():
            ssc = setupFunc()
            if not isinstance(ssc, StreamingContext):
                raise TypeError("setupFunc must return a StreamingContext, got %s" % type(ssc).__name__)
            made.append(ssc)
            return ssc._ctx

        ctx = _ember.StreamingContext.get_or_create(checkpointPath, setup)
        ssc = made[-1]
        ssc._ctx = ctx
        return ssc

    @classmethod
    def getActive(cls):
        with cls._lock:
            active = cls._active
        if active is not None and active._ctx.get_state() == "ACTIVE":
            return active
        return None

    @classmethod
    def getActiveOrCreate(cls, checkpointPath, setupFunc):
        active = cls.getActive()
        if active is not None:
            return active
        if checkpointPath is not None:
            return cls.getOrCreate(checkpointPath, setupFunc)
        return setupFunc()

    # inputs

    def socketTextStream(self, hostname, port, storageLevel=None):
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError("port must be an int in 1..65535, got %r" % (port,))
        return DStream(self._ctx.socket_text_stream(str(hostname), port), self)

    def textFileStream(self, directory):
        return DStream(self._ctx.text_file_stream(str(directory)), self)

    def binaryRecordsStream(self, directory, recordLength):
        """Fixed-length records (``bytes``) of the new files in ``directory``."""
        if not isinstance(recordLength, int) or isinstance(recordLength, bool) or recordLength < 1:
            raise ValueError("recordLength must be a positive int, got %r" % (recordLength,))
        return DStream(self._ctx.binary_records_stream(str(directory), recordLength), self)

    def queueStream(self, rdds, oneAtATime=True, default=None):
        """One entry of ``rdds`` (RDDs from ``sc.parallelize`` or lists) per batch, or all in
        the first batch when ``oneAtATime`` is false; then ``default`` in every batch, if
        given. Entries added to the list after this call are not seen (as in PySpark)."""
        batches = [_items(rdd) for rdd in rdds]
        return DStream(
            self._ctx.queue_stream(batches, bool(oneAtATime), None if default is None else _items(default)),
            self,
        )

    def union(self, *dstreams):
        if not dstreams:
            raise ValueError("should have at least one DStream to union")
        return DStream(self._ctx.union([d._stream for d in dstreams]), self)

    def transform(self, dstreams, transformFunc):
        """``transformFunc(rdds)`` or ``transformFunc(time, rdds)`` over the batches of
        ``dstreams`` (one or two streams in ember so far)."""
        dstreams = list(dstreams)
        if len(dstreams) == 1:
            return dstreams[0].transform(lambda t, rdd: _call_list(transformFunc, t, [rdd]))
        if len(dstreams) == 2:
            return dstreams[0].transformWith(lambda t, a, b: _call_list(transformFunc, t, [a, b]), dstreams[1])
        raise NotImplementedError("StreamingContext.transform of %d streams is not in ember yet" % len(dstreams))

    # settings

    def checkpoint(self, directory):
        self._ctx.checkpoint(str(directory))

    def remember(self, duration):
        self._ctx.remember(to_ms(duration, "duration"))

    # running

    def start(self):
        self._ctx.start()
        with StreamingContext._lock:
            StreamingContext._active = self

    def awaitTermination(self, timeout=None):
        """Waits until the context stops, or ``timeout`` seconds; raises the exception of a
        failed batch (the user function's own, with a note naming the operation and batch)."""
        self._ctx.await_termination(None if timeout is None else to_ms(timeout, "timeout"))

    def awaitTerminationOrTimeout(self, timeout):
        """Like ``awaitTermination``; returns whether the context stopped."""
        return self._ctx.await_termination(to_ms(timeout, "timeout"))

    def stop(self, stopSparkContext=True, stopGraceFully=False):
        self._ctx.stop(bool(stopGraceFully))
        with StreamingContext._lock:
            if StreamingContext._active is self:
                StreamingContext._active = None
        if stopSparkContext:
            self._sc.stop()
