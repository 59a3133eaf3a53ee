"""The PySpark DStream programs of seeds 000, 001 and 002 (and the details programs beside them)
run on ember with only their two import lines changed, and print what the real PySpark 3.5.9
printed for the same input (issue 26, acceptance 1; the goldens and how they were made are in
golden/, whose README.md says what is compared how).

Each program of golden/manifest.json is one case. It writes ``normalise.ember_source(program)``
to a temporary directory (and checks that exactly the two pyspark import lines changed), runs it
with this test run's python, fed as golden/make_goldens.py fed PySpark (its ``PROGRAMS`` table,
``LineServer`` and ``feed_files``; the same arguments, ``SEED_RUN_SECONDS`` and environment:
TZ=UTC, PYTHONHASHSEED=0, ...), expects exit code 0 and compares its stdout with the golden in
the golden's own form (``make_goldens.goldens_of``):

``.cmp``, byte for byte after ``normalise.comparable`` (Time values as offsets, paths as <NAME>,
cut after the golden's number of batches), except for the pprint blocks of streams that went
through a shuffle. Their order of keys is PySpark's ``portable_hash(key) % partitions``, which
ember does not reproduce (README.md, "Order of keys"); such a block is compared as a multiset of
lines, and a shuffled block cut by ``...`` only for its header, its number of lines and that its
lines are distinct elements of the batch's true contents (computed here from the program's
input). Per program:

- 000_queue_stream, 000_network_monitor (whole stdout, no pprint), details_pprint,
  details_subsecond, details_foreach: exact.
- 000_transformations: exact, except the updateStateByKey block (6th block of a batch) and
  reduceByKeyAndWindow's (8th, at the window's slides): multisets. The ``window(6, 4)`` block,
  cut by ``...``, never went through a shuffle and is exact.
- 000_sales_monitor: exact, except the reduceByKey block (the only pprint): multiset.
- 000_word_count_exercise: both blocks of a batch go through a shuffle: reduceByKey's as a
  multiset; updateStateByKey's is cut by ``...`` from the third batch on, so it is checked for its
  header, its 10 lines and ``...``, and that each line is a distinct ``(word, count)`` of the state
  that the queued lines give at that batch.
- 001_rdd_queue: exact, except the reduceByKey block (the only pprint): multiset.
- details_window_inverse: the first four blocks of a batch (three reduceByKeyAndWindow and a
  countByValueAndWindow) as multisets; the two countByWindow blocks exact.
- details_error: exact, except that the first line's exception type may be any type:
  PySpark's is ``py4j.protocol.Py4JJavaError``, a class of PySpark's JVM bridge that ember has no
  reason to have. The lines after it (the message carries the traceback, the user function's
  line and the exception) are exact.

``.norm`` (socket and file programs, whose cut into batches depends on timing), equal to the
golden's normalised form: the stdout before the first batch byte for byte, then per_key_totals
(001_network_word_count, 002_streaming_wordcount), final_state (001_stateful_word_count,
002_stateful_wordcount, which sets no checkpoint directory: ember runs it, PySpark needed one),
window_sums (001_window_top) or all_elements (000_file_stream). These forms do not depend on the
order of keys.

``.files`` (000_transformations, details_foreach): what saveAsTextFiles wrote in the first
batches, byte for byte (directories, part files and their lines).

The programs run at their own batch durations (about 7 minutes of batches in all), two at a time
in a thread pool, longest first; each has a deadline of its run time plus a minute and is killed
(its process group) in a finally block.
"""

import ast
import collections
import concurrent.futures
import difflib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import HERE

GOLDEN = os.path.join(HERE, "golden")
if GOLDEN not in sys.path:
    sys.path.insert(0, GOLDEN)

import make_goldens  # noqa: E402
import normalise  # noqa: E402

with open(os.path.join(GOLDEN, "manifest.json"), encoding="utf-8") as _f:
    MANIFEST = {entry["name"]: entry for entry in json.load(_f)["programs"]}
PROGRAMS = {program["name"]: program for program in make_goldens.PROGRAMS}

# How long a run may take beyond the program's own run time (start-up, a graceful stop).
DEADLINE_MARGIN_S = 60
PARALLEL_RUNS = 2

# Per program, the positions (0-based, in registration order) of the pprint blocks of a batch
# whose stream went through a shuffle: their order of keys is PySpark's hash partitioning.
SHUFFLED_BLOCKS = {
    "000_transformations": {5, 7},
    "000_sales_monitor": {0},
    "000_word_count_exercise": {0, 1},
    "001_rdd_queue": {0},
    "details_window_inverse": {0, 1, 2, 3},
}

_IMPORTS = {
    "from pyspark import SparkContext": "from ember.pyspark import SparkContext",
    "from pyspark.streaming import StreamingContext": "from ember.pyspark.streaming import StreamingContext",
}
_RUN_SECONDS = re.compile(r"""os\.environ\.get\("SEED_RUN_SECONDS", "([0-9.]+)"\)""")
_OFFSET_TIME = re.compile(r"^Time: T0\+([0-9.]+)s$")


def _source(name):
    with open(make_goldens.program_path(PROGRAMS[name]), encoding="utf-8") as f:
        return f.read()


def _run_seconds(name):
    """SEED_RUN_SECONDS as make_goldens.py gives it, else the program's own default."""
    program = PROGRAMS[name]
    if program.get("run_seconds"):
        return float(program["run_seconds"])
    return float(_RUN_SECONDS.search(_source(name)).group(1))


def _assigned_literal(source, variable):
    """The literal value a program assigns to VARIABLE at its top level."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == variable for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError("no top-level assignment of %s" % variable)


def _word_count_exercise_contents(offset_s, position):
    """The elements of 000_word_count_exercise's block at a batch: the state of updateStateByKey
    (position 1) after the queued lines up to that batch, one line a batch (2-second batches)."""
    if position != 1:
        return None
    text_data = _assigned_literal(_source("000_word_count_exercise"), "text_data")
    batch = int(round(offset_s / 2))
    state = collections.Counter(w for line in text_data[: batch + 1] for w in line.split(" "))
    return {repr(kv) for kv in state.items()}


# Per program: (batch offset in seconds, block position) -> the set of element lines of that
# block, for shuffled blocks cut by "..." (None: not known).
TRUE_CONTENTS = {"000_word_count_exercise": _word_count_exercise_contents}


class _Children:
    """The programs this module started and that may still run (killed at the session's end)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = set()

    def add(self, proc):
        with self.lock:
            self.running.add(proc)

    def discard(self, proc):
        with self.lock:
            self.running.discard(proc)

    def kill_all(self):
        with self.lock:
            procs = list(self.running)
        for proc in procs:
            _kill_group(proc)


def _kill_group(proc):
    # start_new_session made the child the leader of its own process group: its id is the pid.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _environment(program):
    """The environment make_goldens.run gives a program, with this run's python."""
    env = dict(os.environ)
    for key in ("SPARK_HOME", "PYSPARK_DRIVER_PYTHON", "PYSPARK_SUBMIT_ARGS", "SEED_RUN_SECONDS"):
        env.pop(key, None)
    if program.get("run_seconds"):
        env["SEED_RUN_SECONDS"] = str(program["run_seconds"])
    env.update(
        PYSPARK_PYTHON=sys.executable,
        TZ="UTC",
        PYTHONHASHSEED="0",
        PYTHONUNBUFFERED="1",
        PYTHONIOENCODING="utf-8",
        SPARK_LOCAL_IP="127.0.0.1",
        LC_ALL="C.UTF-8",
    )
    return env


def _run_on_ember(name, children):
    """Runs the ember version of program NAME as make_goldens.run runs PySpark's; returns what
    the comparison needs (the golden forms are computed here, while the output directory exists)."""
    program = PROGRAMS[name]
    result = dict(name=name, notes=[], forms={}, form_error=None)
    with tempfile.TemporaryDirectory(prefix="seed-%s-" % name) as root:
        source = _source(name)
        ember = normalise.ember_source(source)
        result["source"], result["ember_source"] = source, ember
        program_file = os.path.join(root, "program", name + ".py")
        os.makedirs(os.path.dirname(program_file))
        with open(program_file, "w", encoding="utf-8") as f:
            f.write(ember)
        workdir = os.path.join(root, "work")
        os.makedirs(workdir)

        values = {}
        server = None
        feed = program.get("feed")
        if feed and feed[0] == "socket":
            server = make_goldens.LineServer(feed[1], feed[2])
        for arg, kind in program["args"]:
            if kind == "dir":
                values[arg] = os.path.join(workdir, arg.lower())
                os.makedirs(values[arg])
            elif kind == "host":
                values[arg] = "127.0.0.1"
            elif kind == "port":
                values[arg] = str(server.port)
        result["values"] = values

        stderr_path = os.path.join(root, "stderr")
        deadline = _run_seconds(name) + DEADLINE_MARGIN_S
        started_at = time.monotonic()
        chunks = []
        proc = reader = None
        try:
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, program_file] + [values[arg] for arg, _ in program["args"]],
                    cwd=workdir,
                    env=_environment(program),
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    start_new_session=True,
                )
            children.add(proc)
            first_batch = threading.Event()

            def read():
                for raw in proc.stdout:
                    chunks.append(raw)
                    if raw.startswith(b"Time: "):
                        first_batch.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            if feed and feed[0] == "files":
                threading.Thread(
                    target=make_goldens.feed_files,
                    args=(values["STREAMING_DIR"], feed[1], feed[2], first_batch),
                    daemon=True,
                ).start()
            try:
                result["code"] = proc.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                result["notes"].append("killed after its deadline of %d s" % deadline)
                result["code"] = None
        finally:
            if proc is not None:
                _kill_group(proc)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    result["notes"].append("did not end 10 s after SIGKILL")
                children.discard(proc)
            if server is not None:
                if len(server.connections) != 1:
                    result["notes"].append("the receiver connected %d times" % len(server.connections))
                if server.sent != len(feed[1]):
                    result["notes"].append("sent %d of %d lines" % (server.sent, len(feed[1])))
                server.close()
        if reader is not None:
            reader.join(10)
        result["seconds"] = time.monotonic() - started_at
        result["stdout"] = b"".join(chunks).decode("utf-8", errors="replace")
        with open(stderr_path, encoding="utf-8", errors="replace") as f:
            result["stderr"] = f.read()
        # The golden forms without make_goldens' check against the fixed input: the comparison
        # with the golden file says the same and shows the difference.
        unchecked = {k: v for k, v in program.items() if k != "expect"}
        try:
            result["forms"] = make_goldens.goldens_of(unchecked, result["stdout"], values)
        except (normalise.GoldenFormError, ValueError, LookupError, SyntaxError, OSError) as e:
            result["form_error"] = "%s: %s" % (type(e).__name__, e)
    return result


@pytest.fixture(scope="module")
def ember_runs(request):
    """Starts every selected program (longest first, PARALLEL_RUNS at a time); name -> future."""
    selected = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.module is sys.modules[__name__] and callspec and "name" in callspec.params:
            selected.append(callspec.params["name"])
    children = _Children()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL_RUNS, thread_name_prefix="seed-run")
    futures = {}
    for name in sorted(set(selected), key=lambda n: -_run_seconds(n)):
        futures[name] = pool.submit(_run_on_ember, name, children)
    try:
        yield futures
    finally:
        for future in futures.values():
            future.cancel()
        children.kill_all()
        pool.shutdown(wait=True)


def _budget(futures):
    """How long a case may wait for its run: every run's deadline, back to back."""
    return sum(_run_seconds(n) + DEADLINE_MARGIN_S + 15 for n in futures)


def _segments(text):
    """The comparable text as segments: ("lines", [line, ...]) between pprint blocks, and
    ("block", header time line, element lines, closed) for each block; a block's position is
    its index among the blocks of its batch."""
    lines = text.split("\n")
    segments = []
    rest = []
    i = 0
    while i < len(lines):
        if (
            i + 2 < len(lines)
            and lines[i] == normalise.DASHES
            and lines[i + 2] == normalise.DASHES
            and _OFFSET_TIME.match(lines[i + 1])
        ):
            if rest:
                segments.append(("lines", rest))
                rest = []
            j = i + 3
            while j < len(lines) and lines[j] != "":
                j += 1
            segments.append(("block", lines[i + 1], lines[i + 3 : j], j < len(lines)))
            i = j + 1
        else:
            rest.append(lines[i])
            i += 1
    if rest:
        segments.append(("lines", rest))
    return segments


def _render(segments):
    out = []
    for segment in segments:
        if segment[0] == "lines":
            out.extend(segment[1])
        else:
            _, time_line, elements, closed = segment
            out += [normalise.DASHES, time_line, normalise.DASHES] + elements + ([""] if closed else [])
    return "\n".join(out)


def _reconcile_shuffled(name, ember_text, golden_text):
    """ember's comparable text with each shuffled block that holds what the golden's holds (in
    another order, or another legitimate selection when cut by "...") replaced by the golden's
    block; returns (text, notes). Any other difference is left for the byte comparison."""
    shuffled = SHUFFLED_BLOCKS.get(name, set())
    ember, golden = _segments(ember_text), _segments(golden_text)
    if len(ember) != len(golden):
        return ember_text, []
    notes = []
    position = {}
    for index, (mine, theirs) in enumerate(zip(ember, golden)):
        if theirs[0] != "block":
            continue
        time_line = theirs[1]
        position[time_line] = position.get(time_line, -1) + 1
        if mine[0] != "block" or mine[1] != time_line:
            continue
        if mine == theirs or position[time_line] not in shuffled or mine[3] != theirs[3]:
            continue
        mine_elements, their_elements = mine[2], theirs[2]
        truncated = bool(their_elements) and their_elements[-1] == "..."
        if not truncated:
            if sorted(mine_elements) == sorted(their_elements):
                ember[index] = theirs
            continue
        offset = float(_OFFSET_TIME.match(time_line).group(1))
        contents_of = TRUE_CONTENTS.get(name)
        contents = contents_of(offset, position[time_line]) if contents_of else None
        if contents is None:
            notes.append("%s block %d is cut by '...' and its true contents are not known here" % (time_line, position[time_line]))
            continue
        shown = mine_elements[:-1]
        if (
            len(mine_elements) == len(their_elements)
            and mine_elements[-1] == "..."
            and len(set(shown)) == len(shown)
            and set(shown) <= contents
            and len(contents) > len(shown)
        ):
            ember[index] = theirs
        else:
            notes.append(
                "%s block %d: cut by '...', its lines must be %d distinct elements of %s"
                % (time_line, position[time_line], len(their_elements) - 1, sorted(contents))
            )
    return _render(ember), notes


def _first_difference(expected, got):
    """The first pprint block or run of other lines where the two comparable texts differ."""
    golden, ember = _segments(expected), _segments(got)
    position = {}
    for index in range(max(len(golden), len(ember))):
        theirs = golden[index] if index < len(golden) else None
        mine = ember[index] if index < len(ember) else None
        if theirs is not None and theirs[0] == "block":
            position[theirs[1]] = position.get(theirs[1], -1) + 1
        if theirs == mine:
            continue
        where = "segment %d" % index
        if theirs is not None and theirs[0] == "block":
            where = "the pprint block %d of %s" % (position[theirs[1]], theirs[1][len("Time: ") :])
        return "first difference, at %s:\n  PySpark:\n%s  ember:\n%s" % (where, _indented(theirs), _indented(mine))
    return ""


def _indented(segment):
    if segment is None:
        return "    (nothing)\n"
    return "".join("    " + line + "\n" for line in _render([segment]).split("\n"))


def _diff(expected, got, label):
    lines = list(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            got.splitlines(keepends=True),
            "golden/" + label,
            "ember",
            n=3,
        )
    )
    shown = "".join(lines[:80])
    if len(lines) > 80:
        shown += "... (%d more diff lines)\n" % (len(lines) - 80)
    return shown


def _read_golden(name, suffix):
    with open(os.path.join(GOLDEN, name + suffix), encoding="utf-8") as f:
        return f.read()


def _context(run):
    stderr = run["stderr"].rstrip("\n").split("\n")
    return (
        "\n--- exit code %s after %.1f s%s\n--- stdout (last 40 lines):\n%s\n--- stderr (last 40 lines):\n%s"
        % (
            run.get("code"),
            run["seconds"],
            "; " + "; ".join(run["notes"]) if run["notes"] else "",
            "\n".join(run["stdout"].rstrip("\n").split("\n")[-40:]),
            "\n".join(stderr[-40:]),
        )
    )


def _details_error_any_exception_type(text):
    """details_error's first line names the exception's type, PySpark's being its JVM bridge's
    Py4JJavaError: any type is accepted, the lines after it stay exact."""
    return re.sub(r"^awaitTerminationOrTimeout raised [\w.]+$", "awaitTerminationOrTimeout raised <TYPE>", text, flags=re.M)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_seed_program_prints_what_pyspark_printed(name, ember_runs):
    assert name in PROGRAMS, "%s is in manifest.json but not in make_goldens.PROGRAMS" % name
    entry = MANIFEST[name]
    assert entry["status"] == "ok", "%s has no golden: %s" % (name, entry)
    run = ember_runs[name].result(timeout=_budget(ember_runs))

    # Only the two pyspark import lines changed.
    before, after = run["source"].split("\n"), run["ember_source"].split("\n")
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert sorted(prefix for prefix in _IMPORTS if any(a.startswith(prefix) for a, _ in changed)) == sorted(_IMPORTS)
    assert len(changed) == 2, changed
    for a, b in changed:
        prefix = next(p for p in _IMPORTS if a.startswith(p))
        assert b == _IMPORTS[prefix] + a[len(prefix) :], (a, b)

    context = _context(run)
    assert run["code"] == 0, "%s exited with %s on ember%s" % (name, run["code"], context)
    assert run["form_error"] is None, "%s: ember's output cannot be put in the golden's form: %s%s" % (
        name,
        run["form_error"],
        context,
    )

    compare = entry["compare"]
    if compare["stdout"] == "comparable":
        golden = _read_golden(name, ".cmp")
        got, notes = _reconcile_shuffled(name, run["forms"][".cmp"], golden)
        if name == "details_error":
            golden, got = _details_error_any_exception_type(golden), _details_error_any_exception_type(got)
        assert got == golden, "%s: stdout differs from PySpark's (%s)\n%s%s%s%s" % (
            name,
            ".cmp",
            "".join(n + "\n" for n in notes),
            _first_difference(golden, got),
            _diff(golden, got, name + ".cmp"),
            context,
        )
    else:
        golden = _read_golden(name, ".norm")
        got = run["forms"][".norm"]
        assert got == golden, "%s: normalised stdout differs from PySpark's\n%s%s" % (
            name,
            _diff(golden, got, name + ".norm"),
            context,
        )
    if compare.get("files"):
        golden = _read_golden(name, ".files")
        got = run["forms"][".files"]
        assert got == golden, "%s: saveAsTextFiles wrote other files than PySpark\n%s%s" % (
            name,
            _diff(golden, got, name + ".files"),
            context,
        )
