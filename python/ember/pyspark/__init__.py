"""PySpark's entry points on ember: ``SparkContext``, ``SparkConf``, ``StorageLevel`` and the
``RDD`` of a batch."""

from ember.pyspark.conf import SparkConf
from ember.pyspark.context import SparkContext
from ember.pyspark.rdd import RDD
from ember.pyspark.storagelevel import StorageLevel

__all__ = ["SparkConf", "SparkContext", "RDD", "StorageLevel"]
