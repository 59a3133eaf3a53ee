"""``SparkContext``: PySpark's context, here holding what a streaming context needs from it
(the number of worker threads from ``master``), and ``parallelize`` for ``queueStream``."""

import os
import re
import threading

from ember.pyspark.rdd import RDD

_LOCAL = re.compile(r"^local(?:\[(\*|\d+)\])?$")


def _workers(master):
    """The worker threads ``master`` asks for: ``local`` is 1, ``local[N]`` is N, ``local[*]``
    the machine's cores."""
    match = _LOCAL.match(master or "local")
    if match is None:
        raise ValueError(
            "master must be 'local', 'local[N]' or 'local[*]' (got %r); a cluster of processes "
            "is started with ember's cluster settings" % (master,)
        )
    count = match.group(1)
    if count is None:
        return 1
    if count == "*":
        return os.cpu_count() or 1
    if int(count) < 1:
        raise ValueError("master %r asks for no worker threads" % (master,))
    return int(count)


class SparkContext:
    """PySpark's ``SparkContext(master=None, appName=None, ...)``."""

    _active = None
    _lock = threading.Lock()

    def __init__(self, master=None, appName=None, sparkHome=None, pyFiles=None, environment=None,
                 batchSize=0, serializer=None, conf=None, gateway=None, jsc=None, profiler_cls=None):
        if conf is not None:
            master = master or conf.get("spark.master")
            appName = appName or conf.get("spark.app.name")
        self._conf = conf
        self.master = master or "local[*]"
        self.appName = appName or "ember"
        self._workers = _workers(self.master)
        self._log_level = "WARN"
        with SparkContext._lock:
            SparkContext._active = self

    @classmethod
    def getOrCreate(cls, conf=None):
        """The active context, or a new one made from ``conf``."""
        with cls._lock:
            active = cls._active
        return active if active is not None else cls(conf=conf)

    def getConf(self):
        from ember.pyspark.conf import SparkConf

        conf = SparkConf().setAll(self._conf.getAll() if self._conf is not None else [])
        return conf.setMaster(self.master).setAppName(self.appName)

    @property
    def defaultParallelism(self):
        """``spark.default.parallelism`` when the conf sets it, else the worker threads (as
        Spark's local mode)."""
        if self._conf is not None and self._conf.contains("spark.default.parallelism"):
            return int(self._conf.get("spark.default.parallelism"))
        return self._workers

    def parallelize(self, c, numSlices=None):
        """An RDD of the items of ``c`` in ``numSlices`` partitions (default: the worker count)."""
        return RDD.from_items(list(c), numSlices or self.defaultParallelism)

    def setLogLevel(self, logLevel):
        """Kept for PySpark programs; ember logs through ``RUST_LOG``."""
        levels = {"ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN"}
        if str(logLevel).upper() not in levels:
            raise ValueError("unknown log level %r; one of %s" % (logLevel, ", ".join(sorted(levels))))
        self._log_level = str(logLevel).upper()

    def stop(self):
        with SparkContext._lock:
            if SparkContext._active is self:
                SparkContext._active = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
