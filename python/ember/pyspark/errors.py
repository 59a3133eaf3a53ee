"""PySpark's exceptions (``pyspark.errors``), as ember raises them: an ``AnalysisException`` for a
query Spark refuses, ``StreamingQueryException`` when a running query fails, and so on. Each
message is Spark's text where ember checks what Spark checks."""


class PySparkException(Exception):
    """The base of PySpark's exceptions."""

    def __init__(self, message=None, error_class=None, message_parameters=None):
        super().__init__(message)
        self._message = message
        self._error_class = error_class
        self._message_parameters = message_parameters

    def getErrorClass(self):
        """The error class named in brackets at the start of the message (``UNRESOLVED_COLUMN.WITH_SUGGESTION``), if any."""
        if self._error_class is not None:
            return self._error_class
        message = self._message or ""
        if message.startswith("[") and "]" in message:
            return message[1:message.index("]")]
        return None

    def getMessageParameters(self):
        return self._message_parameters

    def __str__(self):
        return str(self._message)


class AnalysisException(PySparkException):
    """A query that Spark refuses to plan (an unknown column, an operation a stream cannot do)."""


class ParseException(AnalysisException):
    """SQL text that does not parse."""


class IllegalArgumentException(PySparkException):
    """A bad argument or option value."""


class UnsupportedOperationException(PySparkException):
    """Something Spark does that ember does not do yet."""


class StreamingQueryException(PySparkException):
    """A streaming query stopped because a micro-batch failed."""


class PySparkTypeError(PySparkException, TypeError):
    """An argument of the wrong type."""


class PySparkValueError(PySparkException, ValueError):
    """An argument of the right type with a wrong value."""


__all__ = [
    "PySparkException",
    "AnalysisException",
    "ParseException",
    "IllegalArgumentException",
    "UnsupportedOperationException",
    "StreamingQueryException",
    "PySparkTypeError",
    "PySparkValueError",
]
