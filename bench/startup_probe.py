#!/usr/bin/env python3
"""Watches one job of bench/compare.sh's startup mode (issue 12, workload 6): cold start and memory.

    startup_probe.py PID OUT_FILE LAUNCH_NS BATCHES TIMEOUT_S

PID is the job, started by compare.sh just after it read the clock (LAUNCH_NS, `date +%s%N`);
OUT_FILE is the job's stdout, where it prints one `BATCH ... words=W ...` line per batch. Until
BATCHES batch lines are there, the job ends, or TIMEOUT_S pass, it polls OUT_FILE every 10 ms
and every 50 ms reads /proc/<pid>/status of the job and of all its descendants (PySpark's
driver starts a JVM, which starts Python workers). It prints one line of key=value pairs:

    first_batch_ms   launch to the first batch line seen (to within the 10 ms poll)
    first_words_ms   launch to the first batch line with words > 0 (-1: none)
    batches          batch lines seen
    hwm_kb           peak resident memory: the sum over the processes of each one's VmHWM
                     (its own peak; an upper bound of the tree's simultaneous peak)
    rss_kb           the largest sum of VmRSS over the processes at one sample
    procs            processes seen in the tree
    ended            1 when the job exited before its batches were in

It does not stop the job: compare.sh does.
"""

import os
import re
import sys
import time

WORDS = re.compile(r"\bwords=(-?\d+)")


def children_map():
    """ppid -> [pid] over all processes, from /proc/*/stat."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # The command may hold spaces and parentheses: fields follow the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def tree(root):
    kids = children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def status_kb(pid):
    """(VmHWM, VmRSS) in kB, or None when the process is gone."""
    hwm = rss = 0
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except (OSError, ValueError):
        return None
    return hwm, rss


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def main():
    if len(sys.argv) != 6:
        print("usage: startup_probe.py PID OUT_FILE LAUNCH_NS BATCHES TIMEOUT_S", file=sys.stderr)
        return 2
    pid, out_file = int(sys.argv[1]), sys.argv[2]
    launch_s = int(sys.argv[3]) / 1e9
    batches, timeout_s = int(sys.argv[4]), float(sys.argv[5])

    first_batch = first_words = -1.0
    seen = 0
    hwm_by_pid = {}
    peak_rss = [0]
    offset = 0
    pending = ""
    next_sample = 0.0
    ended = 0

    def sample():
        total_rss = 0
        for p in tree(pid):
            kb = status_kb(p)
            if kb is None:
                continue
            hwm_by_pid[p] = max(hwm_by_pid.get(p, 0), kb[0])
            total_rss += kb[1]
        peak_rss[0] = max(peak_rss[0], total_rss)

    while True:
        now = time.time()
        if now >= next_sample:
            sample()
            next_sample = now + 0.05
        try:
            with open(out_file, encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
        except OSError:
            chunk = ""
        if chunk:
            stamp = time.time()
            pending += chunk
            *complete, pending = pending.split("\n")
            for line in complete:
                if not line.startswith("BATCH "):
                    continue
                seen += 1
                if first_batch < 0:
                    first_batch = stamp - launch_s
                m = WORDS.search(line)
                if first_words < 0 and m and int(m.group(1)) > 0:
                    first_words = stamp - launch_s
        if seen >= batches:
            break
        if not alive(pid):
            ended = 1
            break
        if time.time() - launch_s > timeout_s:
            break
        time.sleep(0.01)
    sample()
    ms = lambda s: round(s * 1000) if s >= 0 else -1  # noqa: E731
    print(
        f"first_batch_ms={ms(first_batch)} first_words_ms={ms(first_words)} batches={seen}"
        f" hwm_kb={sum(hwm_by_pid.values())} rss_kb={peak_rss[0]} procs={len(hwm_by_pid)} ended={ended}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
