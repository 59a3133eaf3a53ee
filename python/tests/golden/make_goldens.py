#!/usr/bin/env python3
"""Runs every seed program (python/tests/seeds/) and every details program
(python/tests/details/) under the real PySpark, feeds each its fixed input, and writes the
goldens beside this file (README.md says what each file is and how it is compared).

    python3 python/tests/golden/make_goldens.py              # all programs, rewrite the goldens
    python3 python/tests/golden/make_goldens.py --only 001_window_top --only details_pprint
    python3 python/tests/golden/make_goldens.py --check      # run again, compare with the
                                                             # goldens, write nothing

It needs Java 17 on PATH and installs PySpark (pyspark==PYSPARK_VERSION from PyPI, whose
package carries Spark's jars, as bench/compare.sh does) into python/.venv-pyspark when that
venv lacks it. Programs run one at a time (their batches are timed; two at once would share the
machine's 2 cores), 10 to 15 minutes in all. Each run gets TZ=UTC, PYTHONHASHSEED=0,
SPARK_LOCAL_IP=127.0.0.1 and unbuffered stdout; its stderr (Spark's log) goes to a temporary
folder that is printed at the end.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
PYTHON_DIR = os.path.dirname(TESTS)
sys.path.insert(0, HERE)

import normalise  # noqa: E402

PYSPARK_VERSION = "3.5.9"
VENV = os.path.join(PYTHON_DIR, ".venv-pyspark")

# The socket programs' input: five lines of 8 distinct words, five times, one line every 0.1 s
# (so a per-batch pprint never hides a key behind "...").
WORD_LINES = [
    "hello world spark streaming",
    "hello spark",
    "spark streaming with python",
    "hello world",
    "big data with spark",
] * 5
# 001_window_top's input: country codes, one line every 0.25 s (5 s in all).
COUNTRY_LINES = ["usa", "ind", "aus", "usa", "fra", "usa", " ind ", "aus", "usa", "xyz"] * 2
# 000_file_stream's input: four files of two lines, one file moved into the directory every 1.5 s
# once the first batch has printed.
FILES = [["file %d line 1" % k, "file %d line 2" % k] for k in range(1, 5)]


def word_totals(lines):
    totals = {}
    for line in lines:
        for word in line.split(" "):
            totals[word] = totals.get(word, 0) + 1
    return totals


def country_totals(lines):
    names = {"usa": "USA", "ind": "India", "aus": "Australia"}
    totals = {}
    for line in lines:
        name = names.get(line.strip(), "Unknown")
        totals[name] = totals.get(name, 0) + 1
    return totals


def sorted_pairs(totals, factor=1):
    return "".join(repr(p) + "\n" for p in sorted(((k, v * factor) for k, v in totals.items()), key=repr))


# name: program file (relative to python/tests), seed and section, arguments (name, kind: dir or
# host or port), input feed, how stdout is compared, PySpark accommodations (accommodate.py's
# flags) when the program as written does not run on PySpark, and the normalised form that the
# fixed input must give (a check that no input was lost). run_seconds, when given, is passed as
# SEED_RUN_SECONDS: the programs that keep seed 000's stop thread stop without grace, so a
# PySpark that falls behind its batches (a busy machine) would lose the last ones; a longer run
# lets it finish every batch that is compared.
PROGRAMS = [
    dict(
        name="000_queue_stream",
        seed="000, sections 1, 2.1, 2.2, 2.3",
        args=[("STREAMING_DIR", "dir")],
        compare=dict(stdout="comparable", batches=6),
        accommodations=["--batch-duration"],
    ),
    dict(
        name="000_file_stream",
        seed="000, section 2.2 (pprint added)",
        args=[("STREAMING_DIR", "dir")],
        feed=("files", FILES, 1.5),
        compare=dict(stdout="normalised", form="all_elements"),
        expect="".join(line + "\n" for line in sorted(sum(FILES, []))),
    ),
    dict(
        name="000_transformations",
        seed="000, sections 3, 4, 5, 6",
        args=[("OUTPUT_DIR", "dir"), ("CHECKPOINT_DIR", "dir")],
        compare=dict(stdout="comparable", batches=8, files="OUTPUT_DIR"),
    ),
    dict(
        name="000_sales_monitor",
        run_seconds=60,
        seed="000, sections 7, 8",
        args=[("CHECKPOINT_DIR", "dir")],
        compare=dict(stdout="comparable", batches=9),
    ),
    dict(
        name="000_word_count_exercise",
        run_seconds=40,
        seed="000, section 9 exercise 1",
        args=[("CHECKPOINT_DIR", "dir")],
        compare=dict(stdout="comparable", batches=6),
    ),
    dict(
        name="000_network_monitor",
        run_seconds=50,
        seed="000, section 9 exercise 2",
        args=[("CHECKPOINT_DIR", "dir")],
        compare=dict(stdout="comparable", batches=None),
    ),
    dict(
        name="001_rdd_queue",
        seed="001, RDD队列流 (rdd_queue.py)",
        args=[],
        # 5, not 6: ember's graceful stop cuts its last batch at once, where Spark's timer runs
        # one more interval, so in the same 62 s ember prints one batch fewer.
        compare=dict(stdout="comparable", batches=5),
    ),
    dict(
        name="001_network_word_count",
        seed="001, 词频统计(无状态操作) (sscrun.py)",
        args=[("HOST", "host"), ("PORT", "port")],
        feed=("socket", WORD_LINES, 0.1),
        compare=dict(stdout="normalised", form="per_key_totals"),
        expect=sorted_pairs(word_totals(WORD_LINES)),
    ),
    dict(
        name="001_stateful_word_count",
        seed="001, 词频统计(有状态操作) (calcultor.py)",
        args=[("HOST", "host"), ("PORT", "port"), ("CHECKPOINT_DIR", "dir")],
        feed=("socket", WORD_LINES, 0.1),
        compare=dict(stdout="normalised", form="final_state"),
        expect=sorted_pairs(word_totals(WORD_LINES)),
    ),
    dict(
        name="001_window_top",
        seed="001, Windows (top.py)",
        args=[("HOST", "host"), ("PORT", "port"), ("CHECKPOINT_DIR", "dir")],
        feed=("socket", COUNTRY_LINES, 0.25),
        compare=dict(stdout="normalised", form="window_sums"),
        expect="# sum over all printed windows\n"
        + sorted_pairs(country_totals(COUNTRY_LINES), 2)
        # Empty: with a window under 5 slides PySpark reduces each window anew instead of using
        # the inverse function, so keys whose values left the window are gone (README.md).
        + "# last window\n",
    ),
    dict(
        name="002_streaming_wordcount",
        seed="002, A Simple, End-to-End Python Example (streaming_wordcount.py)",
        args=[("HOST", "host"), ("PORT", "port")],
        feed=("socket", WORD_LINES, 0.1),
        compare=dict(stdout="normalised", form="per_key_totals"),
        expect=sorted_pairs(word_totals(WORD_LINES)),
    ),
    dict(
        name="002_stateful_wordcount",
        seed="002, Stateful Processing: The updateStateByKey Example",
        args=[("HOST", "host"), ("PORT", "port")],
        feed=("socket", WORD_LINES, 0.1),
        compare=dict(stdout="normalised", form="final_state"),
        expect=sorted_pairs(word_totals(WORD_LINES)),
        accommodations=["--checkpoint", "{CHECKPOINT}"],
    ),
    dict(
        name="details_pprint",
        seed=None,
        args=[],
        compare=dict(stdout="comparable", batches=8),
    ),
    dict(
        name="details_subsecond",
        seed=None,
        args=[],
        compare=dict(stdout="comparable", batches=4),
    ),
    dict(
        name="details_foreach",
        seed=None,
        args=[("OUTPUT_DIR", "dir")],
        compare=dict(stdout="comparable", batches=3, files="OUTPUT_DIR"),
    ),
    dict(
        name="details_window_inverse",
        seed=None,
        args=[("CHECKPOINT_DIR", "dir")],
        compare=dict(stdout="comparable", batches=8),
    ),
    dict(
        name="details_error",
        seed=None,
        args=[],
        compare=dict(stdout="comparable", batches=None),
    ),
]


def program_path(program):
    folder = "details" if program["name"].startswith("details_") else "seeds"
    return os.path.join(TESTS, folder, program["name"] + ".py")


def say(message):
    print("make_goldens: " + message, flush=True)


def ensure_pyspark():
    """The venv's python, with pyspark==PYSPARK_VERSION installed (as bench/compare.sh does)."""
    python = os.path.join(VENV, "bin", "python")
    probe = "import pyspark; print(pyspark.__version__)"
    installed = ""
    if os.path.exists(python):
        installed = subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout.strip()
    if installed != PYSPARK_VERSION:
        say("installing pyspark==%s into %s (about 320 MB of jars)" % (PYSPARK_VERSION, VENV))
        if not os.path.exists(python):
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "pyspark==" + PYSPARK_VERSION],
            check=True,
        )
    if shutil.which("java") is None:
        sys.exit("make_goldens: java is not on PATH (Spark 3.5 needs Java 8, 11 or 17)")
    return python


class LineServer:
    """Serves LINES to the first client, one every PACE seconds, then keeps every connection
    open (a closed connection makes Spark's receiver reconnect) until close()."""

    def __init__(self, lines, pace):
        self.lines = lines
        self.pace = pace
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self.sent = 0
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            if len(self.connections) == 1:
                threading.Thread(target=self._send, args=(conn,), daemon=True).start()

    def _send(self, conn):
        try:
            for line in self.lines:
                conn.sendall((line + "\n").encode("utf-8"))
                self.sent += 1
                time.sleep(self.pace)
        except OSError:
            pass

    def close(self):
        self.closed = True
        self.listener.close()
        for conn in self.connections:
            conn.close()


def feed_files(directory, files, pace, started):
    """Moves FILES into DIRECTORY, one every PACE seconds, once STARTED is set (the first batch
    printed). Each is written under a hidden name first: textFileStream ignores names that
    start with a dot, and must not see a half-written file."""
    if not started.wait(120):
        return
    for k, lines in enumerate(files, 1):
        hidden = os.path.join(directory, ".file-%d.txt.tmp" % k)
        with open(hidden, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        os.rename(hidden, os.path.join(directory, "file-%d.txt" % k))
        time.sleep(pace)


def run(python, program, workdir, logdir, accommodated):
    """Runs PROGRAM once; returns (exit code, stdout, argument values, notes)."""
    values = {}
    server = None
    feed = program.get("feed")
    if feed and feed[0] == "socket":
        server = LineServer(feed[1], feed[2])
    for name, kind in program["args"]:
        if kind == "dir":
            values[name] = os.path.join(workdir, name.lower())
            os.makedirs(values[name])
        elif kind == "host":
            values[name] = "127.0.0.1"
        elif kind == "port":
            values[name] = str(server.port)
    command = [python]
    if accommodated and program.get("accommodations"):
        command.append(os.path.join(HERE, "accommodate.py"))
        for flag in program["accommodations"]:
            command.append(os.path.join(workdir, "accommodation-checkpoint") if flag == "{CHECKPOINT}" else flag)
    command.append(program_path(program))
    command += [values[name] for name, _ in program["args"]]

    env = dict(os.environ)
    for key in ("SPARK_HOME", "PYSPARK_DRIVER_PYTHON", "PYSPARK_SUBMIT_ARGS", "SEED_RUN_SECONDS"):
        env.pop(key, None)
    if program.get("run_seconds"):
        env["SEED_RUN_SECONDS"] = str(program["run_seconds"])
    env.update(
        PYSPARK_PYTHON=python,
        TZ="UTC",
        PYTHONHASHSEED="0",
        PYTHONUNBUFFERED="1",
        PYTHONIOENCODING="utf-8",
        SPARK_LOCAL_IP="127.0.0.1",
        LC_ALL="C.UTF-8",
    )
    suffix = ".accommodated" if accommodated and program.get("accommodations") else ""
    stderr_path = os.path.join(logdir, program["name"] + suffix + ".stderr")
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True
        )
    started = threading.Event()
    chunks = []

    def read():
        for raw in proc.stdout:
            chunks.append(raw)
            if raw.startswith(b"Time: "):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if feed and feed[0] == "files":
        threading.Thread(
            target=feed_files, args=(values["STREAMING_DIR"], feed[1], feed[2], started), daemon=True
        ).start()
    notes = []
    try:
        code = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        notes.append("killed after 300 s")
        code = None
    finally:
        # The program's own process group: its JVM and Python workers, started by this run.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if code is None:
            code = proc.wait()
    reader.join(10)
    if server:
        if len(server.connections) != 1:
            notes.append("the receiver connected %d times" % len(server.connections))
        if server.sent != len(feed[1]):
            notes.append("sent %d of %d lines" % (server.sent, len(feed[1])))
        server.close()
    return code, b"".join(chunks).decode("utf-8"), values, notes, stderr_path


def error_summary(stderr_path):
    """The Python traceback of a failed run, without Java's stack frames."""
    with open(stderr_path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    start = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")), default=None)
    if start is None:
        return "\n".join(lines[-20:])
    kept = [line for line in lines[start:] if not line.startswith("\tat ") and not line.startswith("\t... ")]
    text = "\n".join(kept).rstrip("\n") + "\n"
    # Paths of this checkout and its venv, so that the file is the same in every clone.
    return text.replace(VENV + "/", "<venv>/").replace(TESTS + "/", "python/tests/")


def list_saved(directory, first_ms, batches):
    """What saveAsTextFiles wrote for the first BATCHES batch times: each directory (its time
    as an offset from FIRST_MS), its visible files and their contents, in the order of batch
    time then name. Hadoop's hidden .crc files are left out."""
    out = []
    entries = []
    for name in os.listdir(directory):
        prefix, _, rest = name.rpartition("-")
        ms = int(rest.split(".")[0])
        entries.append((ms, name, prefix, rest[len(str(ms)) :]))
    first_times = sorted({ms for ms, _, _, _ in entries})[:batches]
    for ms, name, prefix, suffix in sorted(entries):
        if ms not in first_times:
            continue
        offset = ("%.3f" % ((ms - first_ms) / 1000)).rstrip("0").rstrip(".")
        out.append("== %s-<T0+%ss>%s" % (prefix, offset, suffix))
        path = os.path.join(directory, name)
        for file in sorted(os.listdir(path)):
            if file.startswith("."):
                continue
            with open(os.path.join(path, file), "rb") as f:
                data = f.read()
            out.append("-- %s (%d bytes)" % (file, len(data)))
            out.extend(data.decode("utf-8").split("\n")[:-1])
    return "".join(line + "\n" for line in out)


def goldens_of(program, stdout, values):
    """The comparable and normalised forms of a run's stdout, as {file suffix: text}."""
    compare = program["compare"]
    out = {}
    if compare["stdout"] == "comparable":
        out[".cmp"] = normalise.comparable(stdout, compare["batches"], values)
    else:
        lines = stdout.split("\n")
        found = normalise.headers(lines)
        before = "".join(line + "\n" for line in lines[: found[0][0]]) if found else stdout
        form = normalise.NORMALISED[compare["form"]](stdout)
        out[".norm"] = (
            "# before the first batch\n" + normalise.replace_args(before, values) + "# %s\n" % compare["form"] + form
        )
        expect = program.get("expect")
        if expect is not None and form != expect:
            raise normalise.GoldenFormError(
                "%s of the output is not what the fixed input gives:\n%s\nexpected:\n%s" % (compare["form"], form, expect)
            )
    if compare.get("files"):
        found = normalise.headers(stdout.split("\n"))
        first = normalise.parse_time(found[0][1]).replace(tzinfo=datetime.timezone.utc)
        first_ms = int(first.timestamp() * 1000)
        out[".files"] = list_saved(values[compare["files"]], first_ms, compare["batches"])
    return out


def main():
    parser = argparse.ArgumentParser(description="Make the PySpark goldens of python/tests.")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this program (repeatable)")
    parser.add_argument("--check", action="store_true", help="run and compare with the goldens; write nothing")
    options = parser.parse_args()
    names = [p["name"] for p in PROGRAMS]
    for name in options.only or []:
        if name not in names:
            sys.exit("make_goldens: no program %r; the programs are: %s" % (name, " ".join(names)))
    python = ensure_pyspark()
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.split("\n")[0]
    logdir = tempfile.mkdtemp(prefix="make_goldens-logs-")
    manifest_path = os.path.join(HERE, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = {entry["name"]: entry for entry in json.load(f)["programs"]}
    failures = []
    for program in PROGRAMS:
        name = program["name"]
        if options.only and name not in options.only:
            continue
        entry = dict(
            name=name,
            program=os.path.relpath(program_path(program), HERE),
            seed=program["seed"],
            args=[n for n, _ in program["args"]],
            input={None: "queueStream (inside the program)", "socket": "socket", "files": "files"}[
                (program.get("feed") or [None])[0]
            ],
            compare=program["compare"],
        )
        if program.get("run_seconds"):
            entry["run_seconds"] = program["run_seconds"]
        if program.get("feed"):
            kind, items, pace = program["feed"]
            entry["input_detail"] = dict(kind=kind, pace_s=pace, items=items)
        written = {}
        with tempfile.TemporaryDirectory(prefix="golden-%s-" % name) as workdir:
            say("running %s" % name)
            started = time.time()
            code, stdout, values, notes, stderr_path = run(python, program, workdir, logdir, accommodated=False)
            entry["as_written"] = dict(exit_code=code, seconds=round(time.time() - started))
            if notes:
                entry["as_written"]["notes"] = notes
            reference = stdout
            if code != 0:
                entry["as_written"]["error"] = error_summary(stderr_path).split("\n")[-2]
                written[".as-written.out"] = stdout
                written[".as-written.error"] = error_summary(stderr_path)
                say("  %s as written: exit code %s: %s" % (name, code, entry["as_written"]["error"]))
                if program.get("accommodations"):
                    shutil.rmtree(workdir)
                    os.makedirs(workdir)
                    started = time.time()
                    code, stdout, values, notes, stderr_path = run(python, program, workdir, logdir, accommodated=True)
                    entry["accommodated"] = dict(
                        flags=[f for f in program["accommodations"] if f != "{CHECKPOINT}"],
                        exit_code=code,
                        seconds=round(time.time() - started),
                    )
                    if notes:
                        entry["accommodated"]["notes"] = notes
                    reference = stdout
                    if code != 0:
                        entry["accommodated"]["error"] = error_summary(stderr_path).split("\n")[-2]
            entry["status"] = "ok" if code == 0 else "failed"
            if code == 0:
                written[".out"] = reference
                try:
                    written.update(goldens_of(program, reference, values))
                except normalise.GoldenFormError as e:
                    entry["status"] = "failed"
                    entry["golden_error"] = str(e)
            if entry["status"] != "ok":
                failures.append(name)
                say("  %s: FAILED (%s)" % (name, entry.get("golden_error") or "exit code %s" % code))
        if options.check:
            for suffix, text in sorted(written.items()):
                if suffix in (".out", ".as-written.out"):
                    continue  # raw output: times and paths differ from run to run
                path = os.path.join(HERE, name + suffix)
                old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
                if old != text:
                    failures.append(name + suffix)
                    say("  %s%s differs from the golden (new text in %s)" % (name, suffix, logdir))
                    with open(os.path.join(logdir, name + suffix), "w", encoding="utf-8") as f:
                        f.write(text)
                else:
                    say("  %s%s matches" % (name, suffix))
            continue
        for suffix in (".out", ".cmp", ".norm", ".files", ".as-written.out", ".as-written.error"):
            path = os.path.join(HERE, name + suffix)
            if suffix in written:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(written[suffix])
            elif os.path.exists(path):
                os.remove(path)
        entry["generated"] = dict(
            date=datetime.date.today().isoformat(), pyspark=PYSPARK_VERSION, java=java, tz="UTC", pythonhashseed="0"
        )
        manifest[name] = entry
        say("  %s: %s, wrote %s" % (name, entry["status"], " ".join(name + s for s in sorted(written))))
    if not options.check:
        ordered = [manifest[p["name"]] for p in PROGRAMS if p["name"] in manifest]
        with open(manifest_path, "w", encoding="utf-8") as f:
            json.dump(dict(pyspark=PYSPARK_VERSION, programs=ordered), f, ensure_ascii=False, indent=2)
            f.write("\n")
    say("Spark's logs (stderr of each run): %s" % logdir)
    if failures:
        say("failed: %s" % " ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
