#!/usr/bin/env bash
# Side-by-side socket word counts: ember against Spark Streaming (JVM), on this machine, in one
# run (issue 12: 1 s batches).
#
#   bench/compare.sh                          # workload 1: reduce_by_key per batch
#   BENCH_WORKLOAD=window bench/compare.sh    # workload 3: reduce_by_key_and_window with the
#                                             # inverse function, 30 s window, 1 s slide
#   BENCH_WORKLOAD=state bench/compare.sh     # workload 4: update_state_by_key, 1,000,000 keys
#
# 1. Installs Spark from PyPI into a venv under bench/.work/ (the pyspark package carries
#    Spark's jars), compiles bench/spark/SocketWordCount.java and SocketStatefulCount.java
#    against those jars with javac, and builds ember (`ember` for the generator, the
#    `bench_wordcount` example, whose JOB argument selects the workload) in release.
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
#    that rate, and the ratio ember/Spark from this run.
#
# Everything it writes goes to bench/.work/ (git-ignored): the venv, the classes, and one
# folder per run with every trial's logs, trials.tsv and table.txt. It kills every process it
# started when it ends, however it ends. The whole run stays within BENCH_TIME_BUDGET_S
# (default 1140 s, 19 min), setup included: the search ends early when the next trial would
# not fit.
#
# Settings (environment variables, defaults in brackets):
#   BENCH_WORKLOAD          wordcount, window or state [wordcount]
#                           wordcount: reduce_by_key (Spark: reduceByKey), the output gathers
#                             the batch's counts;
#                           window: reduce_by_key_and_window_inv(+, -, BENCH_WINDOW_S, one
#                             interval) (Spark: reduceByKeyAndWindow(+, -, window, slide));
#                           state: update_state_by_key, a running count per word (Spark:
#                             updateStateByKey).
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
#   BENCH_SYSTEMS           systems to run, in order ["ember spark"]
#   BENCH_INTERVAL_MS       batch interval [1000]
#   BENCH_WARMUP_BATCHES    batches dropped at the start of each trial [10; window: the
#                           window's batches + 5, so that batches leave the window during all
#                           measured batches]; the JVM needs several to compile its hot code,
#                           and a backlog built then drains during the measured batches
#   BENCH_MEASURE_BATCHES   batches judged in each trial [15]
#   BENCH_START_WORDS       first rate tried, words/s [500000]
#   BENCH_MAX_DOUBLINGS     most trials while doubling or halving [8]
#   BENCH_BISECT_STEPS      trials of bisection after that [4]
#   BENCH_TIME_BUDGET_S     the whole run, seconds [1140]
#   BENCH_RECV_FRACTION     share of the offered words a trial must count [0.95]
#   BENCH_PROC_QUANTILE     quantile of processing time that must stay below the interval [0.9]
#   BENCH_GROWTH_MS         most growth of total delay over the measured batches [250]
#   BENCH_SETTLED_MS        total delay the last measured batches must be under (median of the
#                           last three) [2 intervals]
#   BENCH_ABORT_DELAY_MS    a trial stops early once a batch's total delay passes this [10000]
#   BENCH_BUSY_PERCENT      a failed trial is run once more when processes this script did not
#                           start took more than this share of the machine's CPU meanwhile [15]
#   BENCH_KIND              the generator's --kind [wordcount: words, window: vocab5000,
#                           state: vocab1m]. words: 8 words a line, 12-word vocabulary;
#                           vocab5000: lines of 10 words from a 5,000-word vocabulary (the
#                           issue's workload), written to bench/.work/ and served as file:PATH;
#                           vocab1m: 500,000 lines of 10 words from a 1,000,000-word
#                           vocabulary (99% of the words occur), written once to bench/.work/
#                           and served as file:PATH
#   BENCH_EMBER_WORKERS     ember's worker threads [2]
#   BENCH_SPARK_MASTER      Spark's master [local[2]]
#   BENCH_SPARK_HEAP        the JVM's -Xmx [2g]
#   BENCH_SPARK_JAVA_OPTS   more JVM options, e.g. -Dspark.serializer=... [none]
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
case $WORKLOAD in
wordcount)
    DEFAULT_KIND=words
    DEFAULT_WARMUP=10
    ;;
window)
    DEFAULT_KIND=vocab5000
    DEFAULT_WARMUP=$((WINDOW_S * 1000 / INTERVAL_MS + 5))
    ;;
state)
    DEFAULT_KIND=vocab1m
    DEFAULT_WARMUP=10
    ;;
*)
    echo "compare.sh: BENCH_WORKLOAD must be wordcount, window or state, not $WORKLOAD" >&2
    exit 2
    ;;
esac
WARMUP=${BENCH_WARMUP_BATCHES:-$DEFAULT_WARMUP}
MEASURE=${BENCH_MEASURE_BATCHES:-15}
START_WORDS=${BENCH_START_WORDS:-500000}
MAX_DOUBLINGS=${BENCH_MAX_DOUBLINGS:-8}
BISECT_STEPS=${BENCH_BISECT_STEPS:-4}
TIME_BUDGET_S=${BENCH_TIME_BUDGET_S:-1140}
RECV_FRACTION=${BENCH_RECV_FRACTION:-0.95}
PROC_QUANTILE=${BENCH_PROC_QUANTILE:-0.9}
GROWTH_MS=${BENCH_GROWTH_MS:-250}
SETTLED_MS=${BENCH_SETTLED_MS:-$((2 * INTERVAL_MS))}
ABORT_DELAY_MS=${BENCH_ABORT_DELAY_MS:-10000}
BUSY_PERCENT=${BENCH_BUSY_PERCENT:-15}
KIND=${BENCH_KIND:-$DEFAULT_KIND}
EMBER_WORKERS=${BENCH_EMBER_WORKERS:-2}
SPARK_MASTER=${BENCH_SPARK_MASTER:-local[2]}
SPARK_HEAP=${BENCH_SPARK_HEAP:-2g}
SPARK_JAVA_OPTS=${BENCH_SPARK_JAVA_OPTS:-}
PYSPARK_VERSION=${BENCH_PYSPARK_VERSION:-3.5.9}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}

# Seconds a trial may take before its first batch line: process start, and for Spark the JVM,
# the SparkContext and the receiver.
STARTUP_S_EMBER=15
STARTUP_S_SPARK=60
# What a trial usually costs beyond its batches, for planning the time budget.
OVERHEAD_S_EMBER=4
OVERHEAD_S_SPARK=14

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
# Processes: every child is recorded, and stopped (TERM, then KILL) when the script ends.
PIDS=()

stop_pid() {
    local pid=$1 i p kept=()
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
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
say "Spark $SPARK_VERSION (Scala $SPARK_SCALA) from pyspark $PYSPARK_VERSION, jars in $JARS"
java -version >"$RUN_DIR/java-version.txt" 2>&1 || die "java is not on PATH"
say "$(head -n1 "$RUN_DIR/java-version.txt")"

CLASSES="$WORK/classes"
rm -rf "$CLASSES"
mkdir -p "$CLASSES"
javac -nowarn -cp "$JARS/*" -d "$CLASSES" "$BENCH/spark/SocketWordCount.java" "$BENCH/spark/SocketStatefulCount.java" \
    >"$RUN_DIR/javac.log" 2>&1 ||
    die "javac failed, see $RUN_DIR/javac.log"
SPARK_CP="$CLASSES:$JARS/*"
# The module options spark-submit adds on Java 17, from this Spark's own launcher.
read -r -a JAVA_MODULE_OPTS <<<"$(java -cp "$SPARK_CP" SocketWordCount --java-options)"
read -r -a EXTRA_JAVA_OPTS <<<"$SPARK_JAVA_OPTS"
echo "${JAVA_MODULE_OPTS[*]}" >"$RUN_DIR/java-options.txt"

if [[ "$SKIP_BUILD" != 1 ]]; then
    say "building ember (release)"
    (cd "$ROOT" && cargo build --release -p ember-cli && cargo build --release -p ember --example bench_wordcount) \
        >"$RUN_DIR/cargo.log" 2>&1 || die "cargo build failed, see $RUN_DIR/cargo.log"
fi
EMBER_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z "$(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]] || EMBER_COMMIT="$EMBER_COMMIT+changes"
EMBER="$ROOT/target/release/ember"
EMBER_JOB="$ROOT/target/release/examples/bench_wordcount"
[[ -x "$EMBER" && -x "$EMBER_JOB" ]] || die "missing $EMBER or $EMBER_JOB"
say "setup done; workload $WORKLOAD, $WARMUP warm-up + $MEASURE measured batches per trial"

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

# run_trial SYSTEM LINES_PER_S: sets VERDICT (verdict.py's line). Also measures how much of
# the machine's CPU went to processes this script did not start during the trial (OTHERS, in
# percent): other work on a shared machine makes a trial fail early.
run_trial() {
    local system=$1 rate=$2 log startup batches deadline first_seen=0 count last job_pid
    local ticks_before ours_before ticks_after
    TRIAL=$((TRIAL + 1))
    ticks_before=$(cpu_ticks)
    children_seconds
    ours_before=$CHILD_S
    log="$RUN_DIR/trial-$(printf '%02d' "$TRIAL")-$system-$rate"
    batches=$((WARMUP + MEASURE))
    if [[ $system == ember ]]; then startup=$STARTUP_S_EMBER; else startup=$STARTUP_S_SPARK; fi
    local span=$((startup + batches * INTERVAL_MS / 1000 + 30))
    start_generator "$rate" "$span" "$log.gen.log"
    # A fresh checkpoint directory per trial (Spark's window and state jobs need one), removed
    # after it. The job's stderr is opened for appending, as the notes this script adds to it
    # while the job runs would otherwise be overwritten by the job's later output.
    local checkpoint="$log.checkpoint"
    case $system in
    ember)
        local ember_checkpoint=-
        [[ $EMBER_CHECKPOINT == 1 ]] && ember_checkpoint=$checkpoint
        "$EMBER_JOB" 127.0.0.1 "$GEN_PORT" "$batches" "$INTERVAL_MS" "$EMBER_WORKERS" "$WORKLOAD" "$((WINDOW_S * 1000))" \
            "$ember_checkpoint" "$INITIAL_FILE" >"$log.out" 2>>"$log.err" &
        ;;
    spark)
        if [[ $WORKLOAD == wordcount ]]; then
            java "${JAVA_MODULE_OPTS[@]}" "-Xmx$SPARK_HEAP" "${EXTRA_JAVA_OPTS[@]}" -cp "$SPARK_CP" \
                SocketWordCount 127.0.0.1 "$GEN_PORT" "$batches" "$INTERVAL_MS" "$SPARK_MASTER" >"$log.out" 2>>"$log.err" &
        else
            java "${JAVA_MODULE_OPTS[@]}" "-Xmx$SPARK_HEAP" "${EXTRA_JAVA_OPTS[@]}" -cp "$SPARK_CP" \
                SocketStatefulCount 127.0.0.1 "$GEN_PORT" "$batches" "$INTERVAL_MS" "$WORKLOAD" "$((WINDOW_S * 1000))" \
                "$checkpoint" "$SPARK_MASTER" "$INITIAL_FILE" >"$log.out" 2>>"$log.err" &
        fi
        ;;
    esac
    job_pid=$!
    PIDS+=("$job_pid")
    # Until every batch is in, the job ends, the first batch is late, the batches are late
    # (a system far behind), or a batch's delay passes the abort limit.
    deadline=$(($(date +%s) + startup))
    while kill -0 "$job_pid" 2>/dev/null; do
        count=$(grep -c '^BATCH ' "$log.out" || true)
        ((count >= batches)) && break
        if ((count > 0 && first_seen == 0)); then
            first_seen=1
            deadline=$(($(date +%s) + (batches - count) * INTERVAL_MS / 1000 + 3 * INTERVAL_MS / 1000 + 5))
        fi
        if (($(date +%s) > deadline)); then
            echo "compare.sh: trial stopped at its deadline after $count batches" >>"$log.err"
            break
        fi
        last=$({ grep '^BATCH ' "$log.out" || true; } | tail -n1 | sed -n 's/.*total_ms=\([0-9]*\).*/\1/p')
        if [[ -n "$last" ]] && ((last > ABORT_DELAY_MS)); then
            echo "compare.sh: trial stopped: total delay $last ms > $ABORT_DELAY_MS ms" >>"$log.err"
            break
        fi
        sleep 0.25
    done
    stop_pid "$job_pid"
    stop_pid "$GEN_PID"
    if [[ -d $checkpoint ]]; then
        du -sk "$checkpoint" | awk '{ print "compare.sh: checkpoint directory " $1 " KiB" }' >>"$log.err"
        rm -rf "$checkpoint"
    fi
    ticks_after=$(cpu_ticks)
    children_seconds
    OTHERS=$(awk -v b="$ticks_before" -v a="$ticks_after" -v o1="$ours_before" -v o2="$CHILD_S" -v hz="$CLK_TCK" \
        'BEGIN { split(b, x, " "); split(a, y, " "); busy = y[1] - x[1]; total = y[2] - x[2];
                 others = busy - (o2 - o1) * hz; if (others < 0) others = 0;
                 printf "%.0f", (total > 0 ? 100 * others / total : 0) }')
    ((OTHERS > MAX_OTHERS)) && MAX_OTHERS=$OTHERS
    VERDICT=$("$PY" "$BENCH/verdict.py" "$log.out" --offered-words-per-s "$(words_of "$rate")" \
        --interval-ms "$INTERVAL_MS" --warmup "$WARMUP" --measure "$MEASURE" --recv-fraction "$RECV_FRACTION" \
        --proc-quantile "$PROC_QUANTILE" --growth-ms "$GROWTH_MS" --settled-ms "$SETTLED_MS")
    printf '%s\t%s\t%s\t%s\t%s\n' "$system" "$rate" "$(words_of "$rate")" "$OTHERS" "$VERDICT" >>"$RUN_DIR/trials.tsv"
    say "  $system at $(words_of "$rate") words/s ($rate lines/s), other processes ${OTHERS}% of the CPU: $VERDICT"
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
    if [[ $system == ember ]]; then cost=$OVERHEAD_S_EMBER; else cost=$OVERHEAD_S_SPARK; fi
    cost=$((cost + (WARMUP + MEASURE) * INTERVAL_MS / 1000))
    fits() { (($(date +%s) + cost <= end)); }
    rate=$(lines_of "$START_WORDS")
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

declare -A RESULT_RATE RESULT_VERDICT RESULT_BOUNDED RESULT_LOWEST_RATE RESULT_LOWEST_VERDICT
read -r -a SYSTEM_LIST <<<"$SYSTEMS"
search_start=$(date +%s)
budget_end=$((START_EPOCH + TIME_BUDGET_S - 15))
# Spark's trials take longer (JVM start), so it gets the larger share of what is left.
weight_total=0
for s in "${SYSTEM_LIST[@]}"; do
    case $s in ember) weight_total=$((weight_total + 2)) ;; spark) weight_total=$((weight_total + 3)) ;; *) die "unknown system $s (ember, spark)" ;; esac
done
left_weight=$weight_total
for s in "${SYSTEM_LIST[@]}"; do
    if [[ $s == ember ]]; then w=2; else w=3; fi
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
label() {
    case $1 in
    ember) echo "ember $EMBER_COMMIT, $EMBER_WORKERS workers" ;;
    spark) echo "$SPARK_LABEL, $SPARK_MASTER" ;;
    esac
}
{
    echo
    case $WORKLOAD in
    wordcount) echo -n "Socket word count (reduce_by_key)" ;;
    window) echo -n "Socket windowed word count (reduce_by_key_and_window with the inverse function, ${WINDOW_S} s window, one-interval slide)" ;;
    state)
        echo -n "Socket running word count (update_state_by_key"
        [[ $INITIAL_FILE == - ]] || echo -n ", every word of the vocabulary in the initial state"
        echo -n ")"
        ;;
    esac
    ckpt="Spark checkpoints"
    [[ $EMBER_CHECKPOINT == 1 ]] && ckpt="both checkpoint"
    [[ $WORKLOAD == wordcount ]] && ckpt="no checkpoints"
    echo ", ${INTERVAL_MS} ms batches, $ckpt, generator --kind $KIND ($WORDS_PER_LINE words/line)," \
        "$WARMUP warm-up + $MEASURE measured batches per trial"
    printf '%-48s %16s %12s %12s %12s\n' "system" "max words/s" "lines/s" "p50 delay" "p99 delay"
    for s in "${SYSTEM_LIST[@]}"; do
        r=${RESULT_RATE[$s]}
        v=${RESULT_VERDICT[$s]}
        if ((r > 0)); then
            # ">=": no higher rate failed (the search ran out of steps or time first).
            bound=""
            ((RESULT_BOUNDED[$s])) || bound=">="
            printf '%-48s %16s %12s %9s ms %9s ms\n' "$(label "$s")" "$bound$(words_of "$r")" "$bound$r" "$(field p50_ms "$v")" \
                "$(field p99_ms "$v")"
        else
            printf '%-48s %16s %12s %12s %12s\n' "$(label "$s")" "none passed" "-" "-" "-"
        fi
    done
    for s in "${SYSTEM_LIST[@]}"; do
        if ((RESULT_RATE[$s] == 0 && RESULT_LOWEST_RATE[$s] > 0)); then
            echo "$s passed no rate; at the lowest tried, $(words_of "${RESULT_LOWEST_RATE[$s]}") words/s:" \
                "${RESULT_LOWEST_VERDICT[$s]}"
        fi
    done
    if [[ $WORKLOAD != wordcount ]]; then
        for s in "${SYSTEM_LIST[@]}"; do
            v=${RESULT_VERDICT[$s]}
            [[ -n $v ]] || continue
            echo "$s at its highest sustainable rate: $(field keys_first "$v") keys in the" \
                "$([[ $WORKLOAD == window ]] && echo window || echo state) at the first measured batch, $(field keys_last "$v") at the last"
        done
    fi
    if [[ -n "${RESULT_RATE[ember]:-}" && -n "${RESULT_RATE[spark]:-}" ]] && ((RESULT_RATE[ember] > 0 && RESULT_RATE[spark] > 0)); then
        bounds=""
        ((RESULT_BOUNDED[ember] && RESULT_BOUNDED[spark])) || bounds=" (a bound only: a search found no failing rate)"
        echo "ratio ember/Spark (max sustainable words/s, this run): $(awk -v a="${RESULT_RATE[ember]}" -v b="${RESULT_RATE[spark]}" 'BEGIN { printf "%.2f", a / b }')$bounds"
    fi
    for s in "${SYSTEM_LIST[@]}"; do
        r=${RESULT_RATE[$s]}
        if ((r > 0 && r * 10 >= GEN_MAX_LINES * 8)); then
            echo "note: $s's rate is at least 80% of the generator's unpaced rate ($GEN_MAX_LINES lines/s): the generator may be the limit"
        fi
    done
    echo "other processes took at most ${MAX_OTHERS}% of the machine's CPU during a trial"
    if ((MAX_OTHERS > BUSY_PERCENT)); then
        echo "warning: the machine was busy with other work during some trials (see trials.tsv): run again when it is quiet"
    fi
    echo "generator unpaced: $(words_of "$GEN_MAX_LINES") words/s to one client; search ${search_s} s; whole run $(elapsed) s"
    echo "trials: $RUN_DIR/trials.tsv"
} | tee "$RUN_DIR/table.txt"
