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


def alone_and_on_two_processes(tmp_path, *launch_options):
    """Runs the program on one process and under ``ember.launch -n 2``; returns both runs and
    the two output directories."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    alone = subprocess.run([sys.executable, PROGRAM, str(one)], capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0, alone.stderr
    cluster = subprocess.run(
        [sys.executable, "-m", "ember.launch", "-n", "2", *launch_options, PROGRAM, str(two)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cluster.returncode == 0, cluster.stdout + cluster.stderr
    assert totals(cluster.stdout) == totals(alone.stdout)
    return alone, one, two


def test_a_cluster_of_two_python_processes_counts_what_one_process_counts(tmp_path):
    alone, one, two = alone_and_on_two_processes(tmp_path)
    counted = ast.literal_eval(totals(alone.stdout)[len("TOTALS "):])
    assert sum(n for _, n in counted) == 20 * 8, counted
    assert len(os.listdir(one)) == 1
    assert len(os.listdir(two)) == 2, "the keyed work ran in %d process(es), not 2" % len(os.listdir(two))


def test_a_cluster_over_tls_counts_the_same(tmp_path):
    """``python -m ember.launch --tls``: the same totals with TLS on every connection between
    the two interpreters."""
    _, _, two = alone_and_on_two_processes(tmp_path, "--tls")
    assert len(os.listdir(two)) == 2


def test_tls_without_a_secret_is_a_clear_error(tmp_path):
    """TLS needs the cluster secret: a process given ``EMBER_CLUSTER_TLS=1`` and no secret
    fails at start with a Python exception saying so, not a hang."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_CLUSTER_SECRET")}
    env.update(
        EMBER_CLUSTER_TLS="1",
        EMBER_CLUSTER_PROCESS="0",
        EMBER_CLUSTER_ADDRESSES="127.0.0.1:1,127.0.0.1:2",
        EMBER_CLUSTER_CONTROL="127.0.0.1:3",
    )
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run([sys.executable, PROGRAM, str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "TLS" in run.stderr and "secret" in run.stderr, run.stderr
    assert "panicked" not in run.stderr, run.stderr


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
