"""PySpark's ``pyspark.streaming`` on ember: ``StreamingContext`` and ``DStream``, with PySpark's
names, argument names and defaults, and its printing (``pprint``)."""

from ember.pyspark.streaming.context import StreamingContext, StreamingJobError
from ember.pyspark.streaming.dstream import DStream

__all__ = ["StreamingContext", "DStream", "StreamingJobError"]
