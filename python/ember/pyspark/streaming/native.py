"""The functions ember runs natively when it recognises them.

On a stream whose elements are known to be ``str`` (the lines of ``socketTextStream`` and
``textFileStream``), the seeds' word count calls three small functions per line and per word:
``lambda line: line.split(" ")``, ``lambda word: (word, 1)`` and ``lambda a, b: a + b``. ember
recognises functions of exactly these shapes, whatever their names (lambdas or ``def``s, with
any separator string and any ``int`` constant below 2**31 in absolute value), and
``operator.add``, by comparing their compiled code with reference functions compiled by the
same interpreter; it then runs them in Rust on Rust values, with the same results (the same
pieces and empty pieces as ``str.split(sep)``, the same pairs, the same sums). A function with
a closure, defaults, another body or another constant is called in Python as always.

``EMBER_NATIVE_FUNCTIONS=0`` in the environment turns the recognition off: every function is
called in Python (to compare, or to debug a function that is recognised).
"""

import operator
import os

_ENABLED = os.environ.get("EMBER_NATIVE_FUNCTIONS", "1") != "0"

_SPLIT = lambda s: s.split(" ")  # noqa: E731
_PAIR = lambda x: (x, 1)  # noqa: E731
_ADD = lambda a, b: a + b  # noqa: E731

# A function defined inside another one is flagged as nested; its code is the same.
_CO_NESTED = 0x10

# The sums of a batch stay within 64 bits when the pairs' constant does.
_PAIR_LIMIT = 2**31


def _same_shape(f, reference):
    """``f`` compiles to the reference's code (constants aside), and has no closure, defaults
    or keyword-only arguments."""
    code = getattr(f, "__code__", None)
    if not _ENABLED or code is None or not callable(f):
        return False
    if getattr(f, "__closure__", None) or getattr(f, "__defaults__", None) or getattr(f, "__kwdefaults__", None):
        return False
    ref = reference.__code__
    return (
        code.co_code == ref.co_code
        and code.co_argcount == ref.co_argcount
        and code.co_posonlyargcount == ref.co_posonlyargcount
        and code.co_kwonlyargcount == 0
        and code.co_flags & ~_CO_NESTED == ref.co_flags & ~_CO_NESTED
        and code.co_names == ref.co_names
        and len(code.co_consts) == len(ref.co_consts)
    )


def split_separator(f):
    """The separator of a function ``s -> s.split(SEP)`` with ``SEP`` a non-empty ``str``,
    else None."""
    if not _same_shape(f, _SPLIT):
        return None
    sep = f.__code__.co_consts[_SPLIT.__code__.co_consts.index(" ")]
    return sep if type(sep) is str and sep else None


def pair_constant(f):
    """The constant of a function ``x -> (x, C)`` with ``C`` an ``int`` (not a ``bool``) below
    2**31 in absolute value, else None."""
    if not _same_shape(f, _PAIR):
        return None
    constant = f.__code__.co_consts[_PAIR.__code__.co_consts.index(1)]
    return constant if type(constant) is int and abs(constant) < _PAIR_LIMIT else None


def is_add(f):
    """Whether ``f`` is ``operator.add`` or a function ``(a, b) -> a + b``."""
    return _ENABLED and (f is operator.add or _same_shape(f, _ADD))
