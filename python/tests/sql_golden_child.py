"""Runs one Structured Streaming golden case of crates/ember-sql/tests/golden on ember's Python
package, exactly as make_goldens.py ran it on PySpark (only the imports differ): the file source
with maxFilesPerTrigger 1 on DIR, the case's query text evaluated with the functions of
``ember.pyspark.sql.functions`` in scope, the console sink, ``trigger(availableNow=True)``.

With PROGRESS_JSON, it also writes each micro-batch's progress as the event-time goldens keep
it: batchId, numInputRows, eventTime, and the state operators' row counts.

Usage: sql_golden_child.py CASES_JSON NAME DIR [PROGRESS_JSON]
"""

import json
import os
import sys

from sql_cases import build, session


def main():
    cases_path, name, directory = sys.argv[1:4]
    with open(cases_path, encoding="utf-8") as f:
        case = next(c for c in json.load(f) if c["name"] == name)
    spark = session("ember-goldens")
    lines = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(directory)
    static = None
    if case.get("static"):
        static = os.path.join(os.path.dirname(os.path.abspath(cases_path)), case["static"])
    lines2 = None
    if case.get("input2"):
        lines2 = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(directory + "-2")
    df = build(spark, lines, case["dataframe"], static, lines2)
    query = df.writeStream.format("console").outputMode(case["mode"]).trigger(availableNow=True).start()
    query.awaitTermination()
    if len(sys.argv) > 4:
        kept = ("numRowsTotal", "numRowsUpdated", "numRowsRemoved", "numRowsDroppedByWatermark")
        reports = [
            {
                "batchId": p["batchId"],
                "numInputRows": p["numInputRows"],
                "eventTime": p.get("eventTime"),
                "stateOperators": [{k: op.get(k) for k in kept} for op in p.get("stateOperators") or []],
            }
            for p in query.recentProgress
        ]
        with open(sys.argv[4], "w", encoding="utf-8") as f:
            json.dump(reports, f)
    spark.stop()


if __name__ == "__main__":
    main()
