#!/usr/bin/env python3
"""Golden console outputs and progress reports of event-time Spark Structured Streaming queries,
made with the real PySpark (windows, watermarks, late data).

Run from anywhere (it writes next to itself):

    PYSPARK_PYTHON=/work/main/bench/.work/venv/bin/python \
        /work/main/bench/.work/venv/bin/python crates/ember-sql/tests/golden-eventtime/make_goldens.py

The same design as ../golden/make_goldens.py: every case runs in its own subprocess (the same
python, env TZ=UTC) with its own local SparkSession (session time zone UTC); the subprocess's
stdout is what the console sink printed. After the query ends, the subprocess also writes the
query's progress reports (`query.recentProgress`, reduced to the fields below) as JSON to a path
the parent passes; the parent saves it as `<case>.progress.json`.

A case may have a key "static" (a list of JSON objects): the parent then writes them as JSON lines
to `<case>.static.jsonl` here (kept as test data), and the child puts
`static = spark.read.json(<that path>)` in the query's scope (stream-static joins).

A case may also have a key "input2" (batches of lines, like "input"): the parent writes them to a
second temporary directory the same way (one file per batch, modified 1 s apart), saves them as
`<case>.input2.json`, and the child puts
`lines2 = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(dir2)` in scope
(stream-stream joins; micro-batch N reads file N of each directory).

Options: `--case NAME` (repeatable) runs only those cases; `--no-checker` skips
checker_errors.json; `--only-checker` makes only checker_errors.json (no console case, cases.json
untouched). checker_errors.json is made only on a full run or with `--only-checker`, so that
`--case` runs leave it alone.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# The Spark programming guide's late-data example; lines "YYYY-MM-DD HH:MM:SS,word".
GUIDE = [
    ["2017-04-23 12:07:00,dog", "2017-04-23 12:08:00,owl"],
    ["2017-04-23 12:14:00,dog", "2017-04-23 12:09:00,cat"],
    [
        "2017-04-23 12:15:00,cat",
        "2017-04-23 12:08:00,dog",
        "2017-04-23 12:13:00,owl",
        "2017-04-23 12:21:00,owl",
    ],
    ["2017-04-23 12:04:00,donkey", "2017-04-23 12:17:00,owl"],
]
GUIDE_PLUS = GUIDE + [["2017-04-23 12:40:00,cat"]]
# A 5th batch whose donkey arrives when the late-events watermark is already 12:11.
GUIDE_LATE = GUIDE + [["2017-04-23 12:04:00,donkey", "2017-04-23 12:26:00,cat"]]
GUIDE_END = GUIDE + [["2017-04-23 12:59:00,end"]]
# Duplicates: 12:07 dog again (an exact duplicate of batch 0's row), 12:30 dog, and emu twice.
DEDUP = GUIDE + [
    [
        "2017-04-23 12:07:00,dog",
        "2017-04-23 12:30:00,dog",
        "2017-04-23 12:30:00,emu",
        "2017-04-23 12:30:00,emu",
    ]
]
# Unparseable timestamps (to_timestamp gives null).
NULLS = [
    ["2017-04-23 12:07:00,dog", "not a time,cat", "2017-04-23 12:08:30,owl"],
    ["2017-04-23 12:14:00,dog", ",empty"],
    ["2017-04-23 12:31:00,owl"],
]

EVENTS = (
    'lines.select(to_timestamp(split(lines.value, ",")[0]).alias("timestamp"), '
    'split(lines.value, ",")[1].alias("word"))'
)
# The static side of the stream-static joins (read with spark.read.json, which infers the
# fields in name order: kind, word). donkey has no match; carp matches no event.
STATIC = [
    {"kind": "pet", "word": "dog"},
    {"kind": "bird", "word": "owl"},
    {"kind": "pet", "word": "cat"},
    {"kind": "fish", "word": "carp"},
]
# Session windows (gap 5 minutes). 12:08 a is exactly 5 minutes after 12:03 a (do sessions that
# touch at the boundary merge?); 12:06 a lands inside a's session; 12:10 b is late for some
# watermarks.
SESSIONS = [
    ["2017-04-23 12:00:00,a", "2017-04-23 12:03:00,a", "2017-04-23 12:01:00,b"],
    ["2017-04-23 12:08:00,a", "2017-04-23 12:20:00,b", "2017-04-23 12:02:00,c"],
    ["2017-04-23 12:06:00,a", "2017-04-23 12:40:00,c"],
    ["2017-04-23 12:10:00,b", "2017-04-23 12:59:00,a"],
]
SESSION_COUNT = '.groupBy(session_window("timestamp", "5 minutes"), "word").count()'
SESSION_SQL = (
    "SELECT session_window(timestamp, '5 minutes') AS session, word, count(*) AS n "
    "FROM events GROUP BY session_window(timestamp, '5 minutes'), word"
)
# Session windows with a gap per row (Spark's dynamic gap): 2 minutes for a (12:06 a's session
# ends where 12:08 a's starts), 20 for b, 0 seconds for c (not positive: c's rows are left out);
# the SQL form gives c no gap at all (null: left out too).
SESSION_DYNAMIC = (
    '.groupBy(session_window("timestamp", when(col("word") == "a", "2 minutes")'
    '.when(col("word") == "b", "20 minutes").when(col("word") == "c", "0 seconds")), "word").count()'
)
SESSION_DYNAMIC_SQL = (
    "SELECT session_window(timestamp, CASE WHEN word = 'a' THEN '2 minutes' WHEN word = 'b' THEN '20 minutes' END) AS session, "
    "word, count(*) AS n FROM events "
    "GROUP BY session_window(timestamp, CASE WHEN word = 'a' THEN '2 minutes' WHEN word = 'b' THEN '20 minutes' END), word"
)
# Stream-stream joins: `lines` reads IMPRESSIONS and `lines2` reads CLICKS (one file per batch each,
# so micro-batch N reads batch N of both). a9 has no impression; a4 gets no click.
IMPRESSIONS = [
    ["2017-04-23 12:00:00,a1", "2017-04-23 12:01:00,a2"],
    ["2017-04-23 12:05:00,a3", "2017-04-23 12:10:00,a4"],
    ["2017-04-23 12:30:00,a5"],
    ["2017-04-23 13:30:00,a6"],
]
CLICKS = [
    ["2017-04-23 12:02:00,a1"],
    ["2017-04-23 12:20:00,a3", "2017-04-23 12:04:00,a9"],
    ["2017-04-23 12:31:00,a5", "2017-04-23 12:50:00,a2"],
    ["2017-04-23 13:31:00,a6"],
]
IMPRESSIONS_DF = (
    'impressions = lines.select(to_timestamp(split(lines.value, ",")[0]).alias("impressionTime"), '
    'split(lines.value, ",")[1].alias("impressionAdId"))'
)
CLICKS_DF = (
    'clicks = lines2.select(to_timestamp(split(lines2.value, ",")[0]).alias("clickTime"), '
    'split(lines2.value, ",")[1].alias("clickAdId"))'
)
STREAMS = IMPRESSIONS_DF + "\n" + CLICKS_DF + "\n"
SS_WATERMARKED = (
    'impressions.withWatermark("impressionTime", "10 minutes")'
    '.join(clicks.withWatermark("clickTime", "20 minutes"), expr("clickAdId = impressionAdId AND '
    'clickTime >= impressionTime AND clickTime <= impressionTime + interval 15 minutes")'
)
SLIDING = (
    EVENTS
    + '.withWatermark("timestamp", "10 minutes")'
    '.groupBy(window("timestamp", "10 minutes", "5 minutes"), "word").count()'
)
SLIDING_SQL = (
    "SELECT window(timestamp, '10 minutes', '5 minutes') AS window, word, count(*) AS count "
    "FROM events GROUP BY window(timestamp, '10 minutes', '5 minutes'), word"
)
TUMBLING_SQL = (
    "SELECT window(timestamp, '10 minutes') AS window, count(*) AS n, max(word) AS last "
    "FROM events GROUP BY window(timestamp, '10 minutes')"
)

# applyInPandasWithState (arbitrary stateful processing). A source may define Python functions
# before its last line (the query); see build(). The scope holds pyspark.sql.functions.*, whose
# min/max/sum/count/first/last shadow the builtins, so these functions call none of those names
# (local variables named count/first/last are fine). Timestamps arrive as naive pandas Timestamps
# in the session time zone (UTC); `.value` is nanoseconds since the epoch.
COUNT_WORDS = (
    "import pandas as pd\n"
    "def count_words(key, pdfs, state):\n"
    "    total = state.get[0] if state.exists else 0\n"
    "    for pdf in pdfs:\n"
    "        total += len(pdf)\n"
    "    state.update((total,))\n"
    '    yield pd.DataFrame({"word": [key[0]], "count": [total]})\n'
)


def count_words_query(operator_mode, timeout="NoTimeout"):
    return (
        COUNT_WORDS + EVENTS + '.groupBy("word").applyInPandasWithState('
        'count_words, "word string, count long", "count long", "%s", "%s")' % (operator_mode, timeout)
    )


# Sessions per word: (count, first, last) in state, first/last as epoch ms; the event-time timeout is
# `last + GAP`, never below the watermark (setTimeoutTimestamp refuses a timestamp before it). A
# timed-out key yields its session and drops its state. With `open_row`, a key with data also
# yields (word, count, -1, -1).
def sessions_source(name, gap_ms, open_row):
    return (
        "import pandas as pd\n"
        "def " + name + "(key, pdfs, state):\n"
        "    if state.hasTimedOut:\n"
        "        count, first, last = state.get\n"
        "        state.remove()\n"
        '        yield pd.DataFrame({"word": [key[0]], "count": [count], "first": [first], "last": [last]})\n'
        "    else:\n"
        "        count, first, last = state.get if state.exists else (0, None, None)\n"
        "        for pdf in pdfs:\n"
        '            lo = pdf["timestamp"].min().value // 1000000\n'
        '            hi = pdf["timestamp"].max().value // 1000000\n'
        "            count += len(pdf)\n"
        "            first = lo if first is None or lo < first else first\n"
        "            last = hi if last is None or hi > last else last\n"
        "        state.update((count, first, last))\n"
        "        timeout = last + %d\n"
        "        watermark = state.getCurrentWatermarkMs()\n"
        "        state.setTimeoutTimestamp(timeout if timeout > watermark else watermark)\n" % gap_ms
        + (
            '        yield pd.DataFrame({"word": [key[0]], "count": [count], "first": [-1], "last": [-1]})\n'
            if open_row else ""
        )
    )


SESSION_OUT = '"word string, count long, first long, last long", "count long, first long, last long"'
STATE_SESSIONS = (
    sessions_source("sessions", 5 * 60 * 1000, False)
    + EVENTS + '.withWatermark("timestamp", "10 minutes").groupBy("word")'
    '.applyInPandasWithState(sessions, ' + SESSION_OUT + ', "append", "EventTimeTimeout")'
)
# Asked for with `last + 10 minutes`, but over GUIDE_LATE no key would ever time out (the last
# watermark is 12:16, the earliest such timeout dog's 12:24); with 1 minute dog times out (12:15).
STATE_TIMEOUT = (
    sessions_source("sessions", 1 * 60 * 1000, True)
    + EVENTS + '.withWatermark("timestamp", "10 minutes").groupBy("word")'
    '.applyInPandasWithState(sessions, ' + SESSION_OUT + ', "update", "EventTimeTimeout")'
)

CASES = [
    {
        "name": "guide_update",
        "mode": "update",
        "dataframe": SLIDING,
        "sql": None,
        "input": GUIDE,
    },
    {
        "name": "guide_append",
        "mode": "append",
        "dataframe": SLIDING,
        "sql": None,
        "input": GUIDE,
    },
    {
        "name": "tumbling_append",
        "mode": "append",
        "dataframe": (
            EVENTS
            + '.withWatermark("timestamp", "5 minutes")'
            '.groupBy(window("timestamp", "10 minutes"), "word").count()'
        ),
        "sql": None,
        "input": GUIDE_PLUS,
    },
    {
        "name": "guide_sql_update",
        "mode": "update",
        "dataframe": (
            "events = " + EVENTS + '.withWatermark("timestamp", "10 minutes")\n'
            'events.createOrReplaceTempView("events")\n'
            'spark.sql("' + SLIDING_SQL + '")'
        ),
        "sql": SLIDING_SQL,
        "input": GUIDE,
    },
    {
        "name": "agg_window_complete",
        "mode": "complete",
        "dataframe": (
            EVENTS
            + '.groupBy(window("timestamp", "10 minutes")).agg(count("*"), min("word"), max("word"))'
        ),
        "sql": None,
        "input": GUIDE,
    },
    {
        "name": "late_dropped_update",
        "mode": "update",
        "dataframe": SLIDING,
        "sql": None,
        "input": GUIDE_LATE,
    },
    {
        "name": "late_dropped_append",
        "mode": "append",
        "dataframe": SLIDING,
        "sql": None,
        "input": GUIDE_LATE,
    },
    {
        "name": "timestamp_key_append",
        "mode": "append",
        "dataframe": EVENTS + '.withWatermark("timestamp", "5 minutes").groupBy("timestamp").count()',
        "sql": None,
        "input": GUIDE_PLUS,
    },
    {
        "name": "nulls_and_start_update",
        "mode": "update",
        "dataframe": (
            EVENTS
            + '.withWatermark("timestamp", "10 minutes")'
            '.groupBy(window("timestamp", "10 minutes", "5 minutes", "2 minutes"), "word").count()'
        ),
        "sql": None,
        "input": NULLS,
    },
    {
        "name": "sliding_filter_append",
        "mode": "append",
        "dataframe": (
            EVENTS
            + '.withWatermark("timestamp", "1 minute")'
            '.groupBy(window("timestamp", "12 minutes", "5 minutes"), "word").count()'
        ),
        "sql": None,
        "input": GUIDE_END,
    },
    {
        "name": "watermark_stateless_append",
        "mode": "append",
        "dataframe": EVENTS + '.withWatermark("timestamp", "10 minutes").select("timestamp", "word")',
        "sql": None,
        "input": GUIDE,
    },
    {
        "name": "sql_tumbling_complete",
        "mode": "complete",
        "dataframe": (
            "events = " + EVENTS + "\n"
            'events.createOrReplaceTempView("events")\n'
            'spark.sql("' + TUMBLING_SQL + '")'
        ),
        "sql": TUMBLING_SQL,
        "input": GUIDE,
    },
    {
        "name": "join_inner_append",
        "mode": "append",
        "dataframe": EVENTS + '.join(static, "word")',
        "sql": None,
        "input": GUIDE,
        "static": STATIC,
    },
    {
        "name": "join_left_append",
        "mode": "append",
        "dataframe": EVENTS + '.join(static, "word", "left_outer")',
        "sql": None,
        "input": GUIDE,
        "static": STATIC,
    },
    {
        "name": "join_semi_append",
        "mode": "append",
        "dataframe": EVENTS + '.join(static, "word", "left_semi")',
        "sql": None,
        "input": GUIDE,
        "static": STATIC,
    },
    {
        "name": "join_anti_append",
        "mode": "append",
        "dataframe": EVENTS + '.join(static, "word", "left_anti")',
        "sql": None,
        "input": GUIDE,
        "static": STATIC,
    },
    {
        "name": "join_count_update",
        "mode": "update",
        "dataframe": EVENTS + '.join(static, "word").groupBy("kind").count()',
        "sql": None,
        "input": GUIDE,
        "static": STATIC,
    },
    {
        "name": "join_window_append",
        "mode": "append",
        "dataframe": (
            EVENTS
            + '.withWatermark("timestamp", "10 minutes").join(static, "word")'
            '.groupBy(window("timestamp", "10 minutes"), "kind").count()'
        ),
        "sql": None,
        "input": GUIDE_PLUS,
        "static": STATIC,
    },
    {
        "name": "dedup_append",
        "mode": "append",
        "dataframe": EVENTS + '.dropDuplicates(["word"])',
        "sql": None,
        "input": DEDUP,
    },
    {
        "name": "dedup_all_append",
        "mode": "append",
        "dataframe": EVENTS + ".dropDuplicates()",
        "sql": None,
        "input": DEDUP,
    },
    {
        "name": "dedup_watermark_append",
        "mode": "append",
        "dataframe": EVENTS + '.withWatermark("timestamp", "10 minutes").dropDuplicates(["word", "timestamp"])',
        "sql": None,
        "input": DEDUP,
    },
    {
        "name": "dedup_within_watermark_append",
        "mode": "append",
        "dataframe": EVENTS + '.withWatermark("timestamp", "10 minutes").dropDuplicatesWithinWatermark(["word"])',
        "sql": None,
        "input": DEDUP,
    },
    {
        "name": "dedup_update",
        "mode": "update",
        "dataframe": EVENTS + '.dropDuplicates(["word"])',
        "sql": None,
        "input": DEDUP,
    },
    {
        "name": "session_append",
        "mode": "append",
        "dataframe": EVENTS + '.withWatermark("timestamp", "10 minutes")' + SESSION_COUNT,
        "sql": None,
        "input": SESSIONS,
    },
    {
        "name": "session_complete",
        "mode": "complete",
        "dataframe": EVENTS + SESSION_COUNT,
        "sql": None,
        "input": SESSIONS,
    },
    {
        "name": "session_agg_append",
        "mode": "append",
        "dataframe": (
            EVENTS
            + '.withWatermark("timestamp", "10 minutes")'
            '.groupBy(session_window("timestamp", "5 minutes"), "word")'
            '.agg(count("*").alias("n"), min("timestamp").alias("first"), max("timestamp").alias("last"))'
        ),
        "sql": None,
        "input": SESSIONS,
    },
    {
        # The watermark follows its column through a rename, as Spark's follows the attribute.
        "name": "renamed_watermark_append",
        "mode": "append",
        "dataframe": (
            EVENTS + '.withWatermark("timestamp", "10 minutes")'
            '.select(col("timestamp").alias("time"), col("word").alias("animal"))'
            '.groupBy(window("time", "10 minutes"), "animal").count()'
        ),
        "sql": None,
        "input": GUIDE_LATE,
    },
    {
        "name": "session_dynamic_append",
        "mode": "append",
        "dataframe": EVENTS + '.withWatermark("timestamp", "10 minutes")' + SESSION_DYNAMIC,
        "sql": None,
        "input": SESSIONS,
    },
    {
        "name": "session_dynamic_sql_append",
        "mode": "append",
        "dataframe": (
            "events = " + EVENTS + '.withWatermark("timestamp", "10 minutes")\n'
            'events.createOrReplaceTempView("events")\n'
            'spark.sql("' + SESSION_DYNAMIC_SQL + '")'
        ),
        "sql": SESSION_DYNAMIC_SQL,
        "input": SESSIONS,
    },
    {
        "name": "session_sql_append",
        "mode": "append",
        "dataframe": (
            "events = " + EVENTS + '.withWatermark("timestamp", "10 minutes")\n'
            'events.createOrReplaceTempView("events")\n'
            'spark.sql("' + SESSION_SQL + '")'
        ),
        "sql": SESSION_SQL,
        "input": SESSIONS,
    },
    {
        "name": "ss_inner_append",
        "mode": "append",
        "dataframe": STREAMS + SS_WATERMARKED + ")",
        "sql": None,
        "input": IMPRESSIONS,
        "input2": CLICKS,
    },
    {
        # A 5th batch with rows at or below the watermark (13:11 then) on both sides: Spark drops
        # them on arrival (numRowsDroppedByWatermark); 13:35 a6 still joins 13:30 a6.
        "name": "ss_inner_late_append",
        "mode": "append",
        "dataframe": STREAMS + SS_WATERMARKED + ")",
        "sql": None,
        "input": IMPRESSIONS + [["2017-04-23 12:10:00,a7", "2017-04-23 13:32:00,a8"]],
        "input2": CLICKS + [["2017-04-23 12:40:00,a5", "2017-04-23 13:35:00,a6"]],
    },
    {
        "name": "ss_left_outer_append",
        "mode": "append",
        "dataframe": STREAMS + SS_WATERMARKED + ', "left_outer")',
        "sql": None,
        "input": IMPRESSIONS,
        "input2": CLICKS,
    },
    {
        # Asked for as a refusal, but Spark 3.5 accepts it (see checker_errors.json's ss_full_outer).
        "name": "ss_full_outer_append",
        "mode": "append",
        "dataframe": STREAMS + SS_WATERMARKED + ', "full_outer")',
        "sql": None,
        "input": IMPRESSIONS,
        "input2": CLICKS,
    },
    {
        "name": "ss_inner_no_watermark_append",
        "mode": "append",
        "dataframe": STREAMS + 'impressions.join(clicks, expr("clickAdId = impressionAdId"))',
        "sql": None,
        "input": IMPRESSIONS,
        "input2": CLICKS,
    },
    {
        "name": "state_count_update",
        "mode": "update",
        "dataframe": count_words_query("update"),
        "sql": None,
        "input": GUIDE,
    },
    {
        "name": "state_count_append",
        "mode": "append",
        "dataframe": count_words_query("append"),
        "sql": None,
        "input": GUIDE,
    },
    {
        "name": "state_session_append",
        "mode": "append",
        "dataframe": STATE_SESSIONS,
        "sql": None,
        "input": SESSIONS,
    },
    {
        "name": "state_timeout_update",
        "mode": "update",
        "dataframe": STATE_TIMEOUT,
        "sql": None,
        "input": GUIDE_LATE,
    },
]

# Queries Spark refuses: each is built, then started (console sink, default trigger) and stopped.
# `raised_at` says whether the error came while building the DataFrame or from start().
CHECKER_INPUT = GUIDE
# `lines2` in every check; `lines` in the checks with an "input" key (the stream-stream joins).
CHECKER_INPUT2 = CLICKS[:2]
CHECKER_INPUT_SS = IMPRESSIONS[:2]
CHECKER = [
    {
        "name": "static_left_join_stream",
        "mode": "append",
        "dataframe": "static.join(" + EVENTS + ', "word", "left_outer")',
    },
    {
        "name": "stream_right_join_static",
        "mode": "append",
        "dataframe": EVENTS + '.join(static, "word", "right_outer")',
    },
    {
        "name": "stream_full_join_static",
        "mode": "append",
        "dataframe": EVENTS + '.join(static, "word", "full_outer")',
    },
    {
        "name": "static_full_join_stream",
        "mode": "append",
        "dataframe": "static.join(" + EVENTS + ', "word", "full_outer")',
    },
    {
        "name": "static_semi_join_stream",
        "mode": "append",
        "dataframe": "static.join(" + EVENTS + ', "word", "left_semi")',
    },
    {
        "name": "static_anti_join_stream",
        "mode": "append",
        "dataframe": "static.join(" + EVENTS + ', "word", "left_anti")',
    },
    {
        "name": "dedup_complete",
        "mode": "complete",
        "dataframe": EVENTS + '.dropDuplicates(["word"])',
    },
    {
        "name": "within_watermark_without_watermark",
        "mode": "append",
        "dataframe": EVENTS + '.dropDuplicatesWithinWatermark(["word"])',
    },
    {
        "name": "bad_delay",
        "mode": "append",
        "dataframe": EVENTS + '.withWatermark("timestamp", "10 mins").select("timestamp", "word")',
    },
    {
        "name": "negative_delay",
        "mode": "append",
        "dataframe": EVENTS + '.withWatermark("timestamp", "-1 minute")',
    },
    {
        "name": "watermark_on_string",
        "mode": "append",
        "dataframe": EVENTS + '.withWatermark("word", "1 minute")',
    },
    {
        "name": "session_update",
        "mode": "update",
        "dataframe": EVENTS + '.withWatermark("timestamp", "10 minutes")' + SESSION_COUNT,
    },
    {
        "name": "ss_left_outer_without_watermark",
        "mode": "append",
        "dataframe": STREAMS + 'impressions.join(clicks, expr("clickAdId = impressionAdId"), "left_outer")',
        "input": CHECKER_INPUT_SS,
    },
    {
        "name": "ss_full_outer",
        "mode": "append",
        "dataframe": STREAMS + SS_WATERMARKED + ', "full_outer")',
        "input": CHECKER_INPUT_SS,
    },
    {
        "name": "ss_inner_update_mode",
        "mode": "update",
        "dataframe": STREAMS + SS_WATERMARKED + ")",
        "input": CHECKER_INPUT_SS,
    },
    {
        "name": "ss_join_then_aggregate_complete",
        "mode": "complete",
        "dataframe": STREAMS + 'impressions.join(clicks, expr("clickAdId = impressionAdId")).groupBy("impressionAdId").count()',
        "input": CHECKER_INPUT_SS,
    },
    {
        "name": "state_append_in_update_mode",
        "mode": "update",
        "dataframe": count_words_query("append"),
    },
    {
        "name": "state_update_in_append_mode",
        "mode": "append",
        "dataframe": count_words_query("update"),
    },
    {
        "name": "state_update_in_complete_mode",
        "mode": "complete",
        "dataframe": count_words_query("update"),
    },
    {
        "name": "state_event_timeout_without_watermark",
        "mode": "append",
        "dataframe": count_words_query("append", "EventTimeTimeout"),
    },
    {
        "name": "state_bad_timeout",
        "mode": "update",
        "dataframe": count_words_query("update", "Sometimes"),
    },
    {
        "name": "state_bad_mode",
        "mode": "update",
        "dataframe": count_words_query("complete"),
    },
]

STATE_FIELDS = ["numRowsTotal", "numRowsUpdated", "numRowsRemoved", "numRowsDroppedByWatermark"]


def write_static(path, rows):
    """JSON lines: one json.dumps(row, sort_keys=True) per row, each followed by "\\n"."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def static_path(case):
    return os.path.join(HERE, case["name"] + ".static.jsonl")


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
        SparkSession.builder.appName("ember-goldens-eventtime")
        .master("local[2]")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # Default 100 is plenty for these short queries; made explicit so no report is dropped.
        .config("spark.sql.streaming.numRecentProgressUpdates", "1000")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def build(spark, lines, source, static=None, lines2=None):
    """Evaluates the case's query text; the value of its last line is the streaming DataFrame.
    With `static` (a JSON-lines path), `static = spark.read.json(path)` is in scope too; with
    `lines2` (a second streaming text DataFrame), so is `lines2`."""
    from pyspark.sql import functions as F

    scope = {name: getattr(F, name) for name in dir(F) if not name.startswith("_")}
    scope.update(spark=spark, lines=lines)
    if lines2 is not None:
        scope["lines2"] = lines2
    if static is not None:
        scope["static"] = spark.read.json(static)
    # Everything before the last line runs as one block, so that it may define functions (the
    # applyInPandasWithState cases); for the one-line statements of the other cases this is the
    # same as running them one by one.
    *statements, last = source.split("\n")
    exec("\n".join(statements), scope)
    return eval(last, scope)


def reduce_progress(progress):
    return {
        "batchId": progress["batchId"],
        "numInputRows": progress["numInputRows"],
        "eventTime": progress.get("eventTime") or None,
        "stateOperators": [
            {field: op.get(field) for field in STATE_FIELDS}
            for op in progress.get("stateOperators", [])
        ],
    }


def read_lines(spark, directory):
    return spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(directory)


def run_case(case, directory, progress_path, directory2=None):
    spark = session()
    lines = read_lines(spark, directory)
    lines2 = read_lines(spark, directory2) if directory2 else None
    df = build(spark, lines, case["dataframe"], static_path(case) if "static" in case else None, lines2)
    query = (
        df.writeStream.format("console")
        .outputMode(case["mode"])
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    progress = [reduce_progress(p) for p in query.recentProgress]
    spark.stop()
    with open(progress_path, "w", encoding="utf-8") as f:
        json.dump(progress, f, indent=2)
        f.write("\n")


def run_checker(directory, static, result_path, directory2, directory_ss):
    """`lines` reads `directory` (CHECKER_INPUT), or `directory_ss` (CHECKER_INPUT_SS) for a check
    with an "input" key; `lines2` reads `directory2` (CHECKER_INPUT2) in every check."""
    spark = session()
    results = []
    for check in CHECKER:
        if "input" in check:
            assert check["input"] == CHECKER_INPUT_SS, check["name"]
        lines = read_lines(spark, directory_ss if "input" in check else directory)
        lines2 = read_lines(spark, directory2)
        entry = dict(check)
        stage = "construction"
        try:
            df = build(spark, lines, check["dataframe"], static, lines2)
            stage = "start"
            query = df.writeStream.format("console").outputMode(check["mode"]).start()
            query.stop()
            entry["raised_at"] = None
            entry["error"] = None
        except Exception as e:  # AnalysisException, IllegalArgumentException, ...
            text = str(e)
            entry["raised_at"] = stage
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
    env["TZ"] = "UTC"
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
    parser.add_argument("--static")
    parser.add_argument("--dir")
    parser.add_argument("--dir2")
    parser.add_argument("--dir-ss")
    parser.add_argument("--progress")
    args = parser.parse_args()

    if args.child_case:
        run_case(next(c for c in CASES if c["name"] == args.child_case), args.dir, args.progress, args.dir2)
        return
    if args.child_checker:
        run_checker(args.dir, args.static, args.child_checker, args.dir2, args.dir_ss)
        return

    import pyspark

    print("PySpark", pyspark.__version__, file=sys.stderr)
    failed = False
    for case in CASES:
        if args.only_checker or (args.case and case["name"] not in args.case):
            continue
        if "static" in case:
            # Written here before the run and kept: it is the static table's test data.
            write_static(static_path(case), case["static"])
        with tempfile.TemporaryDirectory(prefix="ember-golden-et-") as directory, \
                tempfile.TemporaryDirectory(prefix="ember-golden-et2-") as directory2:
            write_inputs(directory, case["input"])
            extra = []
            if "input2" in case:
                # The second stream (`lines2`), written the same way.
                write_inputs(directory2, case["input2"])
                extra = ["--dir2", directory2]
            # Next to the input directory, not inside it (the file source would read it as input).
            progress = os.path.join(os.path.dirname(directory), os.path.basename(directory) + ".progress.json")
            started = time.time()
            proc = child(["--child-case", case["name"], "--dir", directory, "--progress", progress] + extra)
        out = proc.stdout.decode("utf-8")
        if (
            proc.returncode != 0
            or not out.startswith("-------------------------------------------\nBatch: 0\n")
            or not os.path.exists(progress)
        ):
            failed = True
            print("FAILED %s (rc %d)\n--- stdout\n%s\n--- stderr\n%s" % (
                case["name"], proc.returncode, out, proc.stderr.decode("utf-8", "replace")), file=sys.stderr)
            if os.path.exists(progress):
                os.remove(progress)
            continue
        with open(os.path.join(HERE, case["name"] + ".out"), "w", encoding="utf-8", newline="") as f:
            f.write(out)
        dump_json(case["name"] + ".input.json", case["input"])
        if "input2" in case:
            dump_json(case["name"] + ".input2.json", case["input2"])
        shutil.move(progress, os.path.join(HERE, case["name"] + ".progress.json"))
        with open(os.path.join(HERE, case["name"] + ".progress.json"), encoding="utf-8") as f:
            reports = json.load(f)
        print("%-22s %5.1f s, %d batches printed, %d progress reports, watermarks %s" % (
            case["name"], time.time() - started, out.count("\nBatch: ") + out.startswith("Batch: "),
            len(reports), [(r["eventTime"] or {}).get("watermark") for r in reports]), file=sys.stderr)

    if not args.only_checker:
        entries = []
        for c in CASES:
            entry = {"name": c["name"], "mode": c["mode"], "dataframe": c["dataframe"], "sql": c["sql"],
                     "input": c["name"] + ".input.json", "output": c["name"] + ".out",
                     "progress": c["name"] + ".progress.json"}
            if "static" in c:
                entry["static"] = c["name"] + ".static.jsonl"
            if "input2" in c:
                entry["input2"] = c["name"] + ".input2.json"
            entries.append(entry)
        dump_json("cases.json", entries)

    # A `--case` run leaves checker_errors.json alone unless `--only-checker` is given too.
    if args.only_checker or not (args.no_checker or args.case):
        with tempfile.TemporaryDirectory(prefix="ember-golden-et-") as directory, \
                tempfile.TemporaryDirectory(prefix="ember-golden-et2-") as directory2, \
                tempfile.TemporaryDirectory(prefix="ember-golden-etss-") as directory_ss:
            write_inputs(directory, CHECKER_INPUT)
            write_inputs(directory2, CHECKER_INPUT2)
            write_inputs(directory_ss, CHECKER_INPUT_SS)
            # Next to the input directory, not inside it (the file source would read them as input).
            base = os.path.join(os.path.dirname(directory), os.path.basename(directory))
            result, static = base + ".checker.json", base + ".static.jsonl"
            write_static(static, STATIC)
            proc = child(["--child-checker", result, "--dir", directory, "--static", static,
                          "--dir2", directory2, "--dir-ss", directory_ss])
            os.remove(static)
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
                "static": STATIC,
                "static_source": "spark.read.json(path) over the rows of `static` as JSON lines (sorted keys)",
                "input2": CHECKER_INPUT2,
                "input2_source": 'lines2 = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(dir2)',
                "checks": results,
            })
            print("checker_errors.json written", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
