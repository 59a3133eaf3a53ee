"""Structured Streaming queries Spark refuses at ``writeStream...start()`` (its
UnsupportedOperationChecker and the output-mode parser), or already while the DataFrame is built
(``withWatermark``), against the real PySpark: the checks of
crates/ember-sql/tests/golden/checker_errors.json and golden-eventtime/checker_errors.json (joins
with streams, deduplication, watermarks; made by their make_goldens.py --only-checker with
PySpark 3.5.9). Each check's query text is run on ember with only the imports changed; ember must
raise the exception of the same class (from ``ember.pyspark.errors``) with the same first line
of the message. Spark appends the analysed plan (with expression ids) after the first line;
ember need not."""

import builtins
import json
import os

import pytest

from ember.pyspark import errors
from sql_cases import build, session, write_inputs

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "..", "..", "crates", "ember-sql", "tests")
GOLDEN = os.path.join(TESTS, "golden", "checker_errors.json")
EVENT_TIME = os.path.join(TESTS, "golden-eventtime", "checker_errors.json")

with open(GOLDEN, encoding="utf-8") as f:
    GOLDENS = json.load(f)
with open(EVENT_TIME, encoding="utf-8") as f:
    EVENT_TIME_GOLDENS = json.load(f)
CHECKS = {c["name"]: (GOLDENS, c) for c in GOLDENS["checks"]}
CHECKS.update({c["name"]: (EVENT_TIME_GOLDENS, c) for c in EVENT_TIME_GOLDENS["checks"]})


@pytest.fixture(scope="module")
def spark():
    spark = session("ember-checker")
    yield spark
    spark.stop()


def test_goldens_were_made_with_pyspark_3_5():
    for goldens in (GOLDENS, EVENT_TIME_GOLDENS):
        assert goldens["pyspark"].startswith("3.5.")
        refused = [c for c in goldens["checks"] if c.get("exception")]
        assert len(refused) >= len(goldens["checks"]) - 1, "the checks are queries Spark refuses (one it starts)"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_start_refuses_like_pyspark(spark, name, tmp_path):
    goldens, check = CHECKS[name]
    write_inputs(str(tmp_path), check.get("input", goldens["input"]))
    lines2 = None
    static = None
    if goldens.get("static"):
        static = str(tmp_path.parent / ("%s.static.jsonl" % name))
        with open(static, "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(row, sort_keys=True) + "\n" for row in goldens["static"]))
    lines = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(tmp_path))
    if goldens.get("input2"):
        second = tmp_path.parent / ("%s-2" % name)
        second.mkdir(exist_ok=True)
        write_inputs(str(second), goldens["input2"])
        lines2 = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(second))
    if check.get("exception") is None:
        # Spark started this query: so must ember.
        query = build(spark, lines, check["dataframe"], static, lines2).writeStream.format("console").start()
        query.stop()
        return
    # PySpark's own classes, or Python's (an `assert` in PySpark raises AssertionError).
    expected = getattr(errors, check["exception"], None) or getattr(builtins, check["exception"])
    try:
        df = build(spark, lines, check["dataframe"], static, lines2)
        query = df.writeStream.format("console").outputMode(check["mode"]).start()
    except Exception as e:  # noqa: BLE001 - the class is compared by name below
        got = e
    else:
        query.stop()
        pytest.fail("ember started %s (%s mode); PySpark raised %s: %s" % (
            check["dataframe"], check["mode"], check["exception"], check["first_line"]))
    first_line = str(got).split("\n")[0]
    assert (type(got).__name__, first_line) == (check["exception"], check["first_line"]), (
        "ember raised %s: %s\nPySpark raised %s: %s" % (
            type(got).__name__, str(got), check["exception"], check["first_line"]))
    assert isinstance(got, expected)
