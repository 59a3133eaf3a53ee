"""A group's state in ``applyInPandasWithState`` (``pyspark.sql.streaming.state``): PySpark's
``GroupState`` and ``GroupStateTimeout``, with PySpark's errors."""

from ember.pyspark.errors import PySparkTypeError, PySparkValueError

__all__ = ["GroupState", "GroupStateTimeout"]


class GroupStateTimeout:
    """When a group's state times out: ``NoTimeout``, ``ProcessingTimeTimeout`` (a duration
    after the micro-batch that set it) or ``EventTimeTimeout`` (when the watermark passes a
    time)."""

    NoTimeout = "NoTimeout"
    ProcessingTimeTimeout = "ProcessingTimeTimeout"
    EventTimeTimeout = "EventTimeTimeout"


_API = "applyInPandasWithState"


class GroupState:
    """One group's state for one call of the function: a tuple of the state schema's values."""

    NO_TIMESTAMP = -1

    def __init__(self, value, has_timed_out, watermark_ms, batch_time_ms, timeout_conf):
        self._value = value
        self._has_timed_out = bool(has_timed_out)
        self._watermark_ms = watermark_ms
        self._batch_time_ms = batch_time_ms
        self._timeout_conf = timeout_conf
        self._updated = False
        self._removed = False
        # Reset for every call, as in Spark: set it again to keep it.
        self._timeout_ms = None

    @property
    def exists(self):
        """Whether the state exists."""
        return self._value is not None

    @property
    def get(self):
        """The state, a tuple; ``PySparkValueError`` when there is none."""
        if self._value is None:
            raise PySparkValueError("[STATE_NOT_EXISTS] State is either not defined or has already been removed.")
        return self._value

    @property
    def getOption(self):
        """The state, or ``None``."""
        return self._value

    @property
    def hasTimedOut(self):
        """Whether this call is for a timeout (its frames hold no rows)."""
        return self._has_timed_out

    @property
    def oldTimeoutTimestamp(self):
        """Always -1 (``NO_TIMESTAMP``), as PySpark 3.5 gives it."""
        return GroupState.NO_TIMESTAMP

    def update(self, newValue):
        """Sets the state to ``newValue``, a tuple (or list) of the state schema's values."""
        if newValue is None:
            raise PySparkTypeError("[CANNOT_BE_NONE] Argument `newValue` cannot be None.")
        self._value = tuple(newValue)
        self._updated = True
        self._removed = False

    def remove(self):
        """Removes the state."""
        self._value = None
        self._removed = True
        self._updated = False

    def setTimeoutDuration(self, durationMs):
        """Times the state out ``durationMs`` after this micro-batch (``ProcessingTimeTimeout``)."""
        if self._timeout_conf != GroupStateTimeout.ProcessingTimeTimeout:
            raise RuntimeError("Cannot set timeout duration without enabling processing time timeout in %s" % _API)
        if not isinstance(durationMs, int) or isinstance(durationMs, bool):
            raise PySparkTypeError("[NOT_INT] Argument `durationMs` should be an int, got %s." % type(durationMs).__name__)
        if durationMs <= 0:
            raise PySparkValueError("[VALUE_NOT_POSITIVE] Value for `durationMs` must be positive, got '%d'." % durationMs)
        self._timeout_ms = self._batch_time_ms + durationMs

    def setTimeoutTimestamp(self, timestampMs):
        """Times the state out once the watermark passes ``timestampMs`` (``EventTimeTimeout``)."""
        if self._timeout_conf != GroupStateTimeout.EventTimeTimeout:
            raise RuntimeError("Cannot set timeout timestamp without enabling event time timeout in %s" % _API)
        if hasattr(timestampMs, "timestamp"):
            timestampMs = int(timestampMs.timestamp() * 1000)
        if not isinstance(timestampMs, int) or isinstance(timestampMs, bool):
            raise PySparkTypeError("[NOT_INT] Argument `timestampMs` should be an int, got %s." % type(timestampMs).__name__)
        if timestampMs <= 0:
            raise PySparkValueError("[VALUE_NOT_POSITIVE] Value for `timestampMs` must be positive, got '%d'." % timestampMs)
        if self._watermark_ms is not None and timestampMs < self._watermark_ms:
            raise PySparkValueError(
                "[INVALID_TIMEOUT_TIMESTAMP] Timeout timestamp (%d) cannot be earlier than the current watermark (%d)."
                % (timestampMs, self._watermark_ms)
            )
        self._timeout_ms = timestampMs

    def getCurrentWatermarkMs(self):
        """The micro-batch's watermark in milliseconds; ``RuntimeError`` without a watermark."""
        if self._watermark_ms is None:
            raise RuntimeError("Cannot get event time watermark timestamp without setting watermark before %s" % _API)
        return self._watermark_ms

    def getCurrentProcessingTimeMs(self):
        """The micro-batch's time in milliseconds."""
        return self._batch_time_ms

    def __str__(self):
        if self.exists:
            return "GroupState(%s)" % (self._value,)
        return "GroupState(<undefined>)"

    __repr__ = __str__
