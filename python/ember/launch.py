"""Runs a Python program on ember as a cluster of processes: one interpreter per process, so a
Python job uses more than one core (ember's answer to PySpark's Python workers).

    python -m ember.launch -n 2 my_streaming_job.py ARGS...

Starts N processes of the program on this machine, each told its place through
``EMBER_CLUSTER_PROCESS``, ``EMBER_CLUSTER_ADDRESSES`` and ``EMBER_CLUSTER_CONTROL`` (free
loopback ports), and ``EMBER_CLUSTER_SECRET``, a fresh random secret (or the one already in the
environment) that every connection between the processes must prove, so that no other process
can join the cluster or stop it; ``StreamingContext`` reads them. With ``--tls`` every process
also gets ``EMBER_CLUSTER_TLS=1``: TLS on every connection between them. Every process builds the same plan; receivers,
``pprint`` and ``foreachRDD`` run on process 0, keyed work is spread over all of them. The
processes share the terminal. When one exits with an error, the others are stopped; the exit
status is the first failure's (0 when all succeed)."""

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time


def free_ports(count, host):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ember.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--processes", type=int, default=2, help="processes to start [2]")
    parser.add_argument("--host", default="127.0.0.1", help="the address the processes listen on [127.0.0.1]")
    parser.add_argument("--tls", action="store_true", help="TLS on every connection between the processes")
    parser.add_argument("program", help="the Python program")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    options = parser.parse_args(argv)
    if options.processes < 1:
        parser.error("-n must be at least 1")
    ports = free_ports(options.processes + 1, options.host)
    addresses = ",".join("%s:%d" % (options.host, p) for p in ports[:-1])
    children = []
    secret = os.environ.get("EMBER_CLUSTER_SECRET") or secrets.token_hex(32)
    for index in range(options.processes):
        env = dict(
            os.environ,
            EMBER_CLUSTER_SECRET=secret,
            EMBER_CLUSTER_PROCESS=str(index),
            EMBER_CLUSTER_ADDRESSES=addresses,
            EMBER_CLUSTER_CONTROL="%s:%d" % (options.host, ports[-1]),
        )
        if options.tls:
            env["EMBER_CLUSTER_TLS"] = "1"
        children.append(subprocess.Popen([sys.executable, options.program, *options.args], env=env))
    status = 0
    try:
        running = list(children)
        while running:
            for child in list(running):
                code = child.poll()
                if code is None:
                    continue
                running.remove(child)
                if code != 0 and status == 0:
                    status = code if code > 0 else 128 - code
                    for other in running:
                        other.send_signal(signal.SIGINT)
            time.sleep(0.05)
    except KeyboardInterrupt:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            child.wait()
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
