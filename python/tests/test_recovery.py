"""getOrCreate after kill -9: a stateful word count over a file stream, killed 10 times at
random moments while files arrive and restarted each time, counts every word exactly once:
no batch's totals count a word more often than it was written, the last one exactly as
often, and every batch since the first has its saveAsTextFiles directory. The same with the checkpoint on
moto's S3 server (s3://, which ./test.sh starts and points AWS_ENDPOINT_URL at)."""

import collections
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import HERE

PROGRAM = os.path.join(HERE, "programs", "recoverable_word_count.py")


def start(checkpoint, source, out):
    child = subprocess.Popen(
        [sys.executable, PROGRAM, checkpoint, source, out],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    line = child.stdout.readline()
    assert line.strip() == "STARTED", (line, child.stderr.read() if child.poll() is not None else "")
    return child


def read_state(directory):
    counts = {}
    for name in os.listdir(directory):
        if name.startswith("part-"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                for line in f:
                    word, n = eval(line)  # str() of a (str, int) tuple
                    counts[word] = n
    return counts


def states(out):
    found = {}
    for name in os.listdir(out):
        if name.startswith("state-") and os.path.exists(os.path.join(out, name, "_SUCCESS")):
            found[int(name[len("state-"):])] = os.path.join(out, name)
    return dict(sorted(found.items()))


def has_checkpoint(checkpoint):
    """Whether a committed checkpoint (a manifest) is in `checkpoint`, local or on S3."""
    if not checkpoint.startswith("s3://"):
        return any(n.endswith(".manifest") for n in os.listdir(checkpoint))
    bucket, prefix = checkpoint[len("s3://"):].split("/", 1)
    # moto answers unsigned requests.
    url = "%s/%s?list-type=2&prefix=%s/" % (os.environ["AWS_ENDPOINT_URL"], bucket, prefix)
    with urllib.request.urlopen(url, timeout=10) as listing:
        return b".manifest</Key>" in listing.read()


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_get_or_create_after_kill_nine_loses_and_repeats_nothing(tmp_path, storage):
    seed = int(os.environ.get("EMBER_CRASH_SEED", time.time_ns()))
    print("seed", seed)
    rng = random.Random(seed)
    checkpoint, source, out = (str(tmp_path / d) for d in ("checkpoint", "in", "out"))
    if storage == "s3":
        assert "AWS_ENDPOINT_URL" in os.environ, "the S3 tests need ./test.sh's S3 server (AWS_ENDPOINT_URL)"
        checkpoint = "s3://%s/py-recovery-%d-%d" % (os.environ.get("EMBER_TEST_S3_BUCKET", "ember-test"), os.getpid(), time.time_ns())
    os.makedirs(source)
    os.makedirs(out)
    files = [" ".join("w%d" % ((i * 7 + j) % 13) for j in range(6)) + "\n" for i in range(40)]
    expected = collections.Counter(w for text in files for w in text.split())
    written = 0

    def write_some(n):
        nonlocal written
        for _ in range(n):
            if written < len(files):
                tmp = os.path.join(source, ".f%d.tmp" % written)
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(files[written])
                os.rename(tmp, os.path.join(source, "f%d.txt" % written))
                written += 1
                time.sleep(0.03)

    # The first run reaches a checkpoint before it is killed: a fresh start reads only the files
    # that arrive after it (textFileStream's newFilesOnly), as in PySpark.
    child = start(checkpoint, source, out)
    deadline = time.monotonic() + 20
    while not has_checkpoint(checkpoint):
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    child.kill()
    child.wait()
    for _ in range(10):
        child = start(checkpoint, source, out)
        write_some(rng.randint(1, 4))
        time.sleep(rng.uniform(0.0, 0.6))
        child.kill()
        child.wait()
    child = start(checkpoint, source, out)
    try:
        write_some(len(files))
        deadline = time.monotonic() + 30
        while True:
            found = states(out)
            if found and read_state(list(found.values())[-1]) == dict(expected):
                break
            assert time.monotonic() < deadline, "the totals never reached the words written (seed %d)" % seed
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
    found = states(out)
    for t, directory in found.items():
        for word, n in read_state(directory).items():
            assert n <= expected[word], "batch %d counted %s %d times, written %d (seed %d)" % (t, word, n, expected[word], seed)
    times = list(found)
    gaps = [b for a, b in zip(times, times[1:]) if b - a != 100]
    assert not gaps, "batches without their output before %s ms (seed %d)" % (gaps, seed)
