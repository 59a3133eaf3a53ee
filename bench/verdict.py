#!/usr/bin/env python3
"""Judges one trial of bench/compare.sh: was the offered rate sustainable?

Reads the per-batch lines that both systems' jobs print,

    BATCH time_ms=T keys=K words=W [sum=S] [records=N] proc_ms=P sched_ms=S total_ms=D

(words is the batch's input words: counted by the word count, derived from the per-batch sums
of counts by the window and state jobs; a line without words but with records, the input lines
a streaming listener saw (`ember wordcount --report`), has records times --words-per-record;
other fields are informative)

skips the warm-up batches, takes the next MEASURE batches and prints one line of key=value
pairs, the first being verdict=ok or verdict=fail. A rate is sustainable when all of these
hold over the measured batches:

- there are MEASURE of them (a system that fell far behind did not finish them in time);
- the words counted per second are at least RECV_FRACTION of the words offered (a receiver that
  cannot keep up slows the generator through TCP instead of building a backlog);
- the PROC_QUANTILE quantile of the processing time is below the batch interval;
- the total delay does not grow: the least-squares line through it rises by less than
  GROWTH_MS from the first measured batch to the last;
- the total delay has settled: the median of the last SETTLED_BATCHES measured batches (by
  default three, or as many as fill 3 s when batches are shorter than 1 s) is below
  SETTLED_MS (a backlog left from the warm-up, say while the JVM compiles its hot code, must
  have drained by the end; a rate whose processing time only just fits the interval leaves
  it standing).

p50 and p99 of the total delay are nearest-rank quantiles (with 15 batches, p99 is the
largest).
"""

import argparse
import math
import re
import sys

FIELD = re.compile(r"(\w+)=(-?\d+)")


def quantile(values, q):
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def growth(values):
    """Rise of the least-squares line through values (against their index), first to last."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    sxx = sum((i - mean_x) ** 2 for i in range(n))
    sxy = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return sxy / sxx * (n - 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--offered-words-per-s", type=float, required=True)
    ap.add_argument("--interval-ms", type=float, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--measure", type=int, required=True)
    ap.add_argument("--recv-fraction", type=float, default=0.95)
    ap.add_argument("--proc-quantile", type=float, default=0.9)
    ap.add_argument("--growth-ms", type=float, default=250.0)
    ap.add_argument("--settled-ms", type=float, help="default: two intervals")
    ap.add_argument("--settled-batches", type=int, help="default: 3, or the batches of 3 s when shorter")
    ap.add_argument("--words-per-record", type=float, help="words of a line that gives records but no words")
    args = ap.parse_args()
    if args.settled_ms is None:
        args.settled_ms = 2 * args.interval_ms
    if args.settled_batches is None:
        args.settled_batches = max(3, math.ceil(3000 / args.interval_ms))

    batches = []
    with open(args.log, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("BATCH "):
                batch = {k: int(v) for k, v in FIELD.findall(line)}
                if "words" not in batch and "records" in batch and args.words_per_record:
                    batch["words"] = round(batch["records"] * args.words_per_record)
                batches.append(batch)
    measured = batches[args.warmup : args.warmup + args.measure]

    out = {"batches": len(batches), "n": len(measured)}
    reasons = []
    if len(measured) < args.measure:
        reasons.append(f"only {len(measured)} of {args.measure} measured batches completed")
    if measured:
        words = [b.get("words", -1) for b in measured]
        totals = [b["total_ms"] for b in measured]
        procs = [b["proc_ms"] for b in measured]
        if min(words) < 0:
            reasons.append("a batch's output did not run")
        rate = sum(max(w, 0) for w in words) / (len(measured) * args.interval_ms / 1000.0)
        out["words_per_s"] = round(rate)
        out["recv"] = round(rate / args.offered_words_per_s, 3)
        out["proc_q"] = quantile(procs, args.proc_quantile)
        out["growth_ms"] = round(growth(totals))
        out["p50_ms"] = quantile(totals, 0.5)
        out["p99_ms"] = quantile(totals, 0.99)
        out["max_ms"] = max(totals)
        out["end_ms"] = quantile(totals[-args.settled_batches :], 0.5)
        # Keys in the output (the state's or window's size for those jobs), first and last.
        out["keys_first"] = measured[0].get("keys", -1)
        out["keys_last"] = measured[-1].get("keys", -1)
        if rate < args.recv_fraction * args.offered_words_per_s:
            reasons.append(f"counted {out['recv']:.0%} of the offered words")
        if out["proc_q"] >= args.interval_ms:
            reasons.append(f"processing p{round(args.proc_quantile * 100)} {out['proc_q']} ms >= interval")
        if out["growth_ms"] >= args.growth_ms:
            reasons.append(f"delay grew {out['growth_ms']} ms")
        if out["end_ms"] >= args.settled_ms:
            reasons.append(f"delay at the end {out['end_ms']} ms >= {args.settled_ms:.0f} ms")
    verdict = "fail" if reasons else "ok"
    fields = " ".join(f"{k}={v}" for k, v in out.items())
    reason = "; ".join(reasons) if reasons else "sustained"
    print(f"verdict={verdict} {fields} reason={reason}")


if __name__ == "__main__":
    sys.exit(main())
