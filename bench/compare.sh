#!/usr/bin/env bash
# Side-by-side socket word counts: ember against Spark Streaming (JVM), and optionally PySpark
# DStreams, on this machine, in one run (issue 12: 1 s batches).
#
#   bench/compare.sh                          # workload 1: reduce_by_key per batch, lines of
#                                             # 10 words from a 5,000-word vocabulary
#   BENCH_KIND=words bench/compare.sh         # workload 1 on the 12-word vocabulary (8 words a
#                                             # line), the default before issue 30
#   BENCH_INTERVAL_MS=100 bench/compare.sh    # workload 2: the same with 100 ms (or 10 ms)
#                                             # batches; warm-up, measured batches and
#                                             # thresholds scale to the interval (see below)
#   BENCH_WORKLOAD=window bench/compare.sh    # workload 3: reduce_by_key_and_window with the
#                                             # inverse function, 30 s window, 1 s slide
#   BENCH_WORKLOAD=state bench/compare.sh     # workload 4: update_state_by_key, 1,000,000 keys
#   BENCH_WORKLOAD=files bench/compare.sh     # workload 5: word count over a directory that
#                                             # `ember gen files` moves new files into
#   BENCH_WORKLOAD=startup bench/compare.sh   # workload 6: launch to first batch, peak RSS
#   BENCH_SYSTEMS="ember ember-cli spark" bench/compare.sh # also the README's `ember wordcount`
#   BENCH_SYSTEMS="ember spark pyspark" bench/compare.sh   # PySpark DStreams as a third system
#                                             # (wordcount, files and startup)
#   BENCH_SYSTEMS="spark pyspark ember-python ember-python2" bench/compare.sh
#                                             # the same PySpark program on ember (issue 26):
#                                             # one process, and a cluster of two
#
# 1. Installs Spark from PyPI into a venv under bench/.work/ (the pyspark package carries
#    Spark's jars, and is the PySpark that bench/spark/socket_word_count.py runs with, under
#    the venv's python), compiles bench/spark/SocketWordCount.java and SocketStatefulCount.java
#    against those jars with javac, and builds ember (`ember` for the generator, the
#    `bench_wordcount` example, whose JOB argument selects the workload) in release. ember's
#    side of every workload is that example (crates/ember/examples/bench_wordcount.rs); like
#    every program on ember (the `ember` binary and a user's program too) it runs on mimalloc,
#    the `ember` crate's default `mimalloc` feature.
# 2. Starts `ember gen socket --kind KIND` unpaced once, to learn the words per line and the
#    most lines per second one client can get from it.
# 3. For each system, searches the highest sustainable rate: every trial starts a fresh
#    generator at a rate (lines/s) and a fresh job reading it, drops the warm-up batches and
#    judges the next ones with bench/verdict.py (all measured batches done, >= 95% of the
#    offered words counted, processing p90 below the interval, total delay not growing and
#    under two intervals at the end). The window and state jobs output the number of keys and
#    the sum of their counts per batch; the words of each batch are derived from those sums.
#    The rate doubles (or halves) until one trial passes and one fails, then bisects. Each
#    trial also measures the share of the machine's CPU that processes it did not start took
#    meanwhile; a trial that failed on a busy machine is run once more.
# 4. Prints a table: each system's highest sustainable words/s, the p50/p99 total delay at
#    that rate, and the ratios ember/Spark (and ember/PySpark, Spark/PySpark) from this run.
#
# Workload 5 (files): instead of the socket generator, each trial runs `ember gen files` (the
# same lines as `ember gen socket --kind KIND`), which writes BENCH_FILES_PER_BATCH files per
# batch interval into a fresh directory, each under a hidden name and then renamed into place;
# the jobs read it with text_file_stream (Spark: textFileStream). The directory is removed
# after the trial. The offered rate is lines per second, as for the socket.
#
# Workload 6 (startup): no search. For each system, BENCH_STARTUP_REPEATS times: a generator
# at BENCH_STARTUP_WORDS words/s and a fresh word count job of BENCH_STARTUP_BATCHES batches;
# bench/startup_probe.py times launch (the clock read just before the job is started) to the
# first batch line (and to the first with words), and samples VmHWM/VmRSS from /proc of the
# job and all its descendants (PySpark: the Python driver, its JVM and its Python workers).
# The table gives medians of the launch times and the largest peak RSS over the repeats.
#
# Everything it writes goes to bench/.work/ (git-ignored): the venv, and one folder per run
# with the compiled classes, every trial's logs, trials.tsv and table.txt (workload 5's
# directories of files live there during their trial only). It kills every process it
# started, and the processes those started, when it ends, however it ends. The whole run stays within BENCH_TIME_BUDGET_S
# (default 1140 s, 19 min), setup included: the search ends early when the next trial would
# not fit.
#
# Settings (environment variables, defaults in brackets):
#   BENCH_WORKLOAD          wordcount, window, state, files or startup [wordcount]
#                           wordcount: reduce_by_key (Spark: reduceByKey), the output gathers
#                             the batch's counts;
#                           window: reduce_by_key_and_window_inv(+, -, BENCH_WINDOW_S, one
#                             interval) (Spark: reduceByKeyAndWindow(+, -, window, slide));
#                           state: update_state_by_key, a running count per word (Spark:
#                             updateStateByKey);
#                           files: the wordcount job over text_file_stream (Spark:
#                             textFileStream) of a directory that new files are moved into;
#                           startup: the wordcount job at a fixed rate, timed from launch to
#                             its first batch, with its peak resident memory.
#                           Spark runs window and state with a checkpoint directory, which it
#                           requires for them; ember does not require one (see
#                           BENCH_EMBER_CHECKPOINT).
#   BENCH_WINDOW_S          the window's length for BENCH_WORKLOAD=window, seconds [30]
#   BENCH_EMBER_CHECKPOINT  1: ember's window and state jobs also checkpoint (ssc.checkpoint)
#                           [0]
#   BENCH_STATE_INITIAL     1: the state job starts with every word of the vocabulary at 0
#                           (ember: update_state_by_key_with_initial; Spark: updateStateByKey
#                           with an initial RDD read by textFile), so that the state holds all
#                           1,000,000 keys from the first batch at any rate; 0: keys join the
#                           state as they arrive, and at low rates a trial sees only part of
#                           them [1; needs BENCH_KIND=vocab1m]
#   BENCH_SYSTEMS           systems to run, in order, from ember, ember-cli (the README's main
#                           job, `ember wordcount --host --port --report`, whose per-batch
#                           lines come from its streaming listener: input lines times the
#                           words per line; wordcount only), spark (Spark Streaming,
#                           Java) and pyspark (PySpark DStreams: bench/spark/
#                           socket_word_count.py, the same Spark settings as the Java job;
#                           wordcount, files and startup only), ember-python (that same
#                           Python program on ember, `socket_word_count.py --ember`: its
#                           imports from ember.pyspark, one process, master
#                           BENCH_EMBER_PYTHON_MASTER) and ember-python2 (the same as two
#                           processes of an ember cluster, `python -m ember.launch -n 2`, each
#                           with that master), ember-python2-py (ember-python2 with
#                           EMBER_NATIVE_FUNCTIONS=0: every function called in Python, none
#                           recognised and run natively); the ember-python systems install ember's Python
#                           package (release build, `pip install ./python`) into the venv.
#                           Structured Streaming (wordcount and files: seed 002's query, complete
#                           mode, console sink, processingTime trigger of BENCH_INTERVAL_MS;
#                           files reads the directory with the text file source):
#                           spark-sql (PySpark Structured Streaming on the JVM: bench/spark/
#                           structured_word_count.py), ember-sql (the same query in Rust:
#                           crates/ember-sql/examples/bench_structured_word_count.rs, or
#                           BENCH_EMBER_SQL_JOB), ember-sql-py (structured_word_count.py
#                           --ember: the Python program on ember, master
#                           BENCH_EMBER_PYTHON_MASTER). Their words are the input lines times
#                           10 (vocab5000's lines), read from the queries' progress reports
#                           ["ember spark"]
#   BENCH_EMBER_PYTHON_MASTER  the Python program's master on ember, per process [local[1]:
#                           the GIL lets one thread of Python run at a time, so a process
#                           gains little from a second worker]
#   BENCH_INTERVAL_MS       batch interval [1000]. Below 1000 (workload 2: 100 or 10), the
#                           defaults of the warm-up and measured batches keep their durations
#                           (10 s and 15 s of batches), the growth limit is a quarter of an
#                           interval, the settled check takes the last 3 s of batches, and
#                           Spark's spark.streaming.blockInterval becomes the interval when
#                           that is under its default 200 ms (else batches hold no blocks)
#   BENCH_WARMUP_BATCHES    batches dropped at the start of each trial [10, or 10 s of batches
#                           when shorter; window: the window's batches + 5, so that batches
#                           leave the window during all measured batches]; the JVM needs
#                           several seconds to compile its hot code, and a backlog built then
#                           drains during the measured batches
#   BENCH_MEASURE_BATCHES   batches judged in each trial [15, or 15 s of batches when shorter]
#   BENCH_START_WORDS       first rate tried, words/s [500000]
#   BENCH_PYSPARK_START_WORDS  first rate tried for pyspark, words/s [BENCH_START_WORDS / 20:
#                           in the first smoke runs PySpark took over 1 s a batch at 20,000]
#   BENCH_FILES_PER_BATCH   files: files moved into the directory per batch interval [4]
#   BENCH_FILES_DISTINCT    files: the writer writes this many distinct files first and
#                           hard-links them into the directory in turn (`ember gen files
#                           --distinct`), so that writing does not take the cores from the job
#                           (writing each file cost the writer 0.75 of a core at 34 M words/s,
#                           more than either of ember's workers); 0: every file written [8]
#   BENCH_STARTUP_WORDS     startup: the generator's rate, words/s [100000]
#   BENCH_STARTUP_BATCHES   startup: batches each job runs (memory is sampled meanwhile) [20]
#   BENCH_STARTUP_REPEATS   startup: fresh launches per system [3]
#   BENCH_MAX_DOUBLINGS     most trials while doubling or halving [8]
#   BENCH_BISECT_STEPS      trials of bisection after that [4]
#   BENCH_TIME_BUDGET_S     the whole run, seconds [1140]
#   BENCH_RECV_FRACTION     share of the offered words a trial must count [0.95]
#   BENCH_PROC_QUANTILE     quantile of processing time that must stay below the interval [0.9]
#   BENCH_GROWTH_MS         most growth of total delay over the measured batches [250, or a
#                           quarter of the interval when it is under 1 s]
#   BENCH_SETTLED_MS        total delay the last measured batches must be under (median of the
#                           last three, or of the last 3 s of batches) [2 intervals]
#   BENCH_ABORT_DELAY_MS    a trial stops early once a batch's total delay passes this [10000]
#   BENCH_BUSY_PERCENT      a failed trial is run once more when processes this script did not
#                           start took more than this share of the machine's CPU meanwhile [15]
#   BENCH_KIND              the generator's --kind [wordcount: vocab5000, files, startup:
#                           words, window: vocab5000, state: vocab1m]. words: 8 words a line,
#                           12-word vocabulary (wordcount's default until issue 30);
#                           vocab5000: lines of 10 words from a 5,000-word vocabulary (the
#                           issue's workload), written to bench/.work/ and served as file:PATH;
#                           vocab1m: 500,000 lines of 10 words from a 1,000,000-word
#                           vocabulary (99% of the words occur), written once to bench/.work/
#                           and served as file:PATH
#   BENCH_EMBER_WORKERS     ember's worker threads [2]
#   BENCH_SPARK_MASTER      Spark's master, for spark and pyspark [local[2]]
#   BENCH_SPARK_HEAP        the JVM's -Xmx (pyspark: spark.driver.memory) [2g]
#   BENCH_SPARK_JAVA_OPTS   more JVM options, e.g. -Dspark.serializer=... (pyspark: given as
#                           spark.driver.extraJavaOptions) [none]
#   BENCH_PYSPARK_VERSION   the pyspark release whose jars are used [3.5.9]
#   BENCH_SKIP_BUILD        1: use the existing target/release binaries [0]
set -euo pipefail

START_EPOCH=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
WORK="$BENCH/.work"

WORKLOAD=${BENCH_WORKLOAD:-wordcount}
WINDOW_S=${BENCH_WINDOW_S:-30}
EMBER_CHECKPOINT=${BENCH_EMBER_CHECKPOINT:-0}
STATE_INITIAL=${BENCH_STATE_INITIAL:-1}
SYSTEMS=${BENCH_SYSTEMS:-ember spark}
INTERVAL_MS=${BENCH_INTERVAL_MS:-1000}

# Settings that must be whole numbers (a typo should stop the run at once, not mid-way).
usage_error() {
    echo "compare.sh: $*" >&2
    exit 2
}
positive_int() {
    [[ $2 =~ ^[0-9]+$ ]] && (($2 > 0)) || usage_error "$1 must be a positive whole number, not '$2'"
}
positive_int BENCH_INTERVAL_MS "$INTERVAL_MS"
positive_int BENCH_WINDOW_S "$WINDOW_S"
# Batches in 10 s and in 15 s, for intervals under 1 s (workload 2): trials keep the durations
# of the 1 s case, so that the JVM gets the same time to compile its hot code.
if ((INTERVAL_MS < 1000)); then
    TEN_S_BATCHES=$(((10000 + INTERVAL_MS - 1) / INTERVAL_MS))
    FIFTEEN_S_BATCHES=$(((15000 + INTERVAL_MS - 1) / INTERVAL_MS))
    DEFAULT_GROWTH_MS=$(awk -v i="$INTERVAL_MS" 'BEGIN { print i / 4 }')
else
    TEN_S_BATCHES=10
    FIFTEEN_S_BATCHES=15
    DEFAULT_GROWTH_MS=250
fi
case $WORKLOAD in
wordcount)
    # The seeds' input (issue 30): lines of 10 words from a 5,000-word vocabulary.
    DEFAULT_KIND=vocab5000
    DEFAULT_WARMUP=$TEN_S_BATCHES
    ;;
files | startup)
    DEFAULT_KIND=words
    DEFAULT_WARMUP=$TEN_S_BATCHES
    ;;
window)
    DEFAULT_KIND=vocab5000
    DEFAULT_WARMUP=$((WINDOW_S * 1000 / INTERVAL_MS + 5))
    ;;
state)
    DEFAULT_KIND=vocab1m
    DEFAULT_WARMUP=$TEN_S_BATCHES
    ;;
*)
    usage_error "BENCH_WORKLOAD must be wordcount, window, state, files or startup, not '$WORKLOAD'"
    ;;
esac
read -r -a SYSTEM_LIST <<<"$SYSTEMS"
((${#SYSTEM_LIST[@]} > 0)) || usage_error "BENCH_SYSTEMS is empty"
for s in "${SYSTEM_LIST[@]}"; do
    case $s in
    ember | spark) ;;
    ember-cli)
        [[ $WORKLOAD == wordcount ]] || usage_error "ember-cli runs the word count only (BENCH_WORKLOAD wordcount), not $WORKLOAD"
        ;;
    pyspark | ember-python | ember-python2 | ember-python2-py)
        [[ $WORKLOAD == wordcount || $WORKLOAD == files || $WORKLOAD == startup ]] ||
            usage_error "$s runs the word count only (BENCH_WORKLOAD wordcount, files or startup), not $WORKLOAD"
        ;;
    spark-sql | ember-sql | ember-sql-py)
        [[ $WORKLOAD == wordcount || $WORKLOAD == files ]] ||
            usage_error "$s runs the word count only (BENCH_WORKLOAD wordcount or files), not $WORKLOAD"
        ;;
    *) usage_error "unknown system '$s' in BENCH_SYSTEMS (ember, ember-cli, spark, pyspark, ember-python, ember-python2, ember-python2-py, spark-sql, ember-sql, ember-sql-py)" ;;
    esac
done
WARMUP=${BENCH_WARMUP_BATCHES:-$DEFAULT_WARMUP}
MEASURE=${BENCH_MEASURE_BATCHES:-$FIFTEEN_S_BATCHES}
START_WORDS=${BENCH_START_WORDS:-500000}
positive_int BENCH_START_WORDS "$START_WORDS"
PYSPARK_START_WORDS=${BENCH_PYSPARK_START_WORDS:-$((START_WORDS / 20))}
FILES_PER_BATCH=${BENCH_FILES_PER_BATCH:-4}
FILES_DISTINCT=${BENCH_FILES_DISTINCT:-8}
FILES_DISTINCT_ARGS=()
[[ $FILES_DISTINCT != 0 ]] && FILES_DISTINCT_ARGS=(--distinct "$FILES_DISTINCT")
STARTUP_WORDS=${BENCH_STARTUP_WORDS:-100000}
STARTUP_BATCHES=${BENCH_STARTUP_BATCHES:-20}
STARTUP_REPEATS=${BENCH_STARTUP_REPEATS:-3}
MAX_DOUBLINGS=${BENCH_MAX_DOUBLINGS:-8}
BISECT_STEPS=${BENCH_BISECT_STEPS:-4}
TIME_BUDGET_S=${BENCH_TIME_BUDGET_S:-1140}
RECV_FRACTION=${BENCH_RECV_FRACTION:-0.95}
PROC_QUANTILE=${BENCH_PROC_QUANTILE:-0.9}
GROWTH_MS=${BENCH_GROWTH_MS:-$DEFAULT_GROWTH_MS}
SETTLED_MS=${BENCH_SETTLED_MS:-$((2 * INTERVAL_MS))}
ABORT_DELAY_MS=${BENCH_ABORT_DELAY_MS:-10000}
BUSY_PERCENT=${BENCH_BUSY_PERCENT:-15}
KIND=${BENCH_KIND:-$DEFAULT_KIND}
EMBER_WORKERS=${BENCH_EMBER_WORKERS:-2}
SPARK_MASTER=${BENCH_SPARK_MASTER:-local[2]}
EMBER_PYTHON_MASTER=${BENCH_EMBER_PYTHON_MASTER:-local[1]}
SPARK_HEAP=${BENCH_SPARK_HEAP:-2g}
SPARK_JAVA_OPTS=${BENCH_SPARK_JAVA_OPTS:-}
PYSPARK_VERSION=${BENCH_PYSPARK_VERSION:-3.5.9}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
for v in BENCH_PYSPARK_START_WORDS:$PYSPARK_START_WORDS \
    BENCH_FILES_PER_BATCH:$FILES_PER_BATCH BENCH_STARTUP_WORDS:$STARTUP_WORDS BENCH_STARTUP_BATCHES:$STARTUP_BATCHES \
    BENCH_STARTUP_REPEATS:$STARTUP_REPEATS BENCH_MAX_DOUBLINGS:$MAX_DOUBLINGS BENCH_TIME_BUDGET_S:$TIME_BUDGET_S \
    BENCH_ABORT_DELAY_MS:$ABORT_DELAY_MS BENCH_EMBER_WORKERS:$EMBER_WORKERS; do
    positive_int "${v%%:*}" "${v#*:}"
done
positive_int BENCH_MEASURE_BATCHES "$MEASURE"
[[ $BISECT_STEPS =~ ^[0-9]+$ ]] || usage_error "BENCH_BISECT_STEPS must be a whole number, not '$BISECT_STEPS'"
[[ $WARMUP =~ ^[0-9]+$ ]] || usage_error "BENCH_WARMUP_BATCHES must be a whole number, not '$WARMUP'"

# Seconds a trial may take before its first batch line: process start, and for Spark the JVM,
# the SparkContext and the receiver (PySpark: also the Python driver and workers).
declare -A STARTUP_S=([ember]=15 [ember-cli]=15 [spark]=60 [pyspark]=90 [ember-python]=20 [ember-python2]=30 [ember-python2-py]=30
    [spark-sql]=90 [ember-sql]=15 [ember-sql-py]=20)
# What a trial usually costs beyond its batches, for planning the time budget.
declare -A OVERHEAD_S=([ember]=4 [ember-cli]=4 [spark]=14 [pyspark]=18 [ember-python]=5 [ember-python2]=6 [ember-python2-py]=6
    [spark-sql]=18 [ember-sql]=4 [ember-sql-py]=5)
# Each system's share of the search's time (Spark's trials take longer: JVM start).
declare -A WEIGHT=([ember]=2 [ember-cli]=2 [spark]=3 [pyspark]=3 [ember-python]=2 [ember-python2]=2 [ember-python2-py]=2
    [spark-sql]=3 [ember-sql]=2 [ember-sql-py]=2)

RUN_DIR="$WORK/run-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RUN_DIR"
SUMMARY="$RUN_DIR/summary.txt"

elapsed() { echo $(($(date +%s) - START_EPOCH)); }
say() { echo "[$(printf '%4d' "$(elapsed)")s] $*" | tee -a "$SUMMARY" >&2; }
die() {
    say "error: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Processes: every child is recorded, and stopped (TERM, then KILL) when the script ends, with
# the processes it started in turn (PySpark's driver starts a JVM, which starts Python workers).
PIDS=()

# The descendants of a process, by pid, from ps.
descendants() {
    ps -e -o pid=,ppid= 2>/dev/null | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END { todo = root; while (todo != "") { n = split(todo, a, " "); todo = "";
              for (i = 1; i <= n; i++) { split(kids[a[i]], k, " "); for (j in k) { print k[j]; todo = todo " " k[j] } } } }'
}

stop_pid() {
    local pid=$1 i p kept=() family=()
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    # Found before the parent goes: orphans would be reparented out of reach.
    read -r -d '' -a family < <(descendants "$pid") || true
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    ((${#family[@]} > 0)) || return 0
    kill -TERM "${family[@]}" 2>/dev/null || true
    local alive
    for i in $(seq 1 50); do
        alive=0
        for p in "${family[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${family[@]}"; do
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    done
    return 0
}

# adopt_family PID: records the processes PID has started by now (PySpark's JVM and Python
# workers), so that they are stopped even when PID ends first and they are reparented.
FAMILY=()
adopt_family() {
    local p
    for p in $(descendants "$1"); do
        PIDS+=("$p")
        FAMILY+=("$p")
    done
}
# stop_family: stops the processes adopt_family recorded that are still there.
stop_family() {
    local p
    for p in "${FAMILY[@]}"; do
        stop_pid "$p"
    done
    FAMILY=()
}

cleanup() {
    local pid
    trap - EXIT INT TERM
    local started=("${PIDS[@]}")
    for pid in "${started[@]}"; do
        stop_pid "$pid"
        if kill -0 "$pid" 2>/dev/null; then
            echo "compare.sh: process $pid did not stop" >&2
        fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 1. Setup: Spark from PyPI, the Java job, ember.
VENV="$WORK/venv"
PY="$VENV/bin/python"
installed=$("$PY" -c 'import pyspark; print(pyspark.__version__)' 2>/dev/null || true)
if [[ "$installed" != "$PYSPARK_VERSION" ]]; then
    say "installing pyspark==$PYSPARK_VERSION into $VENV (about 320 MB of jars)"
    [[ -x "$PY" ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "pyspark==$PYSPARK_VERSION" >"$RUN_DIR/pip.log" 2>&1 ||
        die "pip install pyspark==$PYSPARK_VERSION failed, see $RUN_DIR/pip.log"
fi
JARS="$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
SPARK_JAR=$(cd "$JARS" && ls spark-streaming_*.jar 2>/dev/null | head -n1)
[[ -n "$SPARK_JAR" ]] || die "no spark-streaming jar in $JARS"
# spark-streaming_<scala>-<spark>.jar
SPARK_SCALA=$(sed -n 's/^spark-streaming_\([0-9.]*\)-.*/\1/p' <<<"$SPARK_JAR")
SPARK_VERSION=$(sed -n 's/^spark-streaming_[0-9.]*-\(.*\)\.jar$/\1/p' <<<"$SPARK_JAR")
SPARK_LABEL="Spark Streaming $SPARK_VERSION JVM"
PYSPARK_LABEL="PySpark $SPARK_VERSION DStreams"
say "Spark $SPARK_VERSION (Scala $SPARK_SCALA) from pyspark $PYSPARK_VERSION, jars in $JARS"
java -version >"$RUN_DIR/java-version.txt" 2>&1 || die "java is not on PATH"
say "$(head -n1 "$RUN_DIR/java-version.txt")"

# Compiled into this run's folder: a run started meanwhile does not pull the classes from
# under this one's JVMs.
CLASSES="$RUN_DIR/classes"
mkdir -p "$CLASSES"
javac -nowarn -cp "$JARS/*" -d "$CLASSES" "$BENCH/spark/SocketWordCount.java" "$BENCH/spark/SocketStatefulCount.java" \
    >"$RUN_DIR/javac.log" 2>&1 ||
    die "javac failed, see $RUN_DIR/javac.log"
SPARK_CP="$CLASSES:$JARS/*"
# The module options spark-submit adds on Java 17, from this Spark's own launcher.
read -r -a JAVA_MODULE_OPTS <<<"$(java -cp "$SPARK_CP" SocketWordCount --java-options)"
read -r -a EXTRA_JAVA_OPTS <<<"$SPARK_JAVA_OPTS"
# Spark cuts a receiver's input into blocks every 200 ms by default: a shorter batch would
# hold a block only now and then, so the block interval follows the batch interval below it.
PYSPARK_CONFS=(--conf "spark.driver.memory=$SPARK_HEAP")
[[ -z $SPARK_JAVA_OPTS ]] || PYSPARK_CONFS+=(--conf "spark.driver.extraJavaOptions=$SPARK_JAVA_OPTS")
if ((INTERVAL_MS < 200)) && [[ $SPARK_JAVA_OPTS != *spark.streaming.blockInterval* ]]; then
    EXTRA_JAVA_OPTS+=("-Dspark.streaming.blockInterval=${INTERVAL_MS}ms")
    PYSPARK_CONFS+=(--conf "spark.streaming.blockInterval=${INTERVAL_MS}ms")
fi
echo "${JAVA_MODULE_OPTS[*]}" >"$RUN_DIR/java-options.txt"
if [[ " ${SYSTEM_LIST[*]} " == *" pyspark "* || " ${SYSTEM_LIST[*]} " == *" spark-sql "* ]]; then
    # PySpark's workers must be the venv's python too (pyspark's own default is `python3`).
    export PYSPARK_PYTHON="$PY"
    "$PY" -c 'import pyspark.streaming, pyspark.sql' 2>"$RUN_DIR/pyspark-import.log" ||
        die "the venv's python cannot import pyspark.streaming, see $RUN_DIR/pyspark-import.log"
fi

if [[ "$SKIP_BUILD" != 1 ]]; then
    say "building ember (release)"
    (cd "$ROOT" && cargo build --release -p ember-cli && cargo build --release -p ember --example bench_wordcount) \
        >"$RUN_DIR/cargo.log" 2>&1 || die "cargo build failed, see $RUN_DIR/cargo.log"
    if [[ " ${SYSTEM_LIST[*]} " == *" ember-sql "* && -z ${BENCH_EMBER_SQL_JOB:-} ]]; then
        say "building ember-sql's job (release; DataFusion's first release build takes a while)"
        (cd "$ROOT" && cargo build --release -p ember-sql --example bench_structured_word_count) \
            >>"$RUN_DIR/cargo.log" 2>&1 || die "cargo build failed, see $RUN_DIR/cargo.log"
    fi
fi
EMBER_SQL_JOB=${BENCH_EMBER_SQL_JOB:-$ROOT/target/release/examples/bench_structured_word_count}
if [[ " ${SYSTEM_LIST[*]} " == *" ember-sql "* ]]; then
    [[ -x $EMBER_SQL_JOB ]] || die "missing $EMBER_SQL_JOB"
fi
if [[ " ${SYSTEM_LIST[*]} " == *" ember-python"* || " ${SYSTEM_LIST[*]} " == *" ember-sql-py "* ]]; then
    if [[ "$SKIP_BUILD" != 1 ]] || ! "$PY" -c 'import ember.pyspark' 2>/dev/null; then
        say "installing ember's Python package into $VENV (pip install ./python: a release build)"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$ROOT/python" \
            >"$RUN_DIR/pip-ember.log" 2>&1 || die "pip install ./python failed, see $RUN_DIR/pip-ember.log"
    fi
    "$PY" -c 'import ember.pyspark.streaming' 2>"$RUN_DIR/ember-import.log" ||
        die "the venv's python cannot import ember.pyspark.streaming, see $RUN_DIR/ember-import.log"
fi
EMBER_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z "$(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]] || EMBER_COMMIT="$EMBER_COMMIT+changes"
EMBER="$ROOT/target/release/ember"
EMBER_JOB="$ROOT/target/release/examples/bench_wordcount"
[[ -x "$EMBER" && -x "$EMBER_JOB" ]] || die "missing $EMBER or $EMBER_JOB"
if [[ $WORKLOAD == startup ]]; then
    say "setup done; workload startup, $STARTUP_REPEATS launches per system of $STARTUP_BATCHES batches at $STARTUP_WORDS words/s"
else
    say "setup done; workload $WORKLOAD, ${INTERVAL_MS} ms batches, $WARMUP warm-up + $MEASURE measured batches per trial"
fi

# ---------------------------------------------------------------------------------------------
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts `ember gen socket` at $1 lines/s for at most $2 seconds, logging to $3; sets GEN_PID
# and GEN_PORT once it listens.
start_generator() {
    local rate=$1 seconds=$2 log=$3 i
    GEN_PORT=$(free_port)
    "$EMBER" gen socket --host 127.0.0.1 --port "$GEN_PORT" --kind "$GEN_KIND" --rate "$rate" --seconds "$seconds" \
        >"$log" 2>&1 &
    GEN_PID=$!
    PIDS+=("$GEN_PID")
    for i in $(seq 1 100); do
        grep -q 'serving' "$log" 2>/dev/null && return 0
        kill -0 "$GEN_PID" 2>/dev/null || break
        sleep 0.1
    done
    die "the generator did not start, see $log"
}

# 2. The generator: words per line, and its ceiling for one client.
GEN_KIND=$KIND
if [[ $KIND == vocab5000 ]]; then
    GEN_KIND="file:$WORK/vocab5000-lines.txt"
    # 200,000 lines of 10 words drawn uniformly from 5,000 made-up words, the same every run.
    "$PY" - "${GEN_KIND#file:}" <<'PYTHON'
import random, string, sys
rng = random.Random(5000)
vocab = set()
while len(vocab) < 5000:
    vocab.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10))))
vocab = sorted(vocab)
with open(sys.argv[1], "w") as f:
    for _ in range(200_000):
        f.write(" ".join(rng.choice(vocab) for _ in range(10)) + "\n")
PYTHON
elif [[ $KIND == vocab1m ]]; then
    GEN_KIND="file:$WORK/vocab1m-lines.txt"
    VOCAB_WORDS="$WORK/vocab1m-words.txt"
    if [[ ! -s ${GEN_KIND#file:} || ! -s $VOCAB_WORDS ]]; then
        say "writing ${GEN_KIND#file:} (500,000 lines of 10 words from 1,000,000 words) and $VOCAB_WORDS"
        # The same every run, so they are written once; 10 draws a line from 1,000,000 words,
        # 5,000,000 draws in all: 1 - e^-5 = 99.3% of the words occur.
        "$PY" - "${GEN_KIND#file:}.tmp" "$VOCAB_WORDS.tmp" <<'PYTHON'
import random, string, sys
rng = random.Random(1_000_000)
vocab = set()
while len(vocab) < 1_000_000:
    vocab.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10))))
vocab = sorted(vocab)
with open(sys.argv[1], "w") as f:
    for _ in range(500_000):
        f.write(" ".join(rng.choices(vocab, k=10)) + "\n")
with open(sys.argv[2], "w") as f:
    f.write("\n".join(vocab) + "\n")
PYTHON
        mv "${GEN_KIND#file:}.tmp" "${GEN_KIND#file:}"
        mv "$VOCAB_WORDS.tmp" "$VOCAB_WORDS"
    fi
fi
# The state job's initial states: every word of the vocabulary, or none ("-").
INITIAL_FILE=-
if [[ $WORKLOAD == state && $STATE_INITIAL == 1 ]]; then
    [[ $KIND == vocab1m ]] || die "BENCH_STATE_INITIAL=1 needs BENCH_KIND=vocab1m (or BENCH_STATE_INITIAL=0)"
    INITIAL_FILE=$VOCAB_WORDS
fi
start_generator 1000000000 30 "$RUN_DIR/probe-gen.log"
probe=$("$PY" "$BENCH/gen_probe.py" 127.0.0.1 "$GEN_PORT" 3) || die "cannot read the generator"
stop_pid "$GEN_PID"
WORDS_PER_LINE=$(sed -n 's/.*words_per_line=\([0-9.]*\).*/\1/p' <<<"$probe")
GEN_MAX_LINES=$(sed -n 's/.*lines_per_s=\([0-9]*\).*/\1/p' <<<"$probe")
say "generator --kind $KIND: $WORDS_PER_LINE words per line; unpaced, one client reads $GEN_MAX_LINES lines/s" \
    "($(awk -v l="$GEN_MAX_LINES" -v w="$WORDS_PER_LINE" 'BEGIN { printf "%.0f", l * w }') words/s)"

words_of() { awk -v l="$1" -v w="$WORDS_PER_LINE" 'BEGIN { printf "%.0f", l * w }'; }
lines_of() { awk -v x="$1" -v w="$WORDS_PER_LINE" 'BEGIN { v = int(x / w + 0.5); if (v < 1) v = 1; print v }'; }

# Workload 5: `ember gen files` writes FILES_PER_S files a second (FILES_PER_BATCH a batch).
# files_plan LINES_PER_S sets LINES_PER_FILE and FILE_LINES_PER_S (what is offered: the lines a
# second after rounding to whole lines a file).
FILES_PER_S=$(awk -v f="$FILES_PER_BATCH" -v i="$INTERVAL_MS" 'BEGIN { print f * 1000 / i }')
files_plan() {
    LINES_PER_FILE=$(awk -v r="$1" -v f="$FILES_PER_S" 'BEGIN { v = int(r / f + 0.5); if (v < 1) v = 1; print v }')
    FILE_LINES_PER_S=$(awk -v l="$LINES_PER_FILE" -v f="$FILES_PER_S" 'BEGIN { printf "%.0f", l * f }')
}
if [[ $WORKLOAD == files ]]; then
    # The file writer's ceiling: 40 files of 50,000 lines unpaced into a scratch directory.
    scratch="$RUN_DIR/files-probe"
    t0=$(date +%s%N)
    "$EMBER" gen files --dir "$scratch" --kind "$GEN_KIND" --rate 1000000 --lines-per-file 50000 --count 40 \
        >"$RUN_DIR/files-probe.log" 2>&1 || die "ember gen files failed, see $RUN_DIR/files-probe.log"
    t1=$(date +%s%N)
    rm -rf "$scratch"
    GEN_MAX_LINES=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 2000000 / ((b - a) / 1e9) }')
    say "ember gen files: unpaced, writes $GEN_MAX_LINES lines/s ($(words_of "$GEN_MAX_LINES") words/s);" \
        "$FILES_PER_BATCH files a batch, $FILES_PER_S files/s" \
        "$([[ $FILES_DISTINCT != 0 ]] && echo "(in the trials: hard links to $FILES_DISTINCT distinct files)")"
fi

# ---------------------------------------------------------------------------------------------
# 3. Trials.
TRIAL=0
printf 'system\tlines_per_s\toffered_words_per_s\tother_cpu_percent\tverdict\n' >"$RUN_DIR/trials.tsv"

# The machine's CPU time, in clock ticks: "busy total" over all cores, from /proc/stat.
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
# Sets CHILD_S to the CPU seconds of this script's finished children (the `times` builtin:
# it must run in this shell, not in a $(...) subshell, which has children of its own).
children_seconds() {
    times >"$RUN_DIR/.times"
    CHILD_S=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { sub(/s$/, "", $i); split($i, t, "m"); s += t[1] * 60 + t[2] } print s }' \
        "$RUN_DIR/.times")
}
CLK_TCK=$(getconf CLK_TCK)
MAX_OTHERS=0

# start_job SYSTEM BATCHES LOG CHECKPOINT: starts the job of SYSTEM for the workload, reading
# the generator's port (or, for files, the directory FILES_DIR), with stdout to LOG.out and
# stderr appended to LOG.err; sets JOB_PID and records it.
start_job() {
    local system=$1 batches=$2 log=$3 checkpoint=$4 ember_checkpoint=- input=(127.0.0.1 "$GEN_PORT")
    [[ $WORKLOAD == files ]] && input=(--files "$FILES_DIR")
    case $system in
    ember)
        [[ $EMBER_CHECKPOINT == 1 ]] && ember_checkpoint=$checkpoint
        local job=$WORKLOAD host=127.0.0.1 port=$GEN_PORT
        [[ $WORKLOAD == startup ]] && job=wordcount
        [[ $WORKLOAD == files ]] && host=$FILES_DIR port=0
        "$EMBER_JOB" "$host" "$port" "$batches" "$INTERVAL_MS" "$EMBER_WORKERS" "$job" "$((WINDOW_S * 1000))" \
            "$ember_checkpoint" "$INITIAL_FILE" >"$log.out" 2>>"$log.err" &
        ;;
    ember-cli)
        # It runs for its batches' time from its start, so it is given two more than judged.
        "$EMBER" wordcount --host 127.0.0.1 --port "$GEN_PORT" --batches "$((batches + 2))" --interval-ms "$INTERVAL_MS" \
            --workers "$EMBER_WORKERS" --report >"$log.out" 2>>"$log.err" &
        ;;
    spark)
        if [[ $WORKLOAD == wordcount || $WORKLOAD == files || $WORKLOAD == startup ]]; then
            java "${JAVA_MODULE_OPTS[@]}" "-Xmx$SPARK_HEAP" "${EXTRA_JAVA_OPTS[@]}" -cp "$SPARK_CP" \
                SocketWordCount "${input[@]}" "$batches" "$INTERVAL_MS" "$SPARK_MASTER" >"$log.out" 2>>"$log.err" &
        else
            java "${JAVA_MODULE_OPTS[@]}" "-Xmx$SPARK_HEAP" "${EXTRA_JAVA_OPTS[@]}" -cp "$SPARK_CP" \
                SocketStatefulCount 127.0.0.1 "$GEN_PORT" "$batches" "$INTERVAL_MS" "$WORKLOAD" "$((WINDOW_S * 1000))" \
                "$checkpoint" "$SPARK_MASTER" "$INITIAL_FILE" >"$log.out" 2>>"$log.err" &
        fi
        ;;
    pyspark)
        "$PY" "$BENCH/spark/socket_word_count.py" "${input[@]}" "$batches" "$INTERVAL_MS" "$SPARK_MASTER" \
            "${PYSPARK_CONFS[@]}" >"$log.out" 2>>"$log.err" &
        ;;
    ember-python)
        "$PY" "$BENCH/spark/socket_word_count.py" --ember "${input[@]}" "$batches" "$INTERVAL_MS" "$EMBER_PYTHON_MASTER" \
            >"$log.out" 2>>"$log.err" &
        ;;
    spark-sql)
        "$PY" "$BENCH/spark/structured_word_count.py" "${input[@]}" "$batches" "$INTERVAL_MS" "$SPARK_MASTER" \
            "${PYSPARK_CONFS[@]}" >"$log.out" 2>>"$log.err" &
        ;;
    ember-sql)
        "$EMBER_SQL_JOB" "${input[@]}" "$batches" "$INTERVAL_MS" "$EMBER_WORKERS" >"$log.out" 2>>"$log.err" &
        ;;
    ember-sql-py)
        "$PY" "$BENCH/spark/structured_word_count.py" --ember "${input[@]}" "$batches" "$INTERVAL_MS" "$EMBER_PYTHON_MASTER" \
            >"$log.out" 2>>"$log.err" &
        ;;
    ember-python2 | ember-python2-py)
        local native=1
        [[ $system == ember-python2-py ]] && native=0
        EMBER_NATIVE_FUNCTIONS=$native "$PY" -m ember.launch -n 2 "$BENCH/spark/socket_word_count.py" --ember "${input[@]}" \
            "$batches" "$INTERVAL_MS" "$EMBER_PYTHON_MASTER" >"$log.out" 2>>"$log.err" &
        ;;
    esac
    JOB_PID=$!
    PIDS+=("$JOB_PID")
}

# CPU clock ticks of a process's descendants and of the processes adopt_family recorded (their
# own and their reaped children's): PySpark's JVM outlives the driver this script waits for, so
# `times` would not count it.
descendant_ticks() {
    local pids p
    pids=$({
        descendants "$1"
        for p in "${FAMILY[@]}"; do
            echo "$p"
            descendants "$p"
        done
    } | sort -u | tr '\n' ' ' || true)
    [[ -n ${pids// /} ]] || {
        echo 0
        return
    }
    # Fields after the command's closing parenthesis: utime is the 12th, then stime, cutime, cstime.
    # shellcheck disable=SC2086
    (cd /proc && cat $(printf '%s/stat ' $pids) 2>/dev/null || true) |
        awk '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { printf "%d", t }'
}

# run_trial SYSTEM LINES_PER_S: sets VERDICT (verdict.py's line). Also measures how much of
# the machine's CPU went to processes this script did not start during the trial (OTHERS, in
# percent): other work on a shared machine makes a trial fail early.
run_trial() {
    local system=$1 rate=$2 log startup batches deadline first_seen=0 count last job_pid offered=$2 writer_pid=""
    local ticks_before ours_before ticks_after extra_ticks=0
    TRIAL=$((TRIAL + 1))
    ticks_before=$(cpu_ticks)
    children_seconds
    ours_before=$CHILD_S
    log="$RUN_DIR/trial-$(printf '%02d' "$TRIAL")-$system-$rate"
    batches=$((WARMUP + MEASURE))
    startup=${STARTUP_S[$system]}
    local span=$((startup + batches * INTERVAL_MS / 1000 + 30))
    # A fresh checkpoint directory per trial (Spark's window and state jobs need one), removed
    # after it. The job's stderr is opened for appending, as the notes this script adds to it
    # while the job runs would otherwise be overwritten by the job's later output.
    local checkpoint="$log.checkpoint"
    if [[ $WORKLOAD == files ]]; then
        # A fresh directory; the writer starts once the job is launched (both systems ignore
        # files that were there before their stream started).
        FILES_DIR="$log.files"
        mkdir -p "$FILES_DIR"
        files_plan "$rate"
        offered=$FILE_LINES_PER_S
        start_job "$system" "$batches" "$log" "$checkpoint"
        "$EMBER" gen files --dir "$FILES_DIR" --kind "$GEN_KIND" --rate "$FILES_PER_S" --lines-per-file "$LINES_PER_FILE" \
            "${FILES_DISTINCT_ARGS[@]}" --seconds "$span" >"$log.gen.log" 2>&1 &
        writer_pid=$!
        PIDS+=("$writer_pid")
    else
        start_generator "$rate" "$span" "$log.gen.log"
        start_job "$system" "$batches" "$log" "$checkpoint"
    fi
    job_pid=$JOB_PID
    # Until every batch is in, the job ends, the first batch is late, the batches are late
    # (a system far behind), or a batch's delay passes the abort limit.
    deadline=$(($(date +%s) + startup))
    while kill -0 "$job_pid" 2>/dev/null; do
        count=$(grep -c '^BATCH ' "$log.out" || true)
        ((count >= batches)) && break
        if ((count > 0 && first_seen == 0)); then
            first_seen=1
            [[ $system == pyspark || $system == spark-sql || $system == ember-python2* ]] && adopt_family "$job_pid"
            deadline=$(($(date +%s) + (batches - count) * INTERVAL_MS / 1000 + 3 * INTERVAL_MS / 1000 + 5))
        fi
        if (($(date +%s) > deadline)); then
            echo "compare.sh: trial stopped at its deadline after $count batches" >>"$log.err"
            break
        fi
        if [[ -n $writer_pid ]] && ! kill -0 "$writer_pid" 2>/dev/null; then
            echo "compare.sh: trial stopped: the file writer ended early, see $log.gen.log" >>"$log.err"
            say "  warning: ember gen files ended early: $(tail -n1 "$log.gen.log")"
            break
        fi
        last=$({ grep '^BATCH ' "$log.out" || true; } | tail -n1 | sed -n 's/.*total_ms=\([0-9]*\).*/\1/p')
        if [[ -n "$last" ]] && ((last > ABORT_DELAY_MS)); then
            echo "compare.sh: trial stopped: total delay $last ms > $ABORT_DELAY_MS ms" >>"$log.err"
            break
        fi
        sleep 0.25
    done
    if ! kill -0 "$job_pid" 2>/dev/null && (($(grep -c '^BATCH ' "$log.out" || true) < batches)); then
        say "  $system ended before its batches were in: $(grep -v '^\s*$' "$log.err" | tail -n1)"
    fi
    [[ $system == pyspark || $system == ember-python2* ]] && extra_ticks=$(descendant_ticks "$job_pid")
    stop_pid "$job_pid"
    stop_family
    if [[ -n $writer_pid ]]; then
        stop_pid "$writer_pid"
        du -sk "$FILES_DIR" | awk '{ print "compare.sh: files directory " $1 " KiB at the end" }' >>"$log.err"
        rm -rf "$FILES_DIR" "$FILES_DIR.staging"
    else
        stop_pid "$GEN_PID"
    fi
    if [[ -d $checkpoint ]]; then
        du -sk "$checkpoint" | awk '{ print "compare.sh: checkpoint directory " $1 " KiB" }' >>"$log.err"
        rm -rf "$checkpoint"
    fi
    ticks_after=$(cpu_ticks)
    children_seconds
    OTHERS=$(awk -v b="$ticks_before" -v a="$ticks_after" -v o1="$ours_before" -v o2="$CHILD_S" -v hz="$CLK_TCK" -v x="$extra_ticks" \
        'BEGIN { split(b, x1, " "); split(a, y, " "); busy = y[1] - x1[1]; total = y[2] - x1[2];
                 others = busy - (o2 - o1) * hz - x; if (others < 0) others = 0;
                 printf "%.0f", (total > 0 ? 100 * others / total : 0) }')
    ((OTHERS > MAX_OTHERS)) && MAX_OTHERS=$OTHERS
    VERDICT=$("$PY" "$BENCH/verdict.py" "$log.out" --offered-words-per-s "$(words_of "$offered")" \
        --interval-ms "$INTERVAL_MS" --warmup "$WARMUP" --measure "$MEASURE" --recv-fraction "$RECV_FRACTION" \
        --proc-quantile "$PROC_QUANTILE" --growth-ms "$GROWTH_MS" --settled-ms "$SETTLED_MS" \
        --words-per-record "$WORDS_PER_LINE")
    printf '%s\t%s\t%s\t%s\t%s\n' "$system" "$offered" "$(words_of "$offered")" "$OTHERS" "$VERDICT" >>"$RUN_DIR/trials.tsv"
    local per_file=""
    [[ -z $writer_pid ]] || per_file=", $LINES_PER_FILE lines a file"
    say "  $system at $(words_of "$offered") words/s ($offered lines/s$per_file), other processes ${OTHERS}% of the CPU: $VERDICT"
}

# judge SYSTEM LINES_PER_S: run_trial, once more when the trial failed while other processes
# took more than BUSY_PERCENT of the CPU (and the repeat fits in the time left).
judge() {
    run_trial "$1" "$2"
    if [[ $VERDICT != verdict=ok* ]] && ((OTHERS > BUSY_PERCENT)) && fits; then
        say "  $1: the machine was busy (${OTHERS}%), once more"
        run_trial "$1" "$2"
    fi
}

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# search SYSTEM END_EPOCH: sets BEST_RATE (lines/s, 0 if none passed) and BEST_VERDICT.
search() {
    local system=$1 end=$2 cost lo=0 hi=0 rate steps=0 mid
    BEST_RATE=0
    BEST_VERDICT=""
    BEST_BOUNDED=0
    # The lowest rate tried and its verdict, for the table when no rate passes.
    LOWEST_RATE=0
    LOWEST_VERDICT=""
    cost=$((OVERHEAD_S[$system] + (WARMUP + MEASURE) * INTERVAL_MS / 1000))
    fits() { (($(date +%s) + cost <= end)); }
    if [[ $system == pyspark ]]; then rate=$(lines_of "$PYSPARK_START_WORDS"); else rate=$(lines_of "$START_WORDS"); fi
    while ((steps < MAX_DOUBLINGS)) && fits; do
        steps=$((steps + 1))
        judge "$system" "$rate"
        if ((LOWEST_RATE == 0 || rate < LOWEST_RATE)); then
            LOWEST_RATE=$rate
            LOWEST_VERDICT=$VERDICT
        fi
        if [[ $VERDICT == verdict=ok* ]]; then
            lo=$rate
            BEST_RATE=$rate
            BEST_VERDICT=$VERDICT
            ((hi > 0)) && break
            rate=$((rate * 2))
        else
            hi=$rate
            ((lo > 0)) && break
            rate=$((rate / 2))
            ((rate >= 1)) || break
        fi
    done
    ((hi > 0)) && BEST_BOUNDED=1
    if ((lo == 0 || hi == 0)); then
        if fits; then
            say "  $system: no bracket after $steps trials (raise BENCH_MAX_DOUBLINGS or change BENCH_START_WORDS)"
        else
            say "  $system: time budget reached"
        fi
        return 0
    fi
    steps=0
    while ((steps < BISECT_STEPS)); do
        mid=$(((lo + hi) / 2))
        ((mid > lo && mid < hi)) || break
        if ! fits; then
            say "  $system: bisection cut short by the time budget after $steps steps"
            break
        fi
        steps=$((steps + 1))
        judge "$system" "$mid"
        if [[ $VERDICT == verdict=ok* ]]; then
            lo=$mid
            BEST_RATE=$mid
            BEST_VERDICT=$VERDICT
        else
            hi=$mid
        fi
    done
    say "  $system: highest sustainable $(words_of "$lo") words/s, lowest failed $(words_of "$hi") words/s"
}

label() {
    case $1 in
    ember) echo "ember $EMBER_COMMIT, $EMBER_WORKERS workers" ;;
    ember-cli) echo "the README's main job, ember wordcount $EMBER_COMMIT, $EMBER_WORKERS workers" ;;
    spark) echo "$SPARK_LABEL, $SPARK_MASTER" ;;
    pyspark) echo "$PYSPARK_LABEL, $SPARK_MASTER" ;;
    ember-python) echo "PySpark program on ember $EMBER_COMMIT, 1 process, $EMBER_PYTHON_MASTER" ;;
    ember-python2) echo "PySpark program on ember $EMBER_COMMIT, 2 processes, $EMBER_PYTHON_MASTER each" ;;
    ember-python2-py) echo "the same, every function called in Python" ;;
    spark-sql) echo "PySpark $PYSPARK_VERSION Structured Streaming (JVM), $SPARK_MASTER" ;;
    ember-sql) echo "ember-sql $EMBER_COMMIT (Rust), $EMBER_WORKERS workers" ;;
    ember-sql-py) echo "the PySpark Structured Streaming program on ember $EMBER_COMMIT, $EMBER_PYTHON_MASTER" ;;
    esac
}
short_name() {
    case $1 in
    ember) echo ember ;; ember-cli) echo "ember-wordcount" ;; spark) echo Spark ;; pyspark) echo PySpark ;;
    ember-python) echo "ember-Python(1 process)" ;; ember-python2) echo "ember-Python(2 processes)" ;;
    ember-python2-py) echo "ember-Python(2 processes, no native functions)" ;;
    spark-sql) echo "Spark-SS" ;; ember-sql) echo "ember-SS" ;; ember-sql-py) echo "ember-SS-Python" ;;
    esac
}
# The pairs of systems a ratio is given for, when both ran: faster system first.
RATIO_PAIRS=("ember spark" "ember-cli spark" "ember ember-cli" "ember pyspark" "spark pyspark" "ember-python spark" "ember-python2 spark"
    "ember-python pyspark" "ember-python2 pyspark" "ember-python2 ember-python" "ember ember-python"
    "ember-python2-py spark" "ember-python2 ember-python2-py" "ember-sql spark-sql" "ember-sql-py spark-sql"
    "ember-sql ember-sql-py" "ember-sql spark")

# ---------------------------------------------------------------------------------------------
# Workload 6: launch to first batch, and peak resident memory, at a fixed rate. No search.
if [[ $WORKLOAD == startup ]]; then
    STARTUP_LINES=$(lines_of "$STARTUP_WORDS")
    budget_end=$((START_EPOCH + TIME_BUDGET_S - 15))
    declare -A SU_FIRST SU_WORDS SU_HWM SU_RSS SU_BATCHES
    printf 'system\trun\tprobe\n' >"$RUN_DIR/startup.tsv"
    # The systems take turns, so that a busy spell on the machine does not hit one system only.
    for run in $(seq 1 "$STARTUP_REPEATS"); do
        for s in "${SYSTEM_LIST[@]}"; do
            span=$((STARTUP_S[$s] + STARTUP_BATCHES * INTERVAL_MS / 1000 + 30))
            if (($(date +%s) + OVERHEAD_S[$s] + STARTUP_BATCHES * INTERVAL_MS / 1000 > budget_end)); then
                say "  time budget reached: launch $run of $s skipped"
                continue
            fi
            TRIAL=$((TRIAL + 1))
            log="$RUN_DIR/startup-$(printf '%02d' "$TRIAL")-$s"
            start_generator "$STARTUP_LINES" "$span" "$log.gen.log"
            launch_ns=$(date +%s%N)
            start_job "$s" "$STARTUP_BATCHES" "$log" -
            "$PY" "$BENCH/startup_probe.py" "$JOB_PID" "$log.out" "$launch_ns" "$STARTUP_BATCHES" "$span" >"$log.probe" 2>&1 &
            probe_pid=$!
            PIDS+=("$probe_pid")
            wait "$probe_pid" || say "  warning: startup_probe.py failed, see $log.probe"
            stop_pid "$probe_pid"
            [[ $s == pyspark || $s == spark-sql ]] && adopt_family "$JOB_PID"
            stop_pid "$JOB_PID"
            stop_family
            stop_pid "$GEN_PID"
            probe=$(tail -n1 "$log.probe")
            printf '%s\t%s\t%s\n' "$s" "$run" "$probe" >>"$RUN_DIR/startup.tsv"
            say "  $s launch $run: $probe"
            first=$(field first_batch_ms "$probe")
            if [[ -z $first || $first == -1 ]]; then
                say "  $s printed no batch within ${span} s: $(grep -v '^\s*$' "$log.err" | tail -n1)"
                continue
            fi
            SU_FIRST[$s]+=" $first"
            SU_WORDS[$s]+=" $(field first_words_ms "$probe")"
            SU_HWM[$s]+=" $(field hwm_kb "$probe")"
            SU_RSS[$s]+=" $(field rss_kb "$probe")"
            SU_BATCHES[$s]+=" $(field batches "$probe")"
        done
    done
    median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : "") }'; }
    smallest() { tr ' ' '\n' | grep -v '^$' | sort -n | head -n1; }
    largest() { tr ' ' '\n' | grep -v '^$' | sort -n | tail -n1; }
    {
        echo
        echo "Cold start and memory: socket word count at $(words_of "$STARTUP_LINES") words/s ($STARTUP_LINES lines/s)," \
            "${INTERVAL_MS} ms batches, $STARTUP_REPEATS launches per system of $STARTUP_BATCHES batches each"
        printf '%-44s %8s %17s %17s %13s %13s\n' "system" "launches" "to first batch" "to first words" "peak RSS" "peak sum RSS"
        for s in "${SYSTEM_LIST[@]}"; do
            if [[ -z ${SU_FIRST[$s]:-} ]]; then
                printf '%-44s %8s %17s %17s %13s %13s\n' "$(label "$s")" 0 "no batch" - - -
                continue
            fi
            n=$(wc -w <<<"${SU_FIRST[$s]}")
            printf '%-44s %8s %14s ms %14s ms %10s MB %10s MB\n' "$(label "$s")" "$n" "$(median <<<"${SU_FIRST[$s]}")" \
                "$(median <<<"${SU_WORDS[$s]}")" "$(awk -v k="$(largest <<<"${SU_HWM[$s]}")" 'BEGIN { printf "%.0f", k / 1024 }')" \
                "$(awk -v k="$(largest <<<"${SU_RSS[$s]}")" 'BEGIN { printf "%.0f", k / 1024 }')"
        done
        echo "to first batch, to first words: launch to the first batch line, and to the first batch with words > 0 (medians;"
        echo "  ranges below); peak RSS: the largest over the launches of the sum of VmHWM over the job's processes;"
        echo "  peak sum RSS: the largest sum of VmRSS over them at one 50 ms sample"
        for s in "${SYSTEM_LIST[@]}"; do
            [[ -n ${SU_FIRST[$s]:-} ]] || continue
            echo "$s: to first batch $(smallest <<<"${SU_FIRST[$s]}")-$(largest <<<"${SU_FIRST[$s]}") ms," \
                "to first words $(smallest <<<"${SU_WORDS[$s]}")-$(largest <<<"${SU_WORDS[$s]}") ms," \
                "peak RSS $(awk -v a="$(smallest <<<"${SU_HWM[$s]}")" -v b="$(largest <<<"${SU_HWM[$s]}")" \
                    'BEGIN { printf "%.0f-%.0f", a / 1024, b / 1024 }') MB," \
                "batches seen:${SU_BATCHES[$s]}"
        done
        for pair in "${RATIO_PAIRS[@]}"; do
            read -r a b <<<"$pair"
            [[ -n ${SU_FIRST[$a]:-} && -n ${SU_FIRST[$b]:-} ]] || continue
            echo "ratio $(short_name "$b")/$(short_name "$a") (this run): to first batch" \
                "$(awk -v x="$(median <<<"${SU_FIRST[$b]}")" -v y="$(median <<<"${SU_FIRST[$a]}")" 'BEGIN { printf "%.2f", x / y }'), peak RSS" \
                "$(awk -v x="$(largest <<<"${SU_HWM[$b]}")" -v y="$(largest <<<"${SU_HWM[$a]}")" 'BEGIN { printf "%.2f", x / y }')"
        done
        echo "whole run $(elapsed) s; launches: $RUN_DIR/startup.tsv"
    } | tee "$RUN_DIR/table.txt"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Workloads 1 to 5: the searches.
declare -A RESULT_RATE RESULT_VERDICT RESULT_BOUNDED RESULT_LOWEST_RATE RESULT_LOWEST_VERDICT
search_start=$(date +%s)
budget_end=$((START_EPOCH + TIME_BUDGET_S - 15))
# Spark's trials take longer (JVM start), so it gets the larger share of what is left.
weight_total=0
for s in "${SYSTEM_LIST[@]}"; do
    weight_total=$((weight_total + WEIGHT[$s]))
done
left_weight=$weight_total
for s in "${SYSTEM_LIST[@]}"; do
    w=${WEIGHT[$s]}
    now=$(date +%s)
    end=$((now + (budget_end - now) * w / left_weight))
    left_weight=$((left_weight - w))
    say "searching $s until +$((end - START_EPOCH))s"
    search "$s" "$end"
    RESULT_RATE[$s]=$BEST_RATE
    RESULT_VERDICT[$s]=$BEST_VERDICT
    RESULT_BOUNDED[$s]=$BEST_BOUNDED
    RESULT_LOWEST_RATE[$s]=$LOWEST_RATE
    RESULT_LOWEST_VERDICT[$s]=$LOWEST_VERDICT
done
search_s=$(($(date +%s) - search_start))

# ---------------------------------------------------------------------------------------------
# 4. The table.
{
    echo
    case $WORKLOAD in
    wordcount) echo -n "Socket word count (reduce_by_key)" ;;
    files)
        echo -n "File-stream word count (reduce_by_key over text_file_stream; ember gen files moves $FILES_PER_BATCH files"
        echo -n " a batch into the directory"
        [[ $FILES_DISTINCT != 0 ]] && echo -n ", hard links to $FILES_DISTINCT distinct files written first"
        echo -n ")"
        ;;
    window) echo -n "Socket windowed word count (reduce_by_key_and_window with the inverse function, ${WINDOW_S} s window, one-interval slide)" ;;
    state)
        echo -n "Socket running word count (update_state_by_key"
        [[ $INITIAL_FILE == - ]] || echo -n ", every word of the vocabulary in the initial state"
        echo -n ")"
        ;;
    esac
    ckpt="Spark checkpoints"
    [[ $EMBER_CHECKPOINT == 1 ]] && ckpt="both checkpoint"
    [[ $WORKLOAD == wordcount || $WORKLOAD == files ]] && ckpt="no checkpoints"
    echo ", ${INTERVAL_MS} ms batches, $ckpt, generator --kind $KIND ($WORDS_PER_LINE words/line)," \
        "$WARMUP warm-up + $MEASURE measured batches per trial"
    if ((INTERVAL_MS < 1000)); then
        echo "thresholds for ${INTERVAL_MS} ms batches: processing p$(awk -v q="$PROC_QUANTILE" 'BEGIN { print q * 100 }') < ${INTERVAL_MS} ms," \
            "delay growth < ${GROWTH_MS} ms, delay at the end < ${SETTLED_MS} ms$( ((INTERVAL_MS < 200)) && echo ", Spark block interval ${INTERVAL_MS} ms")"
    fi
    printf '%-62s %16s %12s %12s %12s\n' "system" "max words/s" "lines/s" "p50 delay" "p99 delay"
    for s in "${SYSTEM_LIST[@]}"; do
        r=${RESULT_RATE[$s]}
        v=${RESULT_VERDICT[$s]}
        if ((r > 0)); then
            # ">=": no higher rate failed (the search ran out of steps or time first).
            bound=""
            ((RESULT_BOUNDED[$s])) || bound=">="
            printf '%-62s %16s %12s %9s ms %9s ms\n' "$(label "$s")" "$bound$(words_of "$r")" "$bound$r" "$(field p50_ms "$v")" \
                "$(field p99_ms "$v")"
        else
            printf '%-62s %16s %12s %12s %12s\n' "$(label "$s")" "none passed" "-" "-" "-"
        fi
    done
    for s in "${SYSTEM_LIST[@]}"; do
        if ((RESULT_RATE[$s] == 0 && RESULT_LOWEST_RATE[$s] > 0)); then
            echo "$s passed no rate; at the lowest tried, $(words_of "${RESULT_LOWEST_RATE[$s]}") words/s:" \
                "${RESULT_LOWEST_VERDICT[$s]}"
        fi
    done
    if [[ $WORKLOAD == window || $WORKLOAD == state ]]; then
        for s in "${SYSTEM_LIST[@]}"; do
            v=${RESULT_VERDICT[$s]}
            [[ -n $v ]] || continue
            echo "$s at its highest sustainable rate: $(field keys_first "$v") keys in the" \
                "$([[ $WORKLOAD == window ]] && echo window || echo state) at the first measured batch, $(field keys_last "$v") at the last"
        done
    fi
    for pair in "${RATIO_PAIRS[@]}"; do
        read -r a b <<<"$pair"
        if [[ -n "${RESULT_RATE[$a]:-}" && -n "${RESULT_RATE[$b]:-}" ]] && ((RESULT_RATE[$a] > 0 && RESULT_RATE[$b] > 0)); then
            bounds=""
            ((RESULT_BOUNDED[$a] && RESULT_BOUNDED[$b])) || bounds=" (a bound only: a search found no failing rate)"
            echo "ratio $(short_name "$a")/$(short_name "$b") (max sustainable words/s, this run):" \
                "$(awk -v x="${RESULT_RATE[$a]}" -v y="${RESULT_RATE[$b]}" 'BEGIN { printf "%.2f", x / y }')$bounds"
        fi
    done
    source_name="the generator's unpaced rate"
    [[ $WORKLOAD == files ]] && source_name="the file writer's unpaced rate"
    for s in "${SYSTEM_LIST[@]}"; do
        r=${RESULT_RATE[$s]}
        if ((r > 0 && r * 10 >= GEN_MAX_LINES * 8)); then
            echo "note: $s's rate is at least 80% of $source_name ($GEN_MAX_LINES lines/s): the generator may be the limit"
        fi
    done
    echo "other processes took at most ${MAX_OTHERS}% of the machine's CPU during a trial"
    if ((MAX_OTHERS > BUSY_PERCENT)); then
        echo "warning: the machine was busy with other work during some trials (see trials.tsv): run again when it is quiet"
    fi
    if [[ $WORKLOAD == files ]]; then
        echo "file writer unpaced: $(words_of "$GEN_MAX_LINES") words/s; search ${search_s} s; whole run $(elapsed) s"
    else
        echo "generator unpaced: $(words_of "$GEN_MAX_LINES") words/s to one client; search ${search_s} s; whole run $(elapsed) s"
    fi
    echo "trials: $RUN_DIR/trials.tsv"
} | tee "$RUN_DIR/table.txt"
