"""``spark.read`` (``pyspark.sql.readwriter.DataFrameReader``): files as a DataFrame without
streams, such as the static side of a stream-static join."""

from ember.pyspark.errors import PySparkValueError
from ember.pyspark.sql.streaming import _Options


class DataFrameReader(_Options):
    """Reads files: ``json`` (one object a line; the schema inferred, fields in name order),
    ``csv`` (``header``, ``sep``, ``inferSchema``; without it every column is a string), ``text``
    (a ``value`` column of lines)."""

    def __init__(self, session):
        self._session = session
        self._format = "parquet"
        self._options = {}

    def schema(self, schema):
        raise PySparkValueError("ember's spark.read infers schemas (json, csv with inferSchema) so far")

    def load(self, path=None, format=None, schema=None, **options):
        if format is not None:
            self.format(format)
        if schema is not None:
            self.schema(schema)
        self.options(**options)
        if not isinstance(path, str):
            raise PySparkValueError("ember's spark.read takes one path (a file or a directory), got %r" % (path,))
        jdf = self._session._jsession.read(self._format, list(self._options.items()), path)
        return self._session._frame(jdf)

    def json(self, path, **options):
        return self.load(path, format="json", **options)

    def csv(self, path, header=None, sep=None, inferSchema=None, **options):
        for key, value in (("header", header), ("sep", sep), ("inferSchema", inferSchema)):
            if value is not None:
                options[key] = value
        return self.load(path, format="csv", **options)

    def text(self, path, **options):
        return self.load(path, format="text", **options)
