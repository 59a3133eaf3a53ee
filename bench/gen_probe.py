#!/usr/bin/env python3
"""Reads an `ember gen socket` server as fast as it can for a few seconds and prints
`words_per_line=W lines_per_s=L`: the words per line of the generated lines (from the first
lines read; words are what `split(' ')` yields) and the lines per second one client got, which
bounds the rates bench/compare.sh can offer when the generator runs unpaced."""

import socket
import sys
import time


def main():
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    conn = socket.create_connection((host, port), timeout=10)
    sample = bytearray()
    lines = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    start = None
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        if start is None:
            start = time.monotonic()
        chunk = view[:n]
        if len(sample) < (1 << 20):
            sample += chunk
        lines += bytes(chunk).count(b"\n")
        if time.monotonic() - start >= seconds:
            break
    elapsed = time.monotonic() - start if start else 0.0
    conn.close()
    complete = bytes(sample).split(b"\n")[:-1]
    if not complete or elapsed <= 0:
        print("gen_probe: the generator sent no lines", file=sys.stderr)
        return 1
    words = sum(len(line.split(b" ")) for line in complete)
    print(f"words_per_line={words / len(complete):.3f} lines_per_s={lines / elapsed:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
