"""Shared helpers of ember's Python tests."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def run_program(path, *args, timeout=60, env=None):
    """Runs a Python program in a fresh interpreter (SIGINT at its default); returns the
    completed process with text stdout and stderr."""
    import signal

    return subprocess.run(
        [sys.executable, path, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.fixture
def sc():
    from ember.pyspark import SparkContext

    context = SparkContext("local[2]", "ember-tests")
    yield context
    context.stop()
