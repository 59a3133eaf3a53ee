"""Where older PySpark programs import exceptions from (``pyspark.sql.utils``)."""

from ember.pyspark.errors import (  # noqa: F401
    AnalysisException,
    IllegalArgumentException,
    ParseException,
    StreamingQueryException,
)
