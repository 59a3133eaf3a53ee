"""``StreamingContext``: PySpark's, on ember's engine."""

import os
import threading
import warnings
import traceback

from ember import _ember
from ember.pyspark.context import SparkContext
from ember.pyspark.rdd import RDD
from ember.pyspark.streaming.dstream import DStream, _partitions_of
from ember.pyspark.streaming.durations import to_ms
from ember.pyspark.streaming.listener import StreamingListener, _deliverer


def _partitions(rdd, sc):
    """The partitions of a ``queueStream`` entry: an ``RDD`` from ``parallelize``, or a list,
    parallelized as PySpark does (``sc.defaultParallelism`` partitions)."""
    if isinstance(rdd, RDD):
        return rdd._partitions
    if isinstance(rdd, (str, bytes)):
        raise TypeError("queueStream takes RDDs or lists of elements, got %s" % type(rdd).__name__)
    return sc.parallelize(list(rdd))._partitions


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


# The note the extension module adds to a user function's exception that failed a batch.
_FAILED_NOTE = "ember: "


class StreamingJobError(Exception):
    """A batch's job failed in a user function: the message says which operation and batch,
    with the function's traceback; ``__cause__`` is the function's own exception."""


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
        self._check_definable()
        return DStream(None, self, self._ctx.socket_text_stream(str(hostname), port))

    def textFileStream(self, directory):
        self._check_definable()
        return DStream(None, self, self._ctx.text_file_stream(str(directory)))

    def binaryRecordsStream(self, directory, recordLength):
        """Fixed-length records (``bytes``) of the new files in ``directory``."""
        if not isinstance(recordLength, int) or isinstance(recordLength, bool) or recordLength < 1:
            raise ValueError("recordLength must be a positive int, got %r" % (recordLength,))
        self._check_definable()
        return DStream(self._ctx.binary_records_stream(str(directory), recordLength), self)

    def queueStream(self, rdds, oneAtATime=True, default=None):
        """One entry of ``rdds`` (RDDs from ``sc.parallelize`` or lists) per batch, or all in
        the first batch when ``oneAtATime`` is false; then ``default`` in every batch, if
        given. Entries added to the list after this call are not seen (as in PySpark)."""
        batches = [_partitions(rdd, self._sc) for rdd in rdds]
        default = None if default is None else [x for part in _partitions(default, self._sc) for x in part]
        self._check_definable()
        return DStream(self._ctx.queue_stream(batches, bool(oneAtATime), default), self)

    def union(self, *dstreams):
        if not dstreams:
            raise ValueError("should have at least one DStream to union")
        self._check_definable()
        return DStream(self._ctx.union([d._stream for d in dstreams]), self)

    def transform(self, dstreams, transformFunc):
        """``transformFunc(rdds)`` over the batches of ``dstreams`` (a tuple of their RDDs, in
        the list's order), returning the new RDD, as PySpark calls it."""
        dstreams = list(dstreams)
        if not dstreams:
            raise ValueError("transform needs at least one DStream")
        for d in dstreams:
            if not isinstance(d, DStream):
                raise TypeError("dstreams must be DStreams, got %s" % type(d).__name__)
        if not callable(transformFunc):
            raise TypeError("transformFunc must be callable, got %s" % type(transformFunc).__name__)

        def apply(ms, per_stream):
            result = transformFunc(tuple(RDD(partitions) for partitions in per_stream))
            return _partitions_of(result, "StreamingContext.transform")

        self._check_definable()
        return DStream(self._ctx.transform([d._stream for d in dstreams], apply), self)

    def addStreamingListener(self, streamingListener):
        """Registers a ``StreamingListener`` (``ember.pyspark.streaming.listener``); its
        methods get PySpark's event objects on ember's listener thread."""
        if not isinstance(streamingListener, StreamingListener):
            raise TypeError(
                "streamingListener must be a StreamingListener (ember.pyspark.streaming.listener), got %s"
                % type(streamingListener).__name__
            )
        self._ctx.add_streaming_listener(_deliverer(streamingListener))

    # settings

    def checkpoint(self, directory):
        self._ctx.checkpoint(str(directory))

    def remember(self, duration):
        self._ctx.remember(to_ms(duration, "duration"))

    # running

    def _check_definable(self):
        """Spark's rule: streams and outputs are defined before ``start``."""
        state = self._ctx.get_state()
        if state == "ACTIVE":
            raise RuntimeError(
                "Adding new inputs, transformations, and output operations after starting a context is not supported"
            )
        if state == "STOPPED":
            raise RuntimeError(
                "Adding new inputs, transformations, and output operations after stopping a context is not supported"
            )

    def start(self):
        """Starts the job. A context already started only gets a warning (as Spark logs one);
        a stopped one cannot be started again (``RuntimeError``)."""
        if self._ctx.get_state() == "ACTIVE":
            warnings.warn("StreamingContext has already been started", stacklevel=2)
            return
        self._ctx.start()
        with StreamingContext._lock:
            StreamingContext._active = self

    def awaitTermination(self, timeout=None):
        """Waits until the context stops, or ``timeout`` seconds. A batch that failed in a user
        function raises ``StreamingJobError``: its message names the operation and the batch
        and carries the function's Python traceback (as the message of PySpark's
        ``Py4JJavaError`` does), and ``__cause__`` is the function's own exception."""
        self._await(None if timeout is None else to_ms(timeout, "timeout"))

    def awaitTerminationOrTimeout(self, timeout):
        """Like ``awaitTermination``; returns whether the context stopped."""
        return self._await(to_ms(timeout, "timeout"))

    def _await(self, timeout_ms):
        try:
            return self._ctx.await_termination(timeout_ms)
        except Exception as e:
            failed = [n for n in getattr(e, "__notes__", ()) if n.startswith(_FAILED_NOTE)]
            if not failed:
                raise
            where = failed[0][len(_FAILED_NOTE):].split(": ", 1)[0]
            text = "".join(traceback.format_exception(type(e), e, e.__traceback__, chain=False))
            raise StreamingJobError("%s:\n%s" % (where, text.rstrip())) from e

    def stop(self, stopSparkContext=True, stopGraceFully=False):
        self._ctx.stop(bool(stopGraceFully))
        with StreamingContext._lock:
            if StreamingContext._active is self:
                StreamingContext._active = None
        if stopSparkContext:
            self._sc.stop()
