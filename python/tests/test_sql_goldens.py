"""Structured Streaming from Python against the real PySpark's console output (issue 27,
acceptance 2; issue 28, acceptance 1 and 2): the cases of crates/ember-sql/tests/golden and
golden-eventtime (made by their make_goldens.py with PySpark 3.5.9; the event-time ones also
with each batch's watermark, event times and state counts from ``recentProgress``), each run by sql_golden_child.py with PySpark's own query text and only the
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
EVENT_TIME = os.path.join(HERE, "..", "..", "crates", "ember-sql", "tests", "golden-eventtime")
EVENT_TIME_CASES = os.path.join(EVENT_TIME, "cases.json")

with open(CASES, encoding="utf-8") as f:
    NAMES = [c["name"] for c in json.load(f)]
with open(EVENT_TIME_CASES, encoding="utf-8") as f:
    EVENT_TIME_NAMES = [c["name"] for c in json.load(f)]


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


def run_case(golden, cases, name, tmp_path, progress=None):
    """The case's input written to tmp_path/input, run by sql_golden_child.py: the case, and what
    it printed."""
    with open(cases, encoding="utf-8") as f:
        case = next(c for c in json.load(f) if c["name"] == name)
    directory = tmp_path / "input"
    directory.mkdir()
    with open(os.path.join(golden, case["input"]), encoding="utf-8") as f:
        write_inputs(str(directory), json.load(f))
    if case.get("input2"):
        # The second stream's files, in DIR-2 (sql_golden_child.py reads them there).
        second = tmp_path / "input-2"
        second.mkdir()
        with open(os.path.join(golden, case["input2"]), encoding="utf-8") as f:
            write_inputs(str(second), json.load(f))
    command = [sys.executable, os.path.join(HERE, "sql_golden_child.py"), cases, name, str(directory)]
    if progress:
        command.append(str(progress))
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    return case, proc.stdout.decode("utf-8")


@pytest.mark.parametrize("name", NAMES)
def test_console_output_matches_pyspark(name, tmp_path):
    case, got = run_case(GOLDEN, CASES, name, tmp_path)
    with open(os.path.join(GOLDEN, case["output"]), encoding="utf-8") as f:
        want = f.read()
    sort = case["mode"] != "append"
    assert normalised(got, sort) == normalised(want, sort), "ember printed:\n%s\nPySpark printed:\n%s" % (got, want)


@pytest.mark.parametrize("name", EVENT_TIME_NAMES)
def test_event_time_output_and_progress_match_pyspark(name, tmp_path):
    progress = tmp_path / "progress.json"
    case, got = run_case(EVENT_TIME, EVENT_TIME_CASES, name, tmp_path, progress)
    with open(os.path.join(EVENT_TIME, case["output"]), encoding="utf-8") as f:
        want = f.read()
    # Aggregations print in hash order in every output mode.
    assert normalised(got, True) == normalised(want, True), "ember printed:\n%s\nPySpark printed:\n%s" % (got, want)
    with open(os.path.join(EVENT_TIME, case["progress"]), encoding="utf-8") as f:
        want_progress = json.load(f)
    with open(progress, encoding="utf-8") as f:
        got_progress = json.load(f)
    assert got_progress == want_progress
