"""``RDD``: one batch of a stream as ``foreachRDD`` and ``transform`` see it, with the RDD
methods people call there. The batch is already in this process, so these are plain Python
over its partitions (lists); the results are PySpark's."""

import heapq
import os
from collections import defaultdict
from functools import reduce as _reduce


class RDD:
    """A batch's elements, in partitions."""

    def __init__(self, partitions):
        self._partitions = [list(p) for p in partitions]

    @classmethod
    def from_items(cls, items, num_slices):
        """``items`` cut into ``num_slices`` partitions the way ``parallelize`` does."""
        items = list(items)
        n = max(1, int(num_slices))
        size = len(items)
        return cls([items[i * size // n:(i + 1) * size // n] for i in range(n)])

    def __repr__(self):
        return "RDD(%d partitions, %d elements)" % (len(self._partitions), self.count())

    def _items(self):
        for part in self._partitions:
            yield from part

    # actions

    def collect(self):
        return list(self._items())

    def count(self):
        return sum(len(p) for p in self._partitions)

    def take(self, num):
        out = []
        for item in self._items():
            if len(out) >= num:
                break
            out.append(item)
        return out

    def first(self):
        taken = self.take(1)
        if not taken:
            raise ValueError("RDD is empty")
        return taken[0]

    def isEmpty(self):
        return self.count() == 0

    def foreach(self, f):
        for item in self._items():
            f(item)

    def foreachPartition(self, f):
        for part in self._partitions:
            f(iter(part))

    def reduce(self, f):
        items = self.collect()
        if not items:
            raise ValueError("Can not reduce() empty RDD")
        return _reduce(f, items)

    def fold(self, zeroValue, op):
        """PySpark's: each partition folded from ``zeroValue``, then their results folded from
        ``zeroValue`` again."""
        return _reduce(op, (_reduce(op, part, zeroValue) for part in self._partitions), zeroValue)

    def collectAsMap(self):
        return dict(self._items())

    def countByKey(self):
        counts = defaultdict(int)
        for k, _ in self._items():
            counts[k] += 1
        return counts

    def countByValue(self):
        counts = defaultdict(int)
        for item in self._items():
            counts[item] += 1
        return counts

    def top(self, num, key=None):
        return heapq.nlargest(num, self._items(), key=key)

    def takeOrdered(self, num, key=None):
        return heapq.nsmallest(num, self._items(), key=key)

    def sum(self):
        return sum(self._items(), 0)

    def max(self, key=None):
        return max(self._items(), key=key) if key else max(self._items())

    def min(self, key=None):
        return min(self._items(), key=key) if key else min(self._items())

    def mean(self):
        items = self.collect()
        return float(sum(items)) / len(items) if items else float("nan")

    def getNumPartitions(self):
        return len(self._partitions)

    def saveAsTextFile(self, path, compressionCodecClass=None):
        """``path/part-NNNNN`` with ``str()`` of each element (``bytes`` as they are, as
        PySpark writes them), and ``_SUCCESS``."""
        if os.path.exists(path):
            raise FileExistsError("Output directory %s already exists" % path)
        os.makedirs(path)
        for i, part in enumerate(self._partitions):
            with open(os.path.join(path, "part-%05d" % i), "wb") as f:
                for item in part:
                    f.write((item if isinstance(item, bytes) else str(item).encode("utf-8")) + b"\n")
        open(os.path.join(path, "_SUCCESS"), "w").close()

    # transformations

    def _per_item(self, f):
        return RDD([f(part) for part in self._partitions])

    def map(self, f, preservesPartitioning=False):
        return self._per_item(lambda part: [f(x) for x in part])

    def flatMap(self, f, preservesPartitioning=False):
        return self._per_item(lambda part: [y for x in part for y in f(x)])

    def filter(self, f):
        return self._per_item(lambda part: [x for x in part if f(x)])

    def mapPartitions(self, f, preservesPartitioning=False):
        return self._per_item(lambda part: list(f(iter(part))))

    def mapPartitionsWithIndex(self, f, preservesPartitioning=False):
        return RDD([list(f(i, iter(part))) for i, part in enumerate(self._partitions)])

    def mapValues(self, f):
        return self._per_item(lambda part: [(k, f(v)) for k, v in part])

    def flatMapValues(self, f):
        return self._per_item(lambda part: [(k, y) for k, v in part for y in f(v)])

    def keys(self):
        return self.map(lambda kv: kv[0])

    def values(self):
        return self.map(lambda kv: kv[1])

    def glom(self):
        return RDD([[list(part)] for part in self._partitions])

    def reduceByKey(self, func, numPartitions=None):
        merged = {}
        for k, v in self._items():
            merged[k] = func(merged[k], v) if k in merged else v
        return RDD.from_items(merged.items(), numPartitions or len(self._partitions))

    def groupByKey(self, numPartitions=None):
        groups = defaultdict(list)
        for k, v in self._items():
            groups[k].append(v)
        return RDD.from_items(groups.items(), numPartitions or len(self._partitions))

    def distinct(self, numPartitions=None):
        seen = dict.fromkeys(self._items())
        return RDD.from_items(seen, numPartitions or len(self._partitions))

    def union(self, other):
        return RDD(self._partitions + other._partitions)

    def join(self, other, numPartitions=None):
        right = defaultdict(list)
        for k, w in other._items():
            right[k].append(w)
        joined = [(k, (v, w)) for k, v in self._items() for w in right.get(k, ())]
        return RDD.from_items(joined, numPartitions or len(self._partitions))

    def sortBy(self, keyfunc, ascending=True, numPartitions=None):
        ordered = sorted(self._items(), key=keyfunc, reverse=not ascending)
        return RDD.from_items(ordered, numPartitions or len(self._partitions))

    def sortByKey(self, ascending=True, numPartitions=None, keyfunc=lambda x: x):
        return self.sortBy(lambda kv: keyfunc(kv[0]), ascending, numPartitions)

    def cache(self):
        return self

    def persist(self, storageLevel=None):
        return self
