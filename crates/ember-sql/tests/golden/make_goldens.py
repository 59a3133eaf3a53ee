#!/usr/bin/env python3
"""Golden console outputs of Spark Structured Streaming, made with the real PySpark.

Run from anywhere (it writes next to itself):

    PYSPARK_PYTHON=/work/main/bench/.work/venv/bin/python \
        /work/main/bench/.work/venv/bin/python crates/ember-sql/tests/golden/make_goldens.py

Every case runs in its own subprocess (the same python) with its own local SparkSession; the
subprocess's stdout is what the console sink printed (Spark's log4j2 console appender writes
to stderr, and the subprocess prints nothing itself). Options: `--case NAME` (repeatable) runs
only those cases; `--no-checker` skips checker_errors.json; `--only-checker` makes only
checker_errors.json (no console case, cases.json untouched).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

WORDS = [["the cat sat", "on the mat"], ["the dog"], ["a cat", "the end the"]]
NUMBERS = [["1", "2", "4"], ["7", "10", "-3"], ["12"]]
PROJECTION_INPUT = [
    ["hello world", "skip", "", "42", "this line is longer than twenty characters", "-7"],
    ["Mixed Case", "0", "skip", "exactly twenty chars", "twenty-one characters"],
    ["row %02d" % i if i % 5 else str(i * 100) for i in range(1, 26)],
]
LETTERS = [["a", "b"], ["c"], ["d", "e", "f"]]

WORDCOUNT = 'lines.select(explode(split(lines.value, " ")).alias("word")).groupBy("word").count()'
AGGREGATES = (
    'lines.selectExpr("CAST(value AS BIGINT) AS n")'
    '.groupBy(expr("n % 2").alias("parity"))'
    '.agg(count("n"), sum("n"), avg("n"), min("n"), max("n"))'
)

CASES = [
    {
        "name": "wordcount_complete",
        "mode": "complete",
        "dataframe": WORDCOUNT,
        "sql": None,
        "input": WORDS,
    },
    {
        "name": "wordcount_update",
        "mode": "update",
        "dataframe": WORDCOUNT,
        "sql": None,
        "input": WORDS,
    },
    {
        "name": "wordcount_sql_complete",
        "mode": "complete",
        "dataframe": (
            'lines.createOrReplaceTempView("lines")\n'
            "spark.sql(\"SELECT word, count(*) AS count FROM "
            "(SELECT explode(split(value, ' ')) AS word FROM lines) GROUP BY word\")"
        ),
        "sql": "SELECT word, count(*) AS count FROM (SELECT explode(split(value, ' ')) AS word FROM lines) GROUP BY word",
        "input": WORDS,
    },
    {
        "name": "projection_append",
        "mode": "append",
        "dataframe": (
            'lines.selectExpr("value", "upper(value) AS up", "length(value) AS len", '
            '"CAST(value AS INT) AS n").filter("value != \'skip\'")'
        ),
        "sql": None,
        "input": PROJECTION_INPUT,
    },
    {
        "name": "aggregates_complete",
        "mode": "complete",
        "dataframe": AGGREGATES,
        "sql": None,
        "input": NUMBERS,
    },
    {
        "name": "aggregates_update",
        "mode": "update",
        "dataframe": AGGREGATES,
        "sql": None,
        "input": NUMBERS,
    },
    {
        "name": "global_count_complete",
        "mode": "complete",
        "dataframe": "lines.groupBy().count()",
        "sql": None,
        "input": LETTERS,
    },
    {
        "name": "aggregates_sql_complete",
        "mode": "complete",
        "dataframe": (
            'lines.createOrReplaceTempView("lines")\n'
            'spark.sql("SELECT n % 2 AS parity, count(n) AS cnt, sum(n) AS total, avg(n) AS mean, '
            'min(n) AS lo, max(n) AS hi FROM (SELECT CAST(value AS BIGINT) AS n FROM lines) GROUP BY n % 2")'
        ),
        "sql": (
            "SELECT n % 2 AS parity, count(n) AS cnt, sum(n) AS total, avg(n) AS mean, "
            "min(n) AS lo, max(n) AS hi FROM (SELECT CAST(value AS BIGINT) AS n FROM lines) GROUP BY n % 2"
        ),
        "input": NUMBERS,
    },
    {
        "name": "projection_sql_append",
        "mode": "append",
        "dataframe": (
            'lines.createOrReplaceTempView("lines")\n'
            'spark.sql("SELECT value, upper(value) AS up, length(value) AS len, CAST(value AS INT) AS n '
            'FROM lines WHERE value != \'skip\'")'
        ),
        "sql": (
            "SELECT value, upper(value) AS up, length(value) AS len, CAST(value AS INT) AS n "
            "FROM lines WHERE value != 'skip'"
        ),
        "input": PROJECTION_INPUT,
    },
    {
        "name": "global_count_sql_complete",
        "mode": "complete",
        "dataframe": (
            'lines.createOrReplaceTempView("lines")\n'
            'spark.sql("SELECT count(*) AS count FROM lines")'
        ),
        "sql": "SELECT count(*) AS count FROM lines",
        "input": LETTERS,
    },
]

CHECKER_INPUT = [["b", "a"]]
CHECKER = [
    {
        "name": "complete_without_aggregation",
        "mode": "complete",
        "dataframe": 'lines.select("value")',
    },
    {
        "name": "append_with_aggregation_without_watermark",
        "mode": "append",
        "dataframe": 'lines.groupBy("value").count()',
    },
    {
        "name": "multiple_aggregations_complete",
        "mode": "complete",
        "dataframe": 'lines.groupBy("value").count().groupBy("count").agg(count("*").alias("n"))',
    },
    {
        "name": "multiple_aggregations_update",
        "mode": "update",
        "dataframe": 'lines.groupBy("value").count().groupBy("count").agg(count("*").alias("n"))',
    },
    {
        "name": "global_aggregation_append",
        "mode": "append",
        "dataframe": "lines.groupBy().count()",
    },
    {
        "name": "unknown_output_mode",
        "mode": "sideways",
        "dataframe": 'lines.select("value")',
    },
    {
        "name": "append_with_aggregation_without_watermark_sql",
        "mode": "append",
        "dataframe": (
            'lines.createOrReplaceTempView("lines")\n'
            'spark.sql("SELECT value, count(*) AS count FROM lines GROUP BY value")'
        ),
    },
]


def write_inputs(directory, batches):
    """One file per batch, each modified 1 s after the previous one (oldest first)."""
    base = time.time() - 10 * (len(batches) + 1)
    for i, lines in enumerate(batches):
        path = os.path.join(directory, "part-%03d.txt" % i)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("".join(line + "\n" for line in lines))
        os.utime(path, (base + i, base + i))


# ---------------------------------------------------------------------------------------------
# In the subprocess


def session():
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.appName("ember-goldens")
        .master("local[2]")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def build(spark, lines, source):
    """Evaluates the case's query text; the value of its last line is the streaming DataFrame."""
    from pyspark.sql import functions as F

    scope = {name: getattr(F, name) for name in dir(F) if not name.startswith("_")}
    scope.update(spark=spark, lines=lines)
    *statements, last = source.split("\n")
    for statement in statements:
        exec(statement, scope)
    return eval(last, scope)


def run_case(case, directory):
    spark = session()
    lines = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(directory)
    df = build(spark, lines, case["dataframe"])
    query = (
        df.writeStream.format("console")
        .outputMode(case["mode"])
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    spark.stop()


def run_checker(directory, result_path):
    spark = session()
    results = []
    for check in CHECKER:
        lines = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(directory)
        df = build(spark, lines, check["dataframe"])
        entry = dict(check)
        try:
            query = df.writeStream.format("console").outputMode(check["mode"]).start()
            query.stop()
            entry["error"] = None
        except Exception as e:  # AnalysisException; IllegalArgumentException from outputMode()
            text = str(e)
            entry["exception"] = type(e).__name__
            entry["error_class"] = e.getErrorClass() if hasattr(e, "getErrorClass") else None
            entry["message"] = text
            entry["first_line"] = text.split("\n")[0]
        results.append(entry)
    spark.stop()
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# In the parent


def child(args):
    env = dict(os.environ)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    return subprocess.run(
        [sys.executable, os.path.abspath(__file__)] + args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def dump_json(name, value):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", action="append")
    parser.add_argument("--no-checker", action="store_true")
    parser.add_argument("--only-checker", action="store_true")
    parser.add_argument("--child-case")
    parser.add_argument("--child-checker")
    parser.add_argument("--dir")
    args = parser.parse_args()

    if args.child_case:
        run_case(next(c for c in CASES if c["name"] == args.child_case), args.dir)
        return
    if args.child_checker:
        run_checker(args.dir, args.child_checker)
        return

    import pyspark

    print("PySpark", pyspark.__version__, file=sys.stderr)
    failed = False
    for case in CASES:
        if args.only_checker or (args.case and case["name"] not in args.case):
            continue
        with tempfile.TemporaryDirectory(prefix="ember-golden-") as directory:
            write_inputs(directory, case["input"])
            started = time.time()
            proc = child(["--child-case", case["name"], "--dir", directory])
        out = proc.stdout.decode("utf-8")
        if proc.returncode != 0 or not out.startswith("-------------------------------------------\nBatch: 0\n"):
            failed = True
            print("FAILED %s (rc %d)\n--- stdout\n%s\n--- stderr\n%s" % (
                case["name"], proc.returncode, out, proc.stderr.decode("utf-8", "replace")), file=sys.stderr)
            continue
        with open(os.path.join(HERE, case["name"] + ".out"), "w", encoding="utf-8", newline="") as f:
            f.write(out)
        dump_json(case["name"] + ".input.json", case["input"])
        print("%-26s %5.1f s, %d batches" % (
            case["name"], time.time() - started, out.count("\nBatch: ") + out.startswith("Batch: ")), file=sys.stderr)

    if not args.only_checker:
        dump_json("cases.json", [
            {"name": c["name"], "mode": c["mode"], "dataframe": c["dataframe"], "sql": c["sql"],
             "input": c["name"] + ".input.json", "output": c["name"] + ".out"}
            for c in CASES
        ])

    if not args.no_checker:
        with tempfile.TemporaryDirectory(prefix="ember-golden-") as directory:
            write_inputs(directory, CHECKER_INPUT)
            # Next to the input directory, not under it: `dir/../x.json` stops resolving once
            # the TemporaryDirectory is removed (why the checker part "failed" with rc 0).
            result = os.path.join(os.path.dirname(directory), os.path.basename(directory) + ".json")
            proc = child(["--child-checker", result, "--dir", directory])
        if proc.returncode != 0 or not os.path.exists(result):
            failed = True
            print("FAILED checker (rc %d)\n%s" % (proc.returncode, proc.stderr.decode("utf-8", "replace")),
                  file=sys.stderr)
        else:
            with open(result, encoding="utf-8") as f:
                results = json.load(f)
            os.remove(result)
            dump_json("checker_errors.json", {
                "pyspark": pyspark.__version__,
                "input": CHECKER_INPUT,
                "source": 'spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(dir)',
                "checks": results,
            })
            print("checker_errors.json written", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
