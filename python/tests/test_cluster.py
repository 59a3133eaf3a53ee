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
