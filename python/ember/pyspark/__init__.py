"""PySpark's entry points on ember: ``SparkContext`` and the ``RDD`` of a batch."""

from ember.pyspark.conf import SparkConf
from ember.pyspark.context import SparkContext
from ember.pyspark.rdd import RDD

__all__ = ["SparkConf", "SparkContext", "RDD"]
