"""Structured Streaming's reader, writer and query handle (``pyspark.sql.streaming``):
``spark.readStream``, ``df.writeStream``, ``StreamingQuery`` and ``spark.streams``."""

import json
import re
import time

from ember.pyspark.errors import IllegalArgumentException, PySparkTypeError, PySparkValueError, StreamingQueryException


def _option_text(value):
    """An option's value as PySpark passes it to the JVM: ``True`` is ``"true"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_INTERVAL = re.compile(
    r"^\s*(?:interval\s+)?(\d+(?:\.\d+)?)\s*(milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|h|days?|d)\s*$",
    re.IGNORECASE,
)
_UNIT_MS = {"ms": 1, "millisecond": 1, "milliseconds": 1, "s": 1000, "sec": 1000, "secs": 1000,
            "second": 1000, "seconds": 1000, "m": 60000, "min": 60000, "mins": 60000, "minute": 60000,
            "minutes": 60000, "h": 3600000, "hour": 3600000, "hours": 3600000, "d": 86400000,
            "day": 86400000, "days": 86400000}


def _interval_ms(text):
    """``"1 second"``, ``"500 milliseconds"``, ``"2 minutes"`` in milliseconds."""
    match = _INTERVAL.match(str(text))
    if match is None:
        raise IllegalArgumentException("Invalid interval: %s" % text)
    return int(round(float(match.group(1)) * _UNIT_MS[match.group(2).lower()]))


class _Options:
    """``format``, ``option`` and ``options``, as the reader and the writer both take them."""

    def format(self, source):
        self._format = source
        return self

    def option(self, key, value):
        self._options[key] = _option_text(value)
        return self

    def options(self, **options):
        for key, value in options.items():
            self.option(key, value)
        return self


class DataStreamReader(_Options):
    """Reads a stream (``spark.readStream``): ``format("socket")`` with ``host`` and ``port``,
    ``format("text" | "csv" | "json")`` of a directory's new files (``maxFilesPerTrigger``,
    ``latestFirst``; csv and json with a ``schema``), ``rate``, ``kafka``."""

    def __init__(self, session):
        self._session = session
        self._format = "text"
        self._options = {}
        self._schema = None

    def schema(self, schema):
        """The rows' schema for the csv and json file sources: a ``StructType`` or Spark's DDL
        text (``"word string, n long, at timestamp"``)."""
        from ember.pyspark.sql.types import _schema_ddl

        try:
            self._schema = _schema_ddl(schema, "readStream.schema")
        except TypeError as e:
            raise PySparkTypeError("[NOT_STR_OR_STRUCT] %s" % e) from None
        return self

    def csv(self, path, schema=None, sep=None, header=None, **options):
        for key, value in (("sep", sep), ("header", header)):
            if value is not None:
                options[key] = value
        return self.load(path, format="csv", schema=schema, **options)

    def json(self, path, schema=None, **options):
        return self.load(path, format="json", schema=schema, **options)

    def load(self, path=None, format=None, schema=None, **options):
        if format is not None:
            self.format(format)
        if schema is not None:
            self.schema(schema)
        self.options(**options)
        jdf = self._session._jsession.read_stream(self._format, list(self._options.items()), path, self._schema)
        return self._session._frame(jdf)

    def text(self, path, wholetext=False, lineSep=None, pathGlobFilter=None, recursiveFileLookup=None):
        if wholetext or lineSep is not None or pathGlobFilter is not None or recursiveFileLookup:
            raise PySparkValueError("ember's text stream reads whole lines of the files directly in the directory (no wholetext, lineSep, pathGlobFilter, recursiveFileLookup yet)")
        return self.load(path, format="text")


class DataStreamWriter(_Options):
    """Starts a streaming query of a DataFrame (``df.writeStream``)."""

    def __init__(self, df):
        self._df = df
        self._mode = "append"
        self._format = "console"
        self._options = {}
        self._trigger = ("default", 0)
        self._name = None
        self._foreach = None

    def outputMode(self, outputMode):
        if not isinstance(outputMode, str) or not outputMode.strip():
            raise PySparkValueError("[VALUE_NOT_NON_EMPTY_STR] Value for `outputMode` must be a non-empty string, got '%s'." % outputMode)
        self._mode = outputMode
        return self

    def queryName(self, queryName):
        if not isinstance(queryName, str) or not queryName.strip():
            raise PySparkValueError("[VALUE_NOT_NON_EMPTY_STR] Value for `queryName` must be a non-empty string, got '%s'." % queryName)
        self._name = queryName
        return self

    def partitionBy(self, *cols):
        raise PySparkValueError("ember's sinks do not partition their output yet")

    def trigger(self, processingTime=None, once=None, continuous=None, availableNow=None):
        """One of ``processingTime="1 second"``, ``once=True``, ``availableNow=True``
        (``continuous`` processing is refused: ember runs micro-batches)."""
        given = [p for p in (processingTime, once, continuous, availableNow) if p is not None]
        if len(given) > 1:
            raise PySparkValueError("[ONLY_ALLOW_SINGLE_TRIGGER] Only a single trigger is allowed.")
        if not given:
            raise PySparkValueError("[ONLY_ALLOW_SINGLE_TRIGGER] Only a single trigger is allowed.")
        if processingTime is not None:
            if not isinstance(processingTime, str) or not processingTime.strip():
                raise PySparkValueError("[VALUE_NOT_NON_EMPTY_STR] Value for `processingTime` must be a non-empty string, got '%s'." % processingTime)
            self._trigger = ("processingTime", _interval_ms(processingTime))
        elif once is not None:
            if once is not True:
                raise PySparkValueError("[VALUE_NOT_TRUE] Value for `once` must be True, got '%s'." % once)
            self._trigger = ("once", 0)
        elif availableNow is not None:
            if availableNow is not True:
                raise PySparkValueError("[VALUE_NOT_TRUE] Value for `availableNow` must be True, got '%s'." % availableNow)
            self._trigger = ("availableNow", 0)
        else:
            raise PySparkValueError("ember runs micro-batches: continuous processing (trigger(continuous=...)) is not supported")
        return self

    def foreachBatch(self, func):
        """Calls ``func(batch_df, batch_id)`` with each micro-batch's output rows."""
        if not callable(func):
            raise PySparkTypeError("[NOT_CALLABLE] Argument `func` should be a callable, got %s." % type(func).__name__)
        self._foreach = func
        self._format = "foreachBatch"
        return self

    def foreach(self, f):
        raise PySparkValueError("ember has no foreach sink yet; foreachBatch hands over each micro-batch")

    def start(self, path=None, format=None, outputMode=None, partitionBy=None, queryName=None, **options):
        if format is not None:
            self.format(format)
        if outputMode is not None:
            self.outputMode(outputMode)
        if partitionBy is not None:
            self.partitionBy(partitionBy)
        if queryName is not None:
            self.queryName(queryName)
        if path is not None:
            self._options["path"] = path
        self.options(**options)
        session = self._df.sparkSession
        foreach = None
        if self._foreach is not None:
            user = self._foreach

            def foreach(jdf, batch_id):
                user(session._frame(jdf), batch_id)

        kind, interval = self._trigger
        jquery = self._df._jdf.start(self._mode, self._format, list(self._options.items()), kind, interval, self._name, foreach)
        return StreamingQuery(jquery, self._df)

    def toTable(self, tableName, **options):
        raise PySparkValueError("ember has no catalog tables yet: use format('memory') with queryName, or a file sink")


class StreamingQuery:
    """A running query: ``id``, ``runId``, ``name``, ``isActive``, ``awaitTermination``,
    ``stop``, ``exception``, ``lastProgress``, ``recentProgress``."""

    def __init__(self, jquery, df):
        self._jquery = jquery
        self._df = df

    def __repr__(self):
        return "<StreamingQuery id=%s runId=%s name=%s>" % (self.id, self.runId, self.name)

    @property
    def id(self):
        return self._jquery.id()

    @property
    def runId(self):
        return self._jquery.run_id()

    @property
    def name(self):
        return self._jquery.name()

    @property
    def isActive(self):
        return self._jquery.is_active()

    def awaitTermination(self, timeout=None):
        """Waits for the query to stop; with ``timeout`` (seconds), at most that long and returns
        whether it stopped. A failed query raises ``StreamingQueryException``."""
        if timeout is None:
            self._jquery.await_termination(None)
            return None
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise PySparkValueError("[VALUE_NOT_POSITIVE] Value for `timeout` must be positive, got '%s'." % timeout)
        return self._jquery.await_termination(int(timeout * 1000))

    def stop(self):
        self._jquery.stop()

    def processAllAvailable(self):
        """Waits until the data the sources have now has been processed and committed (until a
        micro-batch finds no new input; with data that keeps arriving that may never be)."""
        self._jquery.process_all_available()

    @property
    def lastProgress(self):
        """The last micro-batch's progress as a dict with Spark's fields (``batchId``,
        ``numInputRows``, ``inputRowsPerSecond``, ``processedRowsPerSecond``, ``durationMs``,
        ``stateOperators``, ``sources``, ``sink``, ...), or ``None`` before the first."""
        text = self._jquery.last_progress()
        return None if text is None else json.loads(text)

    @property
    def recentProgress(self):
        """The recent micro-batches' progress (at most 100), oldest first."""
        return [json.loads(text) for text in self._jquery.recent_progress()]

    def exception(self):
        message = self._jquery.exception()
        return None if message is None else StreamingQueryException(message)

    @property
    def status(self):
        """What the query is doing: ``message`` (``Waiting for data to arrive``, ``Processing new
        data``, ``Waiting for next trigger``, ``Stopped``), ``isDataAvailable``,
        ``isTriggerActive``."""
        message, data, active = self._jquery.status()
        return {"message": message, "isDataAvailable": data, "isTriggerActive": active}

    def explain(self, extended=False):
        """Prints the query's physical plan (with ``extended``, its DataFrame's plans too)."""
        if extended and self._df is not None:
            self._df.explain(True)
        else:
            print(self._jquery.explain_string(), end="")


class StreamingQueryManager:
    """The session's queries (``spark.streams``)."""

    def __init__(self, session):
        self._session = session

    @property
    def active(self):
        return [StreamingQuery(q, None) for q in self._session._jsession.active()]

    def get(self, id):
        for query in self.active:
            if query.id == id:
                return query
        return None

    def awaitAnyTermination(self, timeout=None):
        """Waits until a query of the session ends, or returns at once when one has ended since
        the session began or :meth:`resetTerminated` (with ``timeout`` seconds, at most that
        long; returns whether one did); raises ``StreamingQueryException`` when it failed."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise PySparkValueError("[VALUE_NOT_POSITIVE] Value for `timeout` must be positive, got '%s'." % timeout)
        ended = self._session._jsession.await_any_termination(None if timeout is None else int(timeout * 1000))
        return ended if timeout is not None else None

    def resetTerminated(self):
        """Forgets the queries that ended, for :meth:`awaitAnyTermination`."""
        self._session._jsession.reset_terminated()

    def addListener(self, listener):
        """Adds a :class:`StreamingQueryListener` of this session's queries."""
        if not isinstance(listener, StreamingQueryListener):
            raise PySparkTypeError(
                "[NOT_STREAMING_QUERY_LISTENER] addListener takes a StreamingQueryListener, got %s" % type(listener).__name__
            )
        listener._ember_id = self._session._jsession.add_listener(_ListenerAdapter(listener))

    def removeListener(self, listener):
        """Removes a listener added with :meth:`addListener`."""
        listener_id = getattr(listener, "_ember_id", None)
        if listener_id is not None:
            self._session._jsession.remove_listener(listener_id)
            listener._ember_id = None


class StreamingQueryListener:
    """Hears of a session's streaming queries (``spark.streams.addListener``): override
    ``onQueryStarted``, ``onQueryProgress``, ``onQueryIdle`` and ``onQueryTerminated``. Calls come
    from the query's threads; an exception in one is printed and the query goes on."""

    def onQueryStarted(self, event):
        pass

    def onQueryProgress(self, event):
        pass

    def onQueryIdle(self, event):
        pass

    def onQueryTerminated(self, event):
        pass


class StreamingQueryProgress:
    """One micro-batch's progress (PySpark's ``StreamingQueryProgress``): its fields as
    attributes (``batchId``, ``numInputRows``, ``inputRowsPerSecond``, ...), ``json`` and
    ``prettyJson``."""

    def __init__(self, text):
        self._text = text
        self._fields = json.loads(text)

    def __getattr__(self, name):
        try:
            return self.__dict__["_fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def json(self):
        return self._text

    @property
    def prettyJson(self):
        return json.dumps(self._fields, indent=2)

    def __str__(self):
        return self.prettyJson


class _Event:
    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in sorted(self.__dict__.items())))


class QueryStartedEvent(_Event):
    """``id``, ``runId``, ``name``, ``timestamp`` (ISO text, UTC)."""


class QueryProgressEvent(_Event):
    """``progress``: a :class:`StreamingQueryProgress`."""


class QueryTerminatedEvent(_Event):
    """``id``, ``runId``, ``exception`` (the error's text, or ``None``), ``errorClassOnException``."""


class _ListenerAdapter:
    """What ember's engine calls (see ``add_listener`` in the Rust bridge)."""

    def __init__(self, listener):
        self._listener = listener

    def _started(self, id, run_id, name, timestamp_ms):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp_ms / 1000)) + ".%03dZ" % (timestamp_ms % 1000)
        self._listener.onQueryStarted(QueryStartedEvent(id=id, runId=run_id, name=name, timestamp=stamp))

    def _progress(self, text):
        self._listener.onQueryProgress(QueryProgressEvent(progress=StreamingQueryProgress(text)))

    def _terminated(self, id, run_id, exception):
        self._listener.onQueryTerminated(QueryTerminatedEvent(id=id, runId=run_id, exception=exception, errorClassOnException=None))
