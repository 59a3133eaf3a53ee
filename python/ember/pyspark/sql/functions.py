"""PySpark's column functions (``pyspark.sql.functions``) that ember has, with PySpark's names,
argument orders and column names. A string where a column is expected names a column."""

from ember import _ember
from ember.pyspark.errors import PySparkTypeError, PySparkValueError
from ember.pyspark.sql.column import Column, _lit, _to_column


def col(col):
    """The column named ``col``."""
    if not isinstance(col, str):
        return Column(_to_column(col))
    return Column(_ember.sql_col(col))


column = col


def lit(col):
    """A literal column (a ``Column`` is returned as it is)."""
    if isinstance(col, Column):
        return col
    return Column(_lit(col))


def expr(str):
    """A column from SQL text, read against the DataFrame it is used on."""
    return Column(_ember.sql_expr(str))


def when(condition, value):
    """``value`` (a Column or a literal) where ``condition`` holds, null elsewhere; chain
    ``.when(...)`` and ``.otherwise(...)`` on the result."""
    if not isinstance(condition, Column):
        raise PySparkTypeError("[NOT_COLUMN] Argument `condition` should be a Column, got %s." % type(condition).__name__)
    return Column(_ember.sql_when(condition._jc, _lit(value)))


def _call(name, *cols, **kwargs):
    return Column(_ember.sql_function(name, [_to_column(c) for c in cols], **kwargs))


def split(str, pattern, limit=-1):
    """The pieces of ``str`` around the matches of the regular expression ``pattern``, at most
    ``limit`` of them when ``limit > 0``."""
    return _call("split", str, pattern=pattern, limit=limit)


def from_json(col, schema, options=None):
    """The JSON object in each string of ``col`` as a struct of ``schema`` (a ``StructType`` or
    a DDL string, ``"word STRING, n LONG"``); fields that do not fit are null. Read its fields with
    ``getField`` or ``expr("s.word")``."""
    from ember.pyspark.sql.types import _schema_ddl

    try:
        schema = _schema_ddl(schema, "from_json")
    except TypeError as e:
        raise PySparkTypeError("[NOT_STR_OR_STRUCT] %s" % e) from None
    if options:
        raise PySparkValueError("ember's from_json takes no options yet, got %r" % (options,))
    return _call("from_json", col, pattern=schema)


def explode(col):
    """One row per element of an array column; the column is named ``col`` unless aliased."""
    return _call("explode", col)


def lower(col):
    return _call("lower", col)


def upper(col):
    return _call("upper", col)


def length(col):
    return _call("length", col)


def count(col):
    """The number of non-null values; ``count("*")`` counts rows."""
    return _call("count", col)


def sum(col):
    return _call("sum", col)


def avg(col):
    return _call("avg", col)


def mean(col):
    return _call("avg", col)


def min(col):
    return _call("min", col)


def max(col):
    return _call("max", col)




def to_timestamp(col, format=None):
    """The strings of ``col`` as timestamps, read as Spark's ``CAST(... AS TIMESTAMP)`` reads
    them (``2017-04-23 12:07:00``, ISO 8601; without an offset in UTC, ember's session time
    zone); text that is no timestamp gives null."""
    if format is not None:
        raise PySparkValueError(
            "ember's to_timestamp takes no format yet (got %r): it reads Spark's default forms" % (format,)
        )
    return _call("to_timestamp", col)


def window(timeColumn, windowDuration, slideDuration=None, startTime=None):
    """The event-time window of each row (``struct<start, end>``, named ``window``):
    ``windowDuration`` long (``"10 minutes"``), starting every ``slideDuration`` (tumbling when
    not given) from the epoch plus ``startTime``. With a slide shorter than the window a row
    falls in several windows: group by the window to count it in each."""
    for name, value in (("windowDuration", windowDuration), ("slideDuration", slideDuration), ("startTime", startTime)):
        if value is not None and not isinstance(value, str):
            raise PySparkTypeError("[NOT_STR] Argument `%s` should be a str, got %s." % (name, type(value).__name__))
    return Column(_ember.sql_window(_to_column(timeColumn, "timeColumn"), windowDuration, slideDuration, startTime))


def session_window(timeColumn, gapDuration):
    """The session window of each row (``struct<start, end>``, named ``session_window``):
    ``[time, time + gapDuration)``; grouped by it, a key's sessions that overlap merge.
    ``gapDuration`` is a str such as ``"5 minutes"`` or a Column of them, one gap per row (a row
    whose gap is null, not an interval or not positive is left out, as in Spark)."""
    if not isinstance(gapDuration, (str, Column)):
        raise PySparkTypeError(
            "[NOT_COLUMN_OR_STR] Argument `gapDuration` should be a Column or str, got %s." % type(gapDuration).__name__
        )
    gap = gapDuration if isinstance(gapDuration, str) else gapDuration._jc
    return Column(_ember.sql_session_window(_to_column(timeColumn, "timeColumn"), gap))


__all__ = [
    "col",
    "column",
    "lit",
    "expr",
    "when",
    "split",
    "explode",
    "lower",
    "upper",
    "length",
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "to_timestamp",
    "window",
    "session_window",
]
