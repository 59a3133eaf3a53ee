"""Structured Streaming from Python (``ember.pyspark.sql``, issue 27): seed 002's word count with
only its imports changed, in complete and update mode, fed over a real socket; PySpark's names,
column names, ``Row``s, errors and sinks (``foreachBatch``, ``memory``); the golden comparisons
with PySpark are in test_sql_goldens.py."""

import collections
import os
import re
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")
if GOLDEN not in sys.path:
    sys.path.insert(0, GOLDEN)

import make_goldens  # noqa: E402

from ember.pyspark.errors import AnalysisException, IllegalArgumentException, PySparkTypeError, StreamingQueryException  # noqa: E402
from ember.pyspark.sql import Row, SparkSession  # noqa: E402
from ember.pyspark.sql import functions as F  # noqa: E402

DASHES = "-------------------------------------------"
SEED = os.path.join(HERE, "seeds", "002_structured_wordcount.py")


def ember_program(tmp_path, path):
    """The program with its pyspark imports turned into ember's (and nothing else changed)."""
    text = open(path, encoding="utf-8").read()
    changed = re.sub(r"^from pyspark\.", "from ember.pyspark.", text, flags=re.M)
    assert changed.count("from ember.pyspark.") == 2
    assert "pyspark" not in re.sub(r"ember\.pyspark", "", changed).split("import os", 1)[1].replace("# ", "")
    out = tmp_path / os.path.basename(path)
    out.write_text(changed, encoding="utf-8")
    return str(out)


def tables(stdout):
    """``[(batch id, {word: count})]`` of the console sink's output, checking each block's
    form: the dashed line, ``Batch: N``, the dashed line, then a two-column table."""
    blocks = stdout.split(DASHES + "\nBatch: ")
    assert blocks[0] == "", "output before the first batch: %r" % blocks[0]
    out = []
    for block in blocks[1:]:
        lines = block.split("\n")
        batch = int(lines[0])
        assert lines[1] == DASHES
        border = lines[2]
        assert re.fullmatch(r"\+-+\+-+\+", border), border
        widths = [len(part) for part in border.strip("+").split("+")]
        assert lines[3] == "|%s|%s|" % ("word".rjust(widths[0]), "count".rjust(widths[1]))
        assert lines[4] == border
        counts = {}
        i = 5
        while lines[i] != border:
            cells = lines[i].strip("|").split("|")
            assert [len(c) for c in cells] == widths, lines[i]
            counts[cells[0].strip()] = int(cells[1])
            i += 1
        if lines[i + 1].startswith("only showing top"):
            i += 1
        assert lines[i + 1] == "", lines[i + 1]
        out.append((batch, counts))
    return out


@pytest.mark.parametrize("mode", ["complete", "update"])
def test_seed_structured_word_count(tmp_path, mode):
    lines = make_goldens.WORD_LINES
    totals = collections.Counter(w for line in lines for w in line.split(" "))
    server = make_goldens.LineServer(lines, 0.05)
    try:
        program = ember_program(tmp_path, SEED)
        proc = subprocess.run(
            [sys.executable, program, "127.0.0.1", str(server.port), mode],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SEED_RUN_SECONDS": "4"},
        )
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    printed = tables(proc.stdout)
    assert [b for b, _ in printed] == list(range(len(printed))), "batch ids are 0, 1, 2, ..."
    assert len(printed) >= 2, proc.stdout
    if mode == "complete":
        # Every table holds every word seen so far; the last one all of them, with their totals.
        assert printed[-1][1] == dict(totals)
        for (_, before), (_, after) in zip(printed, printed[1:]):
            assert all(after.get(w, 0) >= n for w, n in before.items())
    else:
        # A word appears in a batch's table only when its count changed; its last one is its total.
        last = {}
        for _, counts in printed:
            for word, n in counts.items():
                assert n > last.get(word, 0), (word, n, last.get(word))
                last[word] = n
        assert last == dict(totals)


def test_seed_as_written_stops_on_ctrl_c(tmp_path):
    """awaitTermination() without a timeout, as the seed calls it: Ctrl-C stops the query and
    raises KeyboardInterrupt, as in PySpark; nothing hangs."""
    server = make_goldens.LineServer(make_goldens.WORD_LINES, 0.02)
    program = tmp_path / "seed.py"
    program.write_text(
        open(SEED, encoding="utf-8").read()
        .replace("from pyspark.", "from ember.pyspark.")
        .replace("query.awaitTermination(RUN_SECONDS)", "query.awaitTermination()"),
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, str(program), "127.0.0.1", str(server.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        server.close()
    assert "KeyboardInterrupt" in stderr, stderr
    assert tables(stdout)[-1][1]["hello"] > 0


@pytest.fixture
def spark():
    session = SparkSession.builder.appName("ember-sql-tests").master("local[2]").getOrCreate()
    yield session
    session.stop()


def text_stream(spark, directory, batches):
    for i, lines in enumerate(batches):
        path = os.path.join(str(directory), "part-%03d.txt" % i)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        stamp = time.time() - 100 + i
        os.utime(path, (stamp, stamp))
    return spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(directory))


def test_builder_get_or_create_returns_the_active_session(spark):
    assert SparkSession.builder.getOrCreate() is spark
    assert SparkSession.getActiveSession() is spark
    assert spark.readStream is not None and spark.streams.active == []


def test_columns_are_named_as_pyspark_names_them(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [["1"]])
    assert lines.columns == ["value"] and lines.isStreaming
    assert lines.dtypes == [("value", "string")]
    df = lines.select(
        F.col("value"),
        F.lit(1),
        (F.col("value") == "a"),
        (F.col("value") != "a"),
        F.split(lines.value, " "),
        F.lower("value"),
        F.length(lines["value"]) + 1,
        F.col("value").cast("int"),
        ~(F.length("value") > 2) & F.col("value").isNotNull(),
    )
    assert df.columns == [
        "value",
        "1",
        "(value = a)",
        "(NOT (value = a))",
        "split(value,  , -1)",
        "lower(value)",
        "(length(value) + 1)",
        "CAST(value AS INT)",
        "((NOT (length(value) > 2)) AND (value IS NOT NULL))",
    ]
    assert repr(F.col("x").alias("y")) == "Column<'y'>"
    numbers = lines.selectExpr("CAST(value AS BIGINT) AS n")
    counts = numbers.groupBy("n").agg(F.count("*"), F.sum("n"), F.avg("n"), F.max("n"), F.min(numbers.n))
    assert counts.columns == ["n", "count(1)", "sum(n)", "avg(n)", "max(n)", "min(n)"]


def test_foreach_batch_gets_dataframes_with_rows(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [["a b", "b"], ["c"], ["b c d"]])
    words = lines.select(F.explode(F.split("value", " ")).alias("word"))
    seen = []

    def handle(batch_df, batch_id):
        rows = sorted(batch_df.collect())
        seen.append((batch_id, batch_df.count(), rows, batch_df.columns))

    query = words.groupBy("word").count().writeStream.outputMode("update").foreachBatch(handle).trigger(availableNow=True).start()
    assert query.awaitTermination(60) is True
    assert [s[0] for s in seen] == [0, 1, 2]
    assert seen[0][1:] == (2, [Row(word="a", count=1), Row(word="b", count=2)], ["word", "count"])
    assert seen[1][2] == [Row(word="c", count=1)]
    assert seen[2][2] == [Row(word="b", count=3), Row(word="c", count=2), Row(word="d", count=1)]
    row = seen[2][2][0]
    assert row.word == "b" and row["count"] == 3 and row.asDict() == {"word": "b", "count": 3}
    assert repr(row) == "Row(word='b', count=3)"


def test_foreach_batch_show_and_pandas(spark, tmp_path, capfd):
    lines = text_stream(spark, tmp_path, [["x", "yy", "x"]])
    frames = []

    def handle(batch_df, batch_id):
        batch_df.show()
        frames.append(batch_df)

    query = lines.groupBy("value").count().writeStream.outputMode("complete").foreachBatch(handle).trigger(once=True).start()
    query.awaitTermination()
    out = capfd.readouterr().out
    rows = sorted(out.strip().split("\n")[3:5])
    assert out.startswith("+-----+-----+\n|value|count|\n+-----+-----+\n"), out
    assert rows == ["|    x|    2|", "|   yy|    1|"], out
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = frames[0].toPandas().sort_values("value").reset_index(drop=True)
    assert isinstance(frame, pandas.DataFrame)
    assert frame.to_dict("list") == {"value": ["x", "yy"], "count": [2, 1]}


def test_memory_sink_is_a_table_for_spark_sql(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [["3", "4"], ["5"]])
    numbers = lines.selectExpr("CAST(value AS BIGINT) AS n").where("n > 3")
    query = numbers.writeStream.format("memory").queryName("numbers").outputMode("append").trigger(availableNow=True).start()
    query.awaitTermination()
    assert query.name == "numbers" and not query.isActive
    assert sorted(spark.sql("SELECT n * 2 AS twice FROM numbers").collect()) == [Row(twice=8), Row(twice=10)]


def test_errors_are_pysparks(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [["a"]])
    with pytest.raises(AnalysisException) as unresolved:
        lines.select("nope")
    assert "[UNRESOLVED_COLUMN.WITH_SUGGESTION]" in str(unresolved.value)
    assert unresolved.value.getErrorClass() == "UNRESOLVED_COLUMN.WITH_SUGGESTION"
    with pytest.raises(AnalysisException, match="Complete output mode not supported when there are no streaming aggregations"):
        lines.writeStream.outputMode("complete").format("console").start()
    with pytest.raises(AnalysisException, match="Append output mode not supported"):
        lines.groupBy("value").count().writeStream.format("console").start()
    with pytest.raises(IllegalArgumentException, match="Unknown output mode"):
        lines.writeStream.outputMode("sideways").format("console").start()
    with pytest.raises(AnalysisException, match="Queries with streaming sources must be executed with writeStream.start"):
        lines.collect()
    with pytest.raises(PySparkTypeError):
        lines.select(3)
    with pytest.raises(PySparkTypeError, match=r"\[NOT_COLUMN_OR_STR\] Argument `gapDuration` should be a Column or str, got int"):
        F.session_window("value", 5)
    with pytest.raises(TypeError):
        F.lit(object())
    with pytest.raises(ValueError):
        bool(F.col("a") == 1)
    with pytest.raises(ValueError, match="continuous"):
        lines.writeStream.trigger(continuous="1 second")


def test_failing_foreach_batch_raises_streaming_query_exception(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [["a"], ["b"]])

    def fail(batch_df, batch_id):
        raise ZeroDivisionError("no batch %d for you" % batch_id)

    query = lines.writeStream.foreachBatch(fail).start()
    with pytest.raises(StreamingQueryException) as failed:
        query.awaitTermination(60)
    assert "ZeroDivisionError: no batch 0 for you" in str(failed.value)
    assert "no batch 0 for you" in str(query.exception())
    assert not query.isActive


def test_await_termination_timeout_and_stop(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [["a"]])
    query = lines.writeStream.format("memory").queryName("held").trigger(processingTime="200 milliseconds").start()
    assert query.awaitTermination(0.3) is False
    assert query.isActive and spark.streams.active[0].id == query.id
    assert spark.streams.get(query.id).runId == query.runId
    query.stop()
    assert query.awaitTermination(5) is True
    assert not query.isActive and spark.streams.active == []


def test_file_sink_with_checkpoint_resumes_where_it_left_off(spark, tmp_path):
    """A json file sink with checkpointLocation: a second run on the same checkpoint reads only
    the new files and continues the batch ids; every row is in the sink's log once."""
    import json

    source, out, checkpoint = tmp_path / "in", tmp_path / "out", tmp_path / "checkpoint"
    source.mkdir()

    def run():
        lines = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(source))
        query = lines.selectExpr("value", "length(value) AS len").writeStream.trigger(availableNow=True).start(
            path=str(out), format="json", checkpointLocation=str(checkpoint)
        )
        query.awaitTermination(60)
        return query

    text_stream(spark, source, [["a", "bb"], ["ccc"]])
    first = run()
    for i, lines in enumerate([["dddd"], ["e", "ff"]], start=2):
        path = source / ("part-%03d.txt" % i)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    second = run()
    assert first.id == second.id and first.runId != second.runId
    log = sorted(int(p.name) for p in (out / "_spark_metadata").iterdir())
    assert log == [0, 1, 2, 3]
    rows = []
    for batch in log:
        entries = (out / "_spark_metadata" / str(batch)).read_text(encoding="utf-8").split("\n")
        assert entries[0] == "v1"
        for entry in filter(None, entries[1:]):
            path = json.loads(entry)["path"][len("file://"):]
            rows += [json.loads(line) for line in open(path, encoding="utf-8").read().splitlines()]
    assert sorted(r["value"] for r in rows) == ["a", "bb", "ccc", "dddd", "e", "ff"]
    assert all(r["len"] == len(r["value"]) for r in rows)


def test_aggregation_resumes_from_its_checkpointed_state(spark, tmp_path):
    """A word count in complete mode with checkpointLocation: a second run counts on from the
    first run's state; a changed aggregation on that checkpoint is refused."""
    source, checkpoint = tmp_path / "in", tmp_path / "checkpoint"
    source.mkdir()
    tables = []

    def run(df):
        query = (
            df.writeStream.outputMode("complete")
            .foreachBatch(lambda batch, batch_id: tables.append((batch_id, sorted(batch.collect()))))
            .option("checkpointLocation", str(checkpoint))
            .trigger(availableNow=True)
            .start()
        )
        assert query.awaitTermination(60)

    def lines():
        return spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(source))

    def word_counts():
        return lines().select(F.explode(F.split("value", " ")).alias("word")).groupBy("word").count()

    text_stream(spark, source, [["a b", "a"]])
    run(word_counts())
    (source / "part-001.txt").write_text("b c\n", encoding="utf-8")
    run(word_counts())
    assert tables == [
        (0, [Row(word="a", count=2), Row(word="b", count=1)]),
        (1, [Row(word="a", count=2), Row(word="b", count=2), Row(word="c", count=1)]),
    ]
    with pytest.raises(AnalysisException, match="stateStoreSave"):
        run(lines().groupBy("value").agg(F.count("*"), F.max("value")))


def test_jdbc_sink_writes_each_batch_once_into_sqlite(spark, tmp_path):
    """format("jdbc") with url and dbtable: ember's database sink, each batch and its record in
    one transaction; a second run on the same checkpoint writes only the new rows."""
    import sqlite3

    source, checkpoint, db = tmp_path / "in", tmp_path / "checkpoint", tmp_path / "out.db"
    source.mkdir()
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE words (value TEXT, len BIGINT)")

    def run():
        lines = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(source))
        query = (
            lines.selectExpr("value", "length(value) AS len")
            .writeStream.format("jdbc")
            .option("url", "sqlite://%s" % db)
            .option("dbtable", "words")
            .option("checkpointLocation", str(checkpoint))
            .trigger(availableNow=True)
            .start()
        )
        assert query.awaitTermination(60)

    text_stream(spark, source, [["a", "bb"], ["ccc"]])
    run()
    (source / "part-002.txt").write_text("dddd\n", encoding="utf-8")
    run()
    with sqlite3.connect(db) as connection:
        rows = sorted(connection.execute("SELECT value, len FROM words").fetchall())
    assert rows == [("a", 1), ("bb", 2), ("ccc", 3), ("dddd", 4)]
    with pytest.raises(AnalysisException, match="does not support Complete output mode"):
        lines = spark.readStream.format("text").load(str(source))
        lines.groupBy("value").count().writeStream.outputMode("complete").format("jdbc").option("url", "sqlite://%s" % db).option("dbtable", "words").start()


def test_progress_reports_have_sparks_fields(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [["a b", "b"], ["c"], ["a a a"]])
    counts = lines.select(F.explode(F.split("value", " ")).alias("word")).groupBy("word").count()
    query = counts.writeStream.format("memory").queryName("progress_counts").outputMode("complete").trigger(availableNow=True).start()
    assert query.awaitTermination(60)
    reports = query.recentProgress
    assert [r["batchId"] for r in reports] == [0, 1, 2]
    assert [r["numInputRows"] for r in reports] == [2, 1, 1]
    assert [r["stateOperators"][0]["numRowsTotal"] for r in reports] == [2, 3, 3]
    assert [r["sink"]["numOutputRows"] for r in reports] == [2, 3, 3]
    last = query.lastProgress
    assert last == reports[-1]
    assert last["id"] == query.id and last["runId"] == query.runId and last["name"] == "progress_counts"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", last["timestamp"])
    assert set(last["durationMs"]) >= {"addBatch", "triggerExecution"}
    assert last["sources"][0]["numInputRows"] == 1 and last["processedRowsPerSecond"] > 0


def test_rate_source_rows_and_timestamps(spark):
    import datetime

    rate = spark.readStream.format("rate").option("rowsPerSecond", 100).load()
    assert rate.dtypes == [("timestamp", "timestamp"), ("value", "bigint")]
    even = rate.where(rate.value % 2 == 0).select("timestamp", (rate.value * 10).alias("ten"))
    query = even.writeStream.format("memory").queryName("rate_even").trigger(processingTime="100 milliseconds").start()
    time.sleep(1.0)
    query.stop()
    rows = sorted(spark.sql("SELECT * FROM rate_even").collect(), key=lambda r: r.ten)
    assert len(rows) >= 25
    assert [r.ten for r in rows] == list(range(0, 20 * len(rows), 20))
    assert all(isinstance(r.timestamp, datetime.datetime) for r in rows)
    assert (rows[1].timestamp - rows[0].timestamp) == datetime.timedelta(milliseconds=20)


def test_when_otherwise_names_and_values(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [["1", "5", "x"]])
    n = F.col("value").cast("int")
    size = F.when(n > 3, "big").when(n > 0, "small").otherwise("none")
    assert repr(size) == "Column<'CASE WHEN (CAST(value AS INT) > 3) THEN big WHEN (CAST(value AS INT) > 0) THEN small ELSE none END'>"
    seen = []
    query = lines.select("value", size.alias("size"), F.when(n > 3, n)).writeStream.foreachBatch(
        lambda df, i: seen.extend(df.collect())).trigger(once=True).start()
    assert query.awaitTermination(60)
    assert sorted(tuple(r) for r in seen) == [("1", "small", None), ("5", "big", 5), ("x", "none", None)]
    with pytest.raises(IllegalArgumentException):
        size.otherwise("again")


def test_process_all_available_waits_for_the_files_there(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [["a", "b"], ["c"]])
    query = lines.writeStream.format("memory").queryName("available").trigger(processingTime="50 milliseconds").start()
    query.processAllAvailable()
    assert sorted(r.value for r in spark.sql("SELECT value FROM available").collect()) == ["a", "b", "c"]
    (tmp_path / "part-009.txt").write_text("d\ne\n", encoding="utf-8")
    query.processAllAvailable()
    assert sorted(r.value for r in spark.sql("SELECT value FROM available").collect()) == ["a", "b", "c", "d", "e"]
    assert query.isActive
    query.stop()


def test_union_of_two_file_streams(spark, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    text_stream(spark, a, [["x y"], ["y"]])
    both = text_stream(spark, a, []).union(text_stream(spark, b, [["x"], ["z"]]))
    words = both.select(F.explode(F.split("value", " ")).alias("word"))
    tables = []
    query = words.groupBy("word").count().writeStream.outputMode("complete").foreachBatch(
        lambda df, i: tables.append(sorted(df.collect()))).trigger(availableNow=True).start()
    assert query.awaitTermination(60)
    assert tables[-1] == [Row(word="x", count=2), Row(word="y", count=2), Row(word="z", count=1)]


def test_apply_in_pandas_with_state_timeouts_and_errors(spark, tmp_path):
    """applyInPandasWithState beyond the PySpark goldens (golden-eventtime/state_*): a
    processing-time timeout, the state across micro-batches, and the function's errors as
    PySpark raises them, failing the query."""
    import pandas as pd

    from ember.pyspark.sql.streaming.state import GroupStateTimeout

    seen = []

    def counted(key, pdfs, state):
        if state.hasTimedOut:
            seen.append(("timeout", key[0], state.get[0], sum(len(p) for p in pdfs)))
            state.remove()
            yield pd.DataFrame({"word": [key[0]], "count": [-1]})
            return
        with pytest.raises(RuntimeError, match="Cannot set timeout timestamp without enabling event time timeout"):
            state.setTimeoutTimestamp(1)
        with pytest.raises(RuntimeError, match="Cannot get event time watermark timestamp without setting watermark"):
            state.getCurrentWatermarkMs()
        total = (state.get[0] if state.exists else 0) + sum(len(p) for p in pdfs)
        state.update((total,))
        state.setTimeoutDuration(300)
        yield pd.DataFrame({"count": [total], "word": [key[0]]})

    lines = text_stream(spark, tmp_path, [["a", "b", "a"], ["a"]])
    rows = lines.groupBy("value").applyInPandasWithState(
        counted, "word string, count long", "count long", "update", GroupStateTimeout.ProcessingTimeTimeout
    )
    query = rows.writeStream.format("memory").queryName("timed").outputMode("update").trigger(processingTime="50 milliseconds").start()
    deadline = time.time() + 30
    while len(seen) < 2 and time.time() < deadline:
        time.sleep(0.05)
    query.stop()
    assert query.exception() is None
    assert sorted(seen) == [("timeout", "a", 3, 0), ("timeout", "b", 1, 0)]
    got = sorted(tuple(r) for r in spark.sql("SELECT word, count FROM timed").collect())
    # Columns by name; the timeout rows' count is -1.
    assert ("a", 2) in got and ("a", 3) in got and ("b", 1) in got and ("a", -1) in got and ("b", -1) in got

    def absent(key, pdfs, state):
        state.get
        yield pd.DataFrame({"word": [key[0]], "count": [1]})

    failing = lines.groupBy("value").applyInPandasWithState(absent, "word string, count long", "count long", "append", "NoTimeout")
    query = failing.writeStream.format("console").trigger(availableNow=True).start()
    with pytest.raises(StreamingQueryException, match=r"\[STATE_NOT_EXISTS\] State is either not defined or has already been removed"):
        query.awaitTermination(60)

    def missing(key, pdfs, state):
        yield pd.DataFrame({"word": [key[0]]})

    wrong = lines.groupBy("value").applyInPandasWithState(missing, "word string, count long", "count long", "append", "NoTimeout")
    query = wrong.writeStream.format("console").trigger(availableNow=True).start()
    with pytest.raises(StreamingQueryException, match="Column names of the returned pandas.DataFrame do not match specified schema. Missing: count"):
        query.awaitTermination(60)
    with pytest.raises(IllegalArgumentException, match="The output mode of function should be append or update"):
        lines.groupBy("value").applyInPandasWithState(missing, "word string", "count long", "complete", "NoTimeout")
    with pytest.raises(AssertionError):
        lines.groupBy("value").applyInPandasWithState(missing, "word string", "count long", "append", "Sometimes")


def test_csv_stream_with_a_ddl_schema(spark, tmp_path):
    text_stream(spark, tmp_path, [["word,n", "dog,1", "cat,x"], ["word,n", "dog,4"]])
    rows = spark.readStream.option("maxFilesPerTrigger", 1).csv(str(tmp_path), schema="word string, n long", header=True)
    assert rows.dtypes == [("word", "string"), ("n", "bigint")]
    query = rows.writeStream.format("memory").queryName("csv_rows").trigger(availableNow=True).start()
    query.awaitTermination(60)
    got = sorted(tuple(r) for r in spark.sql("SELECT word, n FROM csv_rows").collect())
    assert got == [("cat", None), ("dog", 1), ("dog", 4)]
    with pytest.raises(IllegalArgumentException, match="Schema must be specified when creating a streaming source DataFrame"):
        spark.readStream.json(str(tmp_path))
    with pytest.raises(PySparkTypeError):
        spark.readStream.schema(["word"])


def test_streaming_query_listener_hears_start_progress_and_end(spark, tmp_path):
    from ember.pyspark.sql.streaming import StreamingQueryListener

    heard = []

    class Listener(StreamingQueryListener):
        def onQueryStarted(self, event):
            heard.append(("started", event.name, event.id == query_ids[-1] if query_ids else None))

        def onQueryProgress(self, event):
            heard.append(("progress", event.progress.batchId, event.progress.numInputRows, '"batchId"' in event.progress.json))

        def onQueryTerminated(self, event):
            heard.append(("terminated", event.exception is not None))

    query_ids = []
    listener = Listener()
    spark.streams.addListener(listener)
    lines = text_stream(spark, tmp_path, [["a", "b"], ["c"]])
    query = lines.writeStream.format("memory").queryName("listened").trigger(availableNow=True).start()
    query_ids.append(query.id)
    query.awaitTermination(60)
    assert heard == [("started", "listened", None), ("progress", 0, 2, True), ("progress", 1, 1, True), ("terminated", False)]
    spark.streams.removeListener(listener)
    query = lines.writeStream.format("memory").queryName("unheard").trigger(availableNow=True).start()
    query.awaitTermination(60)
    assert len(heard) == 4
    with pytest.raises(PySparkTypeError):
        spark.streams.addListener(object())


def test_from_json_gives_structs(spark, tmp_path):
    lines = text_stream(spark, tmp_path, [['{"word": "dog", "n": 2}', "not json"]])
    parsed = lines.select(F.from_json(lines.value, "word string, n long").alias("s"))
    assert parsed.dtypes == [("s", "struct<word:string,n:bigint>")]
    fields = parsed.select(parsed.s.getField("word").alias("word"), parsed.s["n"].alias("n"))
    query = fields.writeStream.format("memory").queryName("json_fields").trigger(availableNow=True).start()
    query.awaitTermination(60)
    got = sorted(spark.sql("SELECT word, n FROM json_fields").collect(), key=lambda r: (r.word is not None, r.word))
    assert [tuple(r) for r in got] == [(None, None), ("dog", 2)]
    with pytest.raises(PySparkTypeError):
        F.from_json(lines.value, ["word"])


def test_status_explain_and_await_any_termination(spark, tmp_path, capfd):
    lines = text_stream(spark, tmp_path, [["a"]])
    query = lines.writeStream.format("memory").queryName("status_held").trigger(processingTime="50 milliseconds").start()
    query.processAllAvailable()
    status = query.status
    assert set(status) == {"message", "isDataAvailable", "isTriggerActive"}
    assert status["message"] in ("Waiting for data to arrive", "Waiting for next trigger", "Processing new data")
    spark.streams.active[0].explain()
    assert "== Physical Plan ==" in capfd.readouterr().out
    assert spark.streams.awaitAnyTermination(0.1) is False
    query.stop()
    assert spark.streams.awaitAnyTermination(5) is True
    assert query.status == {"message": "Stopped", "isDataAvailable": False, "isTriggerActive": False}
    spark.streams.resetTerminated()
    assert spark.streams.awaitAnyTermination(0.05) is False


def test_struct_type_schemas_as_pyspark_writes_them(spark, tmp_path):
    from ember.pyspark.sql.types import ArrayType, LongType, StringType, StructField, StructType

    schema = StructType([StructField("word", StringType()), StructField("n", LongType())])
    assert schema.simpleString() == "struct<word:string,n:bigint>"
    assert StructType().add("word", StringType()).add("tags", ArrayType(StringType())).names == ["word", "tags"]
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    text_stream(spark, csv_dir, [["dog,3"]])
    rows = spark.readStream.schema(schema).csv(str(csv_dir))
    assert rows.dtypes == [("word", "string"), ("n", "bigint")]
    json_dir = tmp_path / "json"
    json_dir.mkdir()
    lines = text_stream(spark, json_dir, [['{"word": "owl", "n": 4}']])
    parsed = lines.select(F.from_json(lines.value, schema).alias("s"))
    assert parsed.dtypes == [("s", "struct<word:string,n:bigint>")]
    query = parsed.select(parsed.s["word"].alias("word"), parsed.s["n"].alias("n")).writeStream.format("memory").queryName("struct_typed").trigger(availableNow=True).start()
    query.awaitTermination(60)
    assert [tuple(r) for r in spark.sql("SELECT word, n FROM struct_typed").collect()] == [("owl", 4)]
    with pytest.raises(TypeError):
        StructField("x", "string")
