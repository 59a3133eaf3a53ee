"""Structured Streaming on ember, with PySpark's names (``pyspark.sql``): ``SparkSession``,
``DataFrame``, ``Column``, ``Row``, ``functions``, and the streaming reader, writer and query."""

from ember.pyspark.sql.column import Column
from ember.pyspark.sql.dataframe import DataFrame, GroupedData
from ember.pyspark.sql.session import SparkSession
from ember.pyspark.sql.streaming import DataStreamReader, DataStreamWriter, StreamingQuery
from ember.pyspark.sql.types import Row

__all__ = [
    "SparkSession",
    "DataFrame",
    "GroupedData",
    "Column",
    "Row",
    "DataStreamReader",
    "DataStreamWriter",
    "StreamingQuery",
]
