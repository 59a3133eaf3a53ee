"""ember: Spark Streaming's DStream model on a Rust engine.

PySpark programs use ``ember.pyspark`` in place of ``pyspark``::

    from ember.pyspark import SparkContext
    from ember.pyspark.streaming import StreamingContext
"""

from ember import _ember  # noqa: F401  (the extension module)

__all__ = ["pyspark"]
