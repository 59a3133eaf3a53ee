"""Runs one Structured Streaming golden case of crates/ember-sql/tests/golden on ember's Python
package, exactly as make_goldens.py ran it on PySpark (only the imports differ): the file source
with maxFilesPerTrigger 1 on DIR, the case's query text evaluated with the functions of
``ember.pyspark.sql.functions`` in scope, the console sink, ``trigger(availableNow=True)``.

Usage: sql_golden_child.py CASES_JSON NAME DIR
"""

import json
import sys

from sql_cases import build, session


def main():
    cases_path, name, directory = sys.argv[1:4]
    with open(cases_path, encoding="utf-8") as f:
        case = next(c for c in json.load(f) if c["name"] == name)
    spark = session("ember-goldens")
    lines = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(directory)
    df = build(spark, lines, case["dataframe"])
    query = df.writeStream.format("console").outputMode(case["mode"]).trigger(availableNow=True).start()
    query.awaitTermination()
    spark.stop()


if __name__ == "__main__":
    main()
