#!/usr/bin/env bash
# Issue 28's benchmark: a windowed count over many keys with a watermark, side by side. Each
# system runs the same query (crates/ember-sql/examples/bench_window_state.rs for ember-sql;
# bench/spark/window_state.py on PySpark 3.5.9 Structured Streaming for spark-sql) over its own
# rate source at the same rows per second, for the same time, while this script samples the
# resident memory of the job's processes every 5 s. It prints, per system, the batches (rows,
# processing time, groups in state, watermark) and the memory samples, and a summary: the
# micro-batches that took longer than the 1 s trigger, the rows per second counted, and the
# resident memory in the first and the last minute.
#
#   BENCH_SYSTEMS   systems, in order [ember-sql spark-sql]
#   BENCH_RATE      rows per second of the rate source [200000]
#   BENCH_SECONDS   how long each system runs [600]
#   BENCH_KEYS      distinct keys (value % KEYS) [1000000]
#   BENCH_QUERY     window, or join: a stream-stream join of two rate sources of BENCH_RATE each [window]
#   BENCH_SKIP_BUILD 1: use the existing release build of the example [0]
#
# Everything goes to bench/.work/window-state-<date>/; it needs bench/compare.sh's venv with
# pyspark (bench/.work/venv; compare.sh installs it).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SYSTEMS=${BENCH_SYSTEMS:-ember-sql spark-sql}
RATE=${BENCH_RATE:-200000}
SECONDS_EACH=${BENCH_SECONDS:-600}
KEYS=${BENCH_KEYS:-1000000}
QUERY=${BENCH_QUERY:-window}
PY="$ROOT/bench/.work/venv/bin/python"
RUN="$ROOT/bench/.work/$QUERY-state-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RUN"
say() { echo "window_state.sh: $*" | tee -a "$RUN/summary.txt"; }

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release -p ember-sql --example bench_window_state) >"$RUN/cargo.log" 2>&1 ||
        { echo "cargo build failed, see $RUN/cargo.log" >&2; exit 1; }
fi
JOB="$ROOT/target/release/examples/bench_window_state"

# The resident memory (KiB) of a process and its descendants.
rss_tree() {
    local pids
    pids=$(ps -eo pid=,ppid= | awk -v root="$1" '{ parent[$1] = $2 } END {
        for (p in parent) { q = p; while (q != "" && q != 0 && q != root) q = parent[q]; if (q == root) print p } }')
    ps -o rss= -p "$(echo "$pids" | paste -sd, -)" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}

say "$QUERY, rate $RATE rows/s, $KEYS keys, $SECONDS_EACH s per system, commit $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%FT%TZ)"
for system in $SYSTEMS; do
    out="$RUN/$system.out"
    case $system in
    ember-sql) "$JOB" "$RATE" "$SECONDS_EACH" "$KEYS" 2 "$QUERY" >"$out" 2>"$RUN/$system.err" & ;;
    spark-sql) PYSPARK_PYTHON="$PY" "$PY" "$ROOT/bench/spark/window_state.py" "$RATE" "$SECONDS_EACH" "$KEYS" "local[2]" "$QUERY" \
        --conf spark.driver.memory=2g >"$out" 2>"$RUN/$system.err" & ;;
    *) echo "unknown system $system" >&2; exit 2 ;;
    esac
    pid=$!
    start=$(date +%s)
    while kill -0 "$pid" 2>/dev/null; do
        echo "MEM t_s=$(($(date +%s) - start)) rss_kb=$(rss_tree "$pid")" >>"$out.mem"
        sleep 5
    done
    wait "$pid" || say "$system exited with $?"
    "$PY" - "$system" "$out" "$out.mem" <<'PYTHON' | tee -a "$RUN/summary.txt"
import re, sys
system, out, mem = sys.argv[1:4]
batches = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in open(out) if line.startswith("BATCH ")]
samples = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in open(mem)]
if not batches:
    print("%s: no batches" % system)
    sys.exit()
late = [b for b in batches if int(b["proc_ms"]) > 1000]
span_s = (int(batches[-1]["t_ms"]) - int(batches[0]["t_ms"])) / 1000 or 1
rows = sum(int(b["rows"]) for b in batches[1:])
rss = [(int(s["t_s"]), int(s["rss_kb"])) for s in samples if int(s["rss_kb"]) > 0]
first = [kb for t, kb in rss if 60 <= t < 120]
last = [kb for t, kb in rss if t >= rss[-1][0] - 60] if rss else []
mb = lambda xs: "%.0f" % (sum(xs) / len(xs) / 1024) if xs else "-"
procs = sorted(int(b["proc_ms"]) for b in batches)
print("%s: %d batches, %d over the 1 s trigger; %.0f rows/s counted; processing p50 %d ms, p99 %d ms; "
      "state %s groups at the end (max %d); RSS %s MB in minute 2, %s MB in the last minute (max %s MB)"
      % (system, len(batches), len(late), rows / span_s, procs[len(procs) // 2], procs[int(len(procs) * 0.99) - 1 if len(procs) > 1 else 0],
         batches[-1]["state"], max(int(b["state"]) for b in batches), mb(first), mb(last),
         "%.0f" % (max(kb for _, kb in rss) / 1024) if rss else "-"))
PYTHON
done
say "files in $RUN"
