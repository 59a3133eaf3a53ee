"""Turns a seed program's stdout into the forms its goldens are compared in.

make_goldens.py writes the goldens with these functions from PySpark's output; a test of ember
runs the same program (imports changed by ``ember_source``) and compares the same function of
its output with the golden file. Only the standard library is used, so both sides can import it.

The forms (README.md says which program is compared in which):

``comparable(stdout, batches, args)``
    The stdout with each pprint ``Time:`` value replaced by its offset from the first batch's
    (``Time: T0+4s``), the run's arguments (temporary paths, ports) replaced by ``<NAME>``, and
    cut before the header of batch ``batches + 1`` (``None``: not cut). What remains is compared
    byte for byte.

``per_key_totals(stdout)``, ``final_state(stdout)``, ``window_sums(stdout)``,
``all_elements(stdout)``
    Forms that do not depend on how input that arrived over time was cut into batches; each
    parses the pprint blocks and fails when a block was truncated (``...``), since then the
    printed elements are not all the elements.
"""

import ast
import datetime
import re

DASHES = "-" * 43
_TIME = re.compile(r"^Time: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{6})?)$")


class GoldenFormError(ValueError):
    """The output cannot be put in the asked form (too few batches, a truncated block, ...)."""


def parse_time(value):
    """The datetime of a pprint ``Time:`` value (``str()`` of a naive datetime)."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in value else "%Y-%m-%d %H:%M:%S"
    return datetime.datetime.strptime(value, fmt)


def headers(lines):
    """(index of the first dashed line, time value) of every pprint header, in output order."""
    found = []
    for i in range(len(lines) - 2):
        if lines[i] == DASHES and lines[i + 2] == DASHES:
            m = _TIME.match(lines[i + 1])
            if m:
                found.append((i, m.group(1)))
    return found


def _offset(value, first):
    seconds = (parse_time(value) - first).total_seconds()
    text = ("%.3f" % seconds).rstrip("0").rstrip(".")
    return "T0+%ss" % text


def replace_args(text, args):
    """``args`` maps a name to the value a run used (a path, a port): each value becomes <NAME>."""
    for name, value in sorted(args.items(), key=lambda kv: -len(str(kv[1]))):
        text = text.replace(str(value), "<%s>" % name)
    return text


def comparable(stdout, batches=None, args=None):
    """The byte-for-byte comparable form: Time values as offsets, arguments as <NAME>, cut
    before the first header of batch ``batches + 1``."""
    lines = stdout.split("\n")
    found = headers(lines)
    cut = len(lines)
    if batches is not None:
        distinct = []
        for index, value in found:
            if value not in distinct:
                distinct.append(value)
                if len(distinct) == batches + 1:
                    cut = index
                    break
        if len(distinct) <= batches:
            raise GoldenFormError(
                "the output has %d batches with a pprint header; %d and the start of one more are needed"
                % (len(distinct), batches)
            )
    kept = lines[:cut]
    if found:
        first = parse_time(found[0][1])
        for index, value in found:
            if index + 1 < len(kept):
                kept[index + 1] = "Time: " + _offset(value, first)
    text = "\n".join(kept)
    if cut < len(lines):
        # The kept lines end with the blank line that closes a block; its newline was the split.
        text += "\n"
    return replace_args(text, args or {})


def blocks(stdout):
    """Every pprint block: (time value, element lines, truncated). A block's elements run from
    its header to the first empty line (so an element printed as an empty line would end it)."""
    lines = stdout.split("\n")
    out = []
    for index, value in headers(lines):
        elements = []
        j = index + 3
        while j < len(lines) and lines[j] != "":
            elements.append(lines[j])
            j += 1
        if j >= len(lines):
            raise GoldenFormError("the block of %s has no closing empty line (output cut?)" % value)
        truncated = bool(elements) and elements[-1] == "..."
        if truncated:
            elements = elements[:-1]
        out.append((value, elements, truncated))
    return out


def _complete_blocks(stdout):
    found = blocks(stdout)
    if not found:
        raise GoldenFormError("no pprint block in the output")
    for value, _, truncated in found:
        if truncated:
            raise GoldenFormError(
                "the block of %s was truncated by pprint's num: its elements are not all printed" % value
            )
    return found


def _pairs(elements):
    for line in elements:
        key, value = ast.literal_eval(line)
        yield key, value


def _sorted_lines(pairs):
    return "".join(repr(p) + "\n" for p in sorted(pairs, key=repr))


def per_key_totals(stdout):
    """Each key's values summed over every printed batch, one ``repr((key, total))`` a line,
    sorted by that repr."""
    totals = {}
    for _, elements, _ in _complete_blocks(stdout):
        for key, value in _pairs(elements):
            totals[key] = totals.get(key, 0) + value
    return _sorted_lines(totals.items())


def final_state(stdout):
    """The elements of the last printed block (updateStateByKey: the final state), sorted."""
    found = _complete_blocks(stdout)
    return _sorted_lines(_pairs(found[-1][1]))


def window_sums(stdout):
    """Each key's values summed over every printed window, then the last window, both sorted.
    With a window of w batches sliding every s, each batch's input is in w/s printed windows,
    so the sums are w/s times each key's input count once the run outlived the input by w."""
    found = _complete_blocks(stdout)
    totals = {}
    for _, elements, _ in found:
        for key, value in _pairs(elements):
            totals[key] = totals.get(key, 0) + value
    return (
        "# sum over all printed windows\n"
        + _sorted_lines(totals.items())
        + "# last window\n"
        + _sorted_lines(_pairs(found[-1][1]))
    )


def all_elements(stdout):
    """Every printed element line of every block, sorted (a multiset)."""
    lines = []
    for _, elements, _ in _complete_blocks(stdout):
        lines.extend(elements)
    return "".join(line + "\n" for line in sorted(lines))


NORMALISED = {
    "per_key_totals": per_key_totals,
    "final_state": final_state,
    "window_sums": window_sums,
    "all_elements": all_elements,
}

PYSPARK_IMPORTS = (
    "from pyspark import SparkContext",
    "from pyspark.streaming import StreamingContext",
)


def ember_source(source):
    """A seed program's text with its two pyspark import lines turned into ember's; fails when
    the program has any other pyspark import."""
    out = []
    for line in source.split("\n"):
        if line.startswith("from pyspark import SparkContext"):
            line = "from ember.pyspark import" + line[len("from pyspark import") :]
        elif line.startswith("from pyspark.streaming import StreamingContext"):
            line = "from ember.pyspark.streaming import" + line[len("from pyspark.streaming import") :]
        elif re.match(r"\s*(from|import)\s+pyspark\b", line):
            raise GoldenFormError("a pyspark import other than the two that ember replaces: %r" % line)
        out.append(line)
    return "\n".join(out)
