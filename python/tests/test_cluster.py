"""A Python job on a cluster of two processes (``python -m ember.launch -n 2``): the same
totals as on one process, with the keyed work done in both interpreters."""

import ast
import os
import subprocess
import sys

from conftest import HERE

PROGRAM = os.path.join(HERE, "programs", "cluster_word_count.py")


def totals(output):
    lines = [l for l in output.splitlines() if l.startswith("TOTALS ")]
    assert len(lines) == 1, output
    return lines[0]


def test_a_cluster_of_two_python_processes_counts_what_one_process_counts(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    alone = subprocess.run([sys.executable, PROGRAM, str(one)], capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0, alone.stderr
    cluster = subprocess.run(
        [sys.executable, "-m", "ember.launch", "-n", "2", PROGRAM, str(two)], capture_output=True, text=True, timeout=120
    )
    assert cluster.returncode == 0, cluster.stdout + cluster.stderr
    assert totals(cluster.stdout) == totals(alone.stdout)
    counted = ast.literal_eval(totals(alone.stdout)[len("TOTALS "):])
    assert sum(n for _, n in counted) == 20 * 8, counted
    assert len(os.listdir(one)) == 1
    assert len(os.listdir(two)) == 2, "the keyed work ran in %d process(es), not 2" % len(os.listdir(two))


def test_launch_gives_every_process_one_fresh_secret(tmp_path):
    """``ember.launch`` hands its processes one random cluster secret (a new one per launch),
    so that no process outside the launch can join the cluster or stop it."""
    program = tmp_path / "secret.py"
    program.write_text(
        "import hashlib, os, sys\n"
        "secret = os.environ['EMBER_CLUSTER_SECRET']\n"
        "path = os.path.join(sys.argv[1], os.environ['EMBER_CLUSTER_PROCESS'])\n"
        "open(path, 'w').write('%d %s' % (len(secret), hashlib.sha256(secret.encode()).hexdigest()))\n",
        encoding="utf-8",
    )
    seen = []
    for run in range(2):
        out = tmp_path / str(run)
        out.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "EMBER_CLUSTER_SECRET"}
        launched = subprocess.run(
            [sys.executable, "-m", "ember.launch", "-n", "2", str(program), str(out)], env=env, capture_output=True, text=True, timeout=60
        )
        assert launched.returncode == 0, launched.stderr
        digests = {(out / p).read_text(encoding="utf-8") for p in ("0", "1")}
        assert len(digests) == 1, digests
        (digest,) = digests
        assert digest.startswith("64 "), digest
        seen.append(digest)
    assert seen[0] != seen[1], "two launches gave the same secret"
