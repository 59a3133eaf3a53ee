"""The function vocabulary of ../shared/conformance/FORMAT.md §4 as Python callables, taking and
returning what PySpark's DStream and RDD methods pass (tuples for pairs, iterators for
partitions), and the conversions between the vectors' JSON and Python values.

A name missing from these tables is not in the vocabulary; test_conformance.py reports the
vector as malformed. A function that needs an RDD method ember's RDD lacks is listed in
``RDD_METHODS_NEEDED`` so the vector is skipped naming the method rather than failing mid-batch.
"""

import re

# Values.


def from_json(value):
    """A JSON value as the Python value a PySpark test would use: every array becomes a tuple,
    so pairs are tuples and any key is hashable."""
    if isinstance(value, list):
        return tuple(from_json(x) for x in value)
    return value


def to_json(value):
    """A Python output value in the vectors' encoding: tuples and lists become lists."""
    if isinstance(value, (tuple, list)):
        return [to_json(x) for x in value]
    return value


# ElemFn: x -> y.


def _fail_on_1(x):
    if x == 1:
        raise RuntimeError("fail_on_1: the element is 1")
    return x


def _to_list(x):
    """An iterable as a list; a cogroup pair ``(left, right)`` as a pair of lists."""
    if isinstance(x, tuple):
        return tuple(list(side) for side in x)
    return list(x)


def _counter_of(state):
    counter, _idle = state
    return counter


ELEM = {
    "identity": lambda x: x,
    "to_string": str,
    "len": len,
    "upper": lambda s: s.upper(),
    "swap": lambda kv: (kv[1], kv[0]),
    "key": lambda kv: kv[0],
    "value": lambda kv: kv[1],
    "to_pair_with_1": lambda x: (x, 1),
    "to_pair_with_x": lambda x: (x, "x"),
    "to_pair_with_len": lambda s: (s, len(s)),
    "mod_10_pair_with_1": lambda x: (x % 10, 1),
    "to_list": _to_list,
    "get_counter": _counter_of,
    "fail_on_1": _fail_on_1,
}

_PLUS = re.compile(r"^plus_(-?\d+)$")


def elem_fn(name):
    """The ElemFn called ``name`` (``plus_N`` for any integer N), or None."""
    match = _PLUS.match(name)
    if match:
        n = int(match.group(1))
        return lambda x: x + n
    return ELEM.get(name)


# Pred: x -> bool.

PRED = {
    "is_even": lambda x: x % 2 == 0,
    "contains_a": lambda s: "a" in s,
    "key_contains_a": lambda kv: "a" in kv[0],
    "value_nonzero": lambda kv: kv[1] != 0,
    "value_positive": lambda kv: kv[1] > 0,
}

# FlatFn: x -> list.

FLAT = {
    "self_and_double": lambda x: [x, 2 * x],
    "chars": list,
    "chars_keyed_by_len": lambda s: [(len(s), c) for c in s],
    "value_with_key_chars": lambda kv: [(kv[1], c) for c in kv[0]],
    "v_and_v_plus_10": lambda v: [v, v + 10],
    "suffix_1_and_2": lambda s: [s + "1", s + "2"],
}

# PartFn: partition iterator -> list.

PART = {
    "sum_partition": lambda it: [sum(it)],
    "concat_upper_partition": lambda it: ["".join(s.upper() for s in it)],
    "swap_each": lambda it: [(v, k) for k, v in it],
}

# BinFn: (a, b) -> c.

BIN = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "concat_str": lambda a, b: a + str(b),
}

# RddFn: RDD -> RDD (for DStream.transform).

RDD1 = {
    "rdd_map_to_string": lambda rdd: rdd.map(str),
    "rdd_map_plus_2": lambda rdd: rdd.map(lambda x: x + 2),
    "rdd_sort_by_key": lambda rdd: rdd.sortByKey(),
    "rdd_keys": lambda rdd: rdd.keys(),
    "rdd_cartesian_self": lambda rdd: rdd.cartesian(rdd),
    # Returning None is the error the vector checks.
    "rdd_return_null": lambda rdd: None,
}

# Rdd2Fn: (RDD, RDD) -> RDD (for DStream.transformWith).

RDD2 = {
    "rdd_join": lambda a, b: a.join(b),
    "rdd_union": lambda a, b: a.union(b),
}


# MultiFn: [RDD] -> RDD (for StreamingContext.transform).


def _union_all(rdds):
    out = rdds[0]
    for rdd in rdds[1:]:
        out = out.union(rdd)
    return out


MULTI = {
    "union_all": _union_all,
    "union_2_3_1": lambda rdds: rdds[1].union(rdds[2]).union(rdds[0]),
    "union_first_two_pair_self_join_third": lambda rdds: rdds[0].union(rdds[1]).map(lambda i: (i, i)).join(rdds[2]),
}

# The RDD methods a function of RDD1/RDD2/MULTI calls, beyond what every one of them needs.
RDD_METHODS_NEEDED = {
    "rdd_map_to_string": ["map"],
    "rdd_map_plus_2": ["map"],
    "rdd_sort_by_key": ["sortByKey"],
    "rdd_keys": ["keys"],
    "rdd_cartesian_self": ["cartesian"],
    "rdd_return_null": [],
    "rdd_join": ["join"],
    "rdd_union": ["union"],
    "union_all": ["union"],
    "union_2_3_1": ["union"],
    "union_first_two_pair_self_join_third": ["union", "map", "join"],
}


# UpdFn: PySpark's updateFunc(new_values, last_state) -> state or None.


def _counter_expire_after_2_idle(values, state):
    counter, idle = state if state is not None else (0, 0)
    n = sum(values)
    if n == 0:
        idle += 1
    else:
        counter += n
        idle = 0
    return None if idle == 2 else (counter, idle)


UPD = {
    "sum_state": lambda values, state: sum(values) + (state or 0),
    "append_values": lambda values, state: list(state or []) + list(values),
    "counter_expire_after_2_idle": _counter_expire_after_2_idle,
}

# UpdFns that need the batch time, which PySpark's updateFunc is not given.
UPD_TIME_AWARE = {"time_sum_state"}
