"""``SparkSession``: the entry point to DataFrames and SQL over streams, as PySpark's."""

import threading

from ember import _ember
from ember.pyspark.sql.dataframe import DataFrame
from ember.pyspark.sql.streaming import DataStreamReader, StreamingQueryManager


class _Builder:
    """``SparkSession.builder``: ``appName``, ``master``, ``config``, ``getOrCreate``."""

    def __init__(self):
        self._options = {}

    def appName(self, name):
        return self.config("spark.app.name", name)

    def master(self, master):
        return self.config("spark.master", master)

    def config(self, key=None, value=None, conf=None, map=None):
        if conf is not None:
            for k, v in conf.getAll():
                self._options[k] = str(v)
        if map is not None:
            for k, v in map.items():
                self._options[k] = str(v)
        if key is not None:
            self._options[key] = "true" if value is True else "false" if value is False else str(value)
        return self

    def enableHiveSupport(self):
        return self

    def getOrCreate(self):
        """The active session (with this builder's settings added), or a new one."""
        with SparkSession._lock:
            session = SparkSession._active
            if session is None:
                session = SparkSession(self._options)
                SparkSession._active = session
            else:
                session._conf.update(self._options)
            return session

    create = getOrCreate


class _ClassProperty:
    def __init__(self, getter):
        self._getter = getter

    def __get__(self, instance, owner):
        return self._getter(owner)


class SparkSession:
    """DataFrames and SQL over streams. Made by ``SparkSession.builder...getOrCreate()``;
    ``master`` is ``local``, ``local[N]`` or ``local[*]`` (the worker threads, default
    ``local[*]``)."""

    _active = None
    _lock = threading.RLock()

    builder = _ClassProperty(lambda cls: _Builder())

    def __init__(self, options):
        self._conf = dict(options)
        config = [(k, v) for k, v in self._conf.items() if k not in ("spark.app.name", "spark.master")]
        self._jsession = _ember.SqlSession(
            self._conf.get("spark.app.name", "ember"), self._conf.get("spark.master"), config
        )

    @classmethod
    def getActiveSession(cls):
        return cls._active

    @property
    def version(self):
        return "3.5.9"

    @property
    def readStream(self):
        """Reads streams: ``spark.readStream.format("socket").option(...).load()``."""
        return DataStreamReader(self)

    @property
    def read(self):
        """Reads files as a DataFrame without streams: ``spark.read.json(path)``."""
        from ember.pyspark.sql.readwriter import DataFrameReader

        return DataFrameReader(self)

    @property
    def streams(self):
        return StreamingQueryManager(self)

    @property
    def sparkContext(self):
        from ember.pyspark.conf import SparkConf
        from ember.pyspark.context import SparkContext

        conf = SparkConf().setMaster(self._conf.get("spark.master", "local[*]")).setAppName(self._conf.get("spark.app.name", "ember"))
        return SparkContext.getOrCreate(conf)

    @property
    def conf(self):
        return _RuntimeConfig(self._conf)

    def _frame(self, jdf):
        return DataFrame(jdf, self)

    def sql(self, sqlQuery):
        """A DataFrame of SQL over the temporary views (streams among them)."""
        return self._frame(self._jsession.sql(sqlQuery))

    def stop(self):
        """Stops the session's queries; the next ``getOrCreate`` makes a new session."""
        for query in self.streams.active:
            query.stop()
        with SparkSession._lock:
            if SparkSession._active is self:
                SparkSession._active = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class _RuntimeConfig:
    def __init__(self, conf):
        self._conf = conf

    def get(self, key, default=None):
        return self._conf.get(key, default)

    def set(self, key, value):
        self._conf[key] = str(value)
