"""``SparkConf``: PySpark's settings object. ember reads ``spark.master`` and
``spark.app.name``; other settings are kept and returned as given."""


class SparkConf:
    """PySpark's ``SparkConf(loadDefaults=True)``."""

    def __init__(self, loadDefaults=True, _jvm=None, _jconf=None):
        self._settings = {}

    def set(self, key, value):
        self._settings[str(key)] = str(value)
        return self

    def setIfMissing(self, key, value):
        self._settings.setdefault(str(key), str(value))
        return self

    def setMaster(self, value):
        return self.set("spark.master", value)

    def setAppName(self, value):
        return self.set("spark.app.name", value)

    def setSparkHome(self, value):
        return self.set("spark.home", value)

    def setExecutorEnv(self, key=None, value=None, pairs=None):
        if key is not None:
            self.set("spark.executorEnv." + key, value)
        for k, v in pairs or ():
            self.set("spark.executorEnv." + k, v)
        return self

    def setAll(self, pairs):
        for k, v in pairs:
            self.set(k, v)
        return self

    def get(self, key, defaultValue=None):
        return self._settings.get(key, defaultValue)

    def getAll(self):
        return list(self._settings.items())

    def contains(self, key):
        return key in self._settings

    def toDebugString(self):
        return "\n".join("%s=%s" % kv for kv in sorted(self._settings.items()))
