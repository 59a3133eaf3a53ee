"""``StreamingListener``: PySpark's listener of a running job's events, on ember.

Subclass it, override the methods you need, and register it with
``ssc.addStreamingListener(listener)``. The events carry what PySpark's (Java-friendly) event
objects carry, through the same accessor methods: ``batchCompleted.batchInfo().numRecords()``,
``info.batchTime().milliseconds()``, ``info.processingDelay()``, ... Times are milliseconds
since the epoch; a time or delay not known yet is ``-1``, as in PySpark.

Methods run on ember's listener thread, one event at a time. An exception in one is printed
and the job goes on (Spark's listener bus logs it). A listener slower than the job makes ember
drop events rather than wait (``ember.StreamingContext`` counts them)."""

import json
import sys
import traceback


class StreamingListener:
    """Receives the events of a running streaming job; every method does nothing by default."""

    def onStreamingStarted(self, streamingStarted):
        pass

    def onReceiverStarted(self, receiverStarted):
        pass

    def onReceiverError(self, receiverError):
        pass

    def onReceiverStopped(self, receiverStopped):
        pass

    def onBatchSubmitted(self, batchSubmitted):
        pass

    def onBatchStarted(self, batchStarted):
        pass

    def onBatchCompleted(self, batchCompleted):
        pass

    def onOutputOperationStarted(self, outputOperationStarted):
        pass

    def onOutputOperationCompleted(self, outputOperationCompleted):
        pass


class Time:
    """A batch time (Spark's ``Time``)."""

    def __init__(self, ms):
        self._ms = ms

    def milliseconds(self):
        return self._ms

    def __eq__(self, other):
        return isinstance(other, Time) and other._ms == self._ms

    def __hash__(self):
        return hash(self._ms)

    def __repr__(self):
        return "%d ms" % self._ms


def _known(value):
    return -1 if value is None else value


class OutputOperationInfo:
    """One output operation of one batch."""

    def __init__(self, fields):
        self._f = fields

    def batchTime(self):
        return Time(self._f["batch_time"])

    def id(self):
        return self._f["id"]

    def name(self):
        return self._f["name"]

    def description(self):
        return self._f["name"]

    def startTime(self):
        return _known(self._f.get("start_time"))

    def endTime(self):
        return _known(self._f.get("end_time"))

    def duration(self):
        start, end = self._f.get("start_time"), self._f.get("end_time")
        return -1 if start is None or end is None else end - start

    def failureReason(self):
        return self._f.get("failure_reason")


class StreamInputInfo:
    """The records one input stream brought into a batch."""

    def __init__(self, stream_id, name, records):
        self._id, self._name, self._records = stream_id, name, records

    def inputStreamId(self):
        return self._id

    def numRecords(self):
        return self._records

    def metadata(self):
        return {"name": self._name}

    def metadataDescription(self):
        return None


def _stream_id(name, fallback):
    """The id in an input stream's name (``socket_text_stream#0``)."""
    try:
        return int(name.rsplit("#", 1)[1])
    except (IndexError, ValueError):
        return fallback


class BatchInfo:
    """One batch (Spark's ``BatchInfo``)."""

    def __init__(self, fields):
        self._f = fields

    def batchTime(self):
        return Time(self._f["batch_time"])

    def streamIdToInputInfo(self):
        return {
            _stream_id(name, i): StreamInputInfo(_stream_id(name, i), name, n)
            for i, (name, n) in enumerate(sorted(self._f["input_records"].items()))
        }

    def submissionTime(self):
        return self._f["submission_time"]

    def processingStartTime(self):
        return _known(self._f.get("processing_start_time"))

    def processingEndTime(self):
        return _known(self._f.get("processing_end_time"))

    def schedulingDelay(self):
        start = self._f.get("processing_start_time")
        return -1 if start is None else max(0, start - self._f["submission_time"])

    def processingDelay(self):
        start, end = self._f.get("processing_start_time"), self._f.get("processing_end_time")
        return -1 if start is None or end is None else max(0, end - start)

    def totalDelay(self):
        scheduling, processing = self.schedulingDelay(), self.processingDelay()
        return -1 if scheduling < 0 or processing < 0 else scheduling + processing

    def numRecords(self):
        return sum(self._f["input_records"].values())

    def outputOperationInfos(self):
        return {int(i): OutputOperationInfo(o) for i, o in self._f["output_operations"].items()}


class ReceiverInfo:
    """A receiver's state (Spark's ``ReceiverInfo``)."""

    def __init__(self, fields):
        self._f = fields

    def name(self):
        return self._f["name"]

    def active(self):
        return self._f["active"]

    def location(self):
        return "localhost"

    def executorId(self):
        return "driver"

    def lastErrorMessage(self):
        return self._f.get("last_error") or ""

    def lastError(self):
        return self._f.get("last_error") or ""

    def lastErrorTime(self):
        return -1


class _Event:
    def __init__(self, **accessors):
        for name, value in accessors.items():
            setattr(self, name, (lambda v: lambda: v)(value))


class StreamingListenerStreamingStarted(_Event):
    pass


class StreamingListenerReceiverStarted(_Event):
    pass


class StreamingListenerReceiverError(_Event):
    pass


class StreamingListenerReceiverStopped(_Event):
    pass


class StreamingListenerBatchSubmitted(_Event):
    pass


class StreamingListenerBatchStarted(_Event):
    pass


class StreamingListenerBatchCompleted(_Event):
    pass


class StreamingListenerOutputOperationStarted(_Event):
    pass


class StreamingListenerOutputOperationCompleted(_Event):
    pass


# kind → (the listener's method, the event's class, how its accessor is made)
_EVENTS = {
    "streaming_started": ("onStreamingStarted", StreamingListenerStreamingStarted, lambda f: {"time": f["time"]}),
    "receiver_started": ("onReceiverStarted", StreamingListenerReceiverStarted, lambda f: {"receiverInfo": ReceiverInfo(f)}),
    "receiver_error": ("onReceiverError", StreamingListenerReceiverError, lambda f: {"receiverInfo": ReceiverInfo(f)}),
    "receiver_stopped": ("onReceiverStopped", StreamingListenerReceiverStopped, lambda f: {"receiverInfo": ReceiverInfo(f)}),
    "batch_submitted": ("onBatchSubmitted", StreamingListenerBatchSubmitted, lambda f: {"batchInfo": BatchInfo(f)}),
    "batch_started": ("onBatchStarted", StreamingListenerBatchStarted, lambda f: {"batchInfo": BatchInfo(f)}),
    "batch_completed": ("onBatchCompleted", StreamingListenerBatchCompleted, lambda f: {"batchInfo": BatchInfo(f)}),
    "output_operation_started": (
        "onOutputOperationStarted",
        StreamingListenerOutputOperationStarted,
        lambda f: {"outputOperationInfo": OutputOperationInfo(f)},
    ),
    "output_operation_completed": (
        "onOutputOperationCompleted",
        StreamingListenerOutputOperationCompleted,
        lambda f: {"outputOperationInfo": OutputOperationInfo(f)},
    ),
}


def _deliverer(listener):
    """The callable ember's listener thread calls with each event's kind and JSON fields."""

    def deliver(kind, payload):
        method, event_class, accessors = _EVENTS[kind]
        handler = getattr(listener, method, None)
        if handler is None:
            return
        try:
            handler(event_class(**accessors(json.loads(payload))))
        except Exception:
            print("ember: StreamingListener.%s raised (the job goes on):" % method, file=sys.stderr)
            traceback.print_exc()

    return deliver
