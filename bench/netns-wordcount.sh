#!/usr/bin/env bash
# The word count as a cluster of 1, 2 and 3 processes, one per Linux network namespace (their
# own addresses on a bridge of their own, so every exchange crosses a network interface), under
# `ember cluster --hosts`: words per second (process 0's figure, batches back to back) and the
# bytes the namespaces' links carried per second; 2 and 3 processes also with `--tls` (TLS on
# every connection between them). Needs root (ip netns); removes what it makes.
# Builds: cargo build --release -p ember --features tls --example bench_cluster_wordcount, and
# the debug `ember` (the supervisor only launches). Arguments: batches (default 40), lines per partition and
# batch (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
batches="${1:-40}"
lines="${2:-20000}"
job=target/release/examples/bench_cluster_wordcount
supervisor=target/debug/ember
[[ -x $job && -x $supervisor ]] || { echo "build $job and $supervisor first" >&2; exit 2; }
tag=$(( $$ % 10000 ))
bridge="ebb$tag"
cleanup() {
  for i in 0 1 2; do ip netns del "ebn$tag-$i" 2>/dev/null || true; done
  ip link del "$bridge" 2>/dev/null || true
}
trap cleanup EXIT
ip link add "$bridge" type bridge
ip link set "$bridge" up
for i in 0 1 2; do
  ns="ebn$tag-$i"
  ip netns add "$ns"
  ip link add "ebv$tag$i" type veth peer name "ebp$tag$i"
  ip link set "ebp$tag$i" netns "$ns"
  ip link set "ebv$tag$i" master "$bridge"
  ip link set "ebv$tag$i" up
  ip netns exec "$ns" ip addr add "10.212.$(( tag % 250 )).$(( i + 1 ))/24" dev "ebp$tag$i"
  ip netns exec "$ns" ip link set "ebp$tag$i" up
  ip netns exec "$ns" ip link set lo up
done
# Bytes received by the bridge from every namespace's link (what the processes sent).
sent() { local total=0; for i in 0 1 2; do total=$(( total + $(cat /sys/class/net/ebv$tag$i/statistics/rx_bytes) )); done; echo $total; }
echo "| processes | connections | words/s (process 0) | bytes the links carried | per second |"
echo "| --- | --- | --- | --- | --- |"
for run in 1 2 2-tls 3 3-tls; do
  n=${run%-tls}
  tls=()
  mode=plain
  if [[ $run == *-tls ]]; then tls=(--tls); mode=TLS; fi
  hosts=$(mktemp)
  for i in $(seq 0 $(( n - 1 ))); do echo "10.212.$(( tag % 250 )).$(( i + 1 )) ip netns exec ebn$tag-$i" >>"$hosts"; done
  before=$(sent)
  start=$(date +%s.%N)
  out=$("$supervisor" cluster --hosts "$hosts" --restart-attempts 0 "${tls[@]}" -- "$job" "$batches" "$lines" 2>/dev/null | grep EMBER-BENCH)
  end=$(date +%s.%N)
  bytes=$(( $(sent) - before ))
  rate=$(sed 's/.*words_per_s=\([0-9]*\).*/\1/' <<<"$out")
  per_s=$(python3 -c "print(f'{$bytes / ($end - $start) / 1e3:.1f} kB/s over the whole run ({$end - $start:.1f} s)')")
  echo "| $n | $mode | $rate | $bytes | $per_s |"
  rm -f "$hosts"
done
