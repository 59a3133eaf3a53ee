"""Durations as PySpark takes them: seconds, as an int or a float."""

import numbers


def to_ms(value, name):
    """``value`` seconds in milliseconds; ``TypeError``/``ValueError`` name the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a number of seconds, got %s" % (name, type(value).__name__))
    ms = round(float(value) * 1000)
    if ms < 1:
        raise ValueError("%s must be at least 1 ms, got %r seconds" % (name, value))
    return ms
