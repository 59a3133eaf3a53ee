"""What the Structured Streaming golden tests share with make_goldens.py's way of running a
case (crates/ember-sql/tests/golden): the session, the input files, and the case's query text
evaluated with the functions of ``ember.pyspark.sql.functions`` in scope."""

import os
import time

from ember.pyspark.sql import SparkSession
from ember.pyspark.sql import functions as F


def session(app_name):
    """The session make_goldens.py ran its cases in (local[2], its settings), on ember."""
    spark = (
        SparkSession.builder.appName(app_name)
        .master("local[2]")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def write_inputs(directory, batches):
    """One file per batch, each modified a second after the one before (as make_goldens.py)."""
    base = time.time() - 10 * (len(batches) + 1)
    for i, lines in enumerate(batches):
        path = os.path.join(directory, "part-%03d.txt" % i)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("".join(line + "\n" for line in lines))
        os.utime(path, (base + i, base + i))


def build(spark, lines, source, static=None, lines2=None):
    """The case's query text as make_goldens.py evaluates it; its last line is the DataFrame.
    ``static``: the path of the case's static table (JSON lines), read as ``static``;
    ``lines2``: a second stream."""
    scope = {name: getattr(F, name) for name in dir(F) if not name.startswith("_")}
    scope.update(spark=spark, lines=lines, lines2=lines2)
    if static is not None:
        scope["static"] = spark.read.json(static)
    *statements, last = source.split("\n")
    # Everything before the last line as one block (it may define functions).
    exec("\n".join(statements), scope)
    return eval(last, scope)
