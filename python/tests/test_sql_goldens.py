"""Structured Streaming from Python against the real PySpark's console output (issue 27,
acceptance 2): the cases of crates/ember-sql/tests/golden (made by its make_goldens.py with
PySpark 3.5.9), each run by sql_golden_child.py with PySpark's own query text and only the
imports changed. As in the Rust test of those goldens, each batch's table rows are compared in
one order (Spark prints complete- and update-mode rows in its state store's hash order, no
contract); headers, widths, truncation and ``only showing top 20 rows`` exactly."""

import json
import os
import subprocess
import sys

import pytest
from sql_cases import write_inputs

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "..", "crates", "ember-sql", "tests", "golden")
CASES = os.path.join(GOLDEN, "cases.json")

with open(CASES, encoding="utf-8") as f:
    NAMES = [c["name"] for c in json.load(f)]


def normalised(text, sort_rows):
    """The batches of a console output, each with its table rows in one order."""
    out = []
    for batch in text.split("-------------------------------------------\nBatch: "):
        if not batch:
            continue
        lines = batch.split("\n")
        if sort_rows and len(lines) > 6:
            end = max(i for i, line in enumerate(lines) if line.startswith("+"))
            lines[5:end] = sorted(lines[5:end])
        out.append("\n".join(lines))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_console_output_matches_pyspark(name, tmp_path):
    with open(CASES, encoding="utf-8") as f:
        case = next(c for c in json.load(f) if c["name"] == name)
    with open(os.path.join(GOLDEN, case["input"]), encoding="utf-8") as f:
        write_inputs(str(tmp_path), json.load(f))
    with open(os.path.join(GOLDEN, case["output"]), encoding="utf-8") as f:
        want = f.read()
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "sql_golden_child.py"), CASES, name, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    got = proc.stdout.decode("utf-8")
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    sort = case["mode"] != "append"
    assert normalised(got, sort) == normalised(want, sort), "ember printed:\n%s\nPySpark printed:\n%s" % (got, want)
