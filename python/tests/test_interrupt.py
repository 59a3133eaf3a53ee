"""Ctrl-C (SIGINT) in a Python program ends awaitTermination with KeyboardInterrupt within a
second, the context stopped."""

import os
import signal
import subprocess
import sys
import time

from conftest import HERE


def test_sigint_ends_await_termination_with_keyboard_interrupt_within_a_second():
    child = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "programs", "interruptible.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert child.stdout.readline().strip() == "STARTED"
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = child.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        child.kill()
    assert "INTERRUPTED STOPPED" in out, (out, err)
    assert "KeyboardInterrupt" in err, err
    assert child.returncode != 0
    assert took < 1.0, "the program ended %.2f s after SIGINT" % took
