"""A mixed fleet in one consumer group on one file: two azure-eventhub 5.x EventProcessors on this
package's fenced aio store (eph_host/modern_processor.py, subprocesses) and two Rust processors
(the `eh-checkpoints` program's load-balancing worker, the one `simulate` runs; path in
$EHCS_CLI), each side spelling the names its own way. They share the partitions and take them
from each other; every ownership generation has exactly one owner; each side resumes from the
positions the other stored; no acknowledged checkpoint is lost."""

import collections
import json
import os
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("azure.eventhub")

CLI = os.environ.get("EHCS_CLI")
pytestmark = pytest.mark.skipif(not CLI, reason="EHCS_CLI (the eh-checkpoints binary) not given")

PARTITIONS = 8
# The names the Rust worker uses (SIM_NAMESPACE, SIM_HUB, SIM_GROUP in the CLI), spelled
# differently on the Python side: the store folds them to one group.
PY_NAMES = ["Simulate.EH-Checkpoints.LOCAL", "Simulated-Hub", "$Default"]
RUST_NAMES = ("simulate.eh-checkpoints.local", "simulated-hub", "$default")
SCRIPT = os.path.join(os.path.dirname(__file__), "eph_host", "modern_processor.py")


class Process:
    """A child whose stdout and stderr are read as it writes them (a full pipe would stop it)."""

    def __init__(self, args, stdin=None):
        self.proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.out, self.err = [], []
        self.readers = [threading.Thread(target=self._read, args=(pipe, into), daemon=True)
                        for pipe, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for r in self.readers:
            r.start()

    @staticmethod
    def _read(pipe, into):
        for line in pipe:
            into.append(line.rstrip("\n"))

    def finish(self, timeout):
        """Waits for the exit; returns (exit code, stdout lines, stderr text)."""
        rc = self.proc.wait(timeout=timeout)
        for r in self.readers:
            r.join(timeout=10)
        return rc, self.out, "\n".join(self.err)


def rust_worker(db, name):
    return Process(
        [CLI, "--db", db, "__worker", "--id", name, "--partitions", str(PARTITIONS),
         "--events", "100000000", "--rate", "200", "--checkpoint-every", "10",
         "--interval-ms", "500", "--expiry-ms", "3000", "--strategy", "balanced"],
        stdin=subprocess.PIPE,
    )


def python_processor(db, seconds):
    return Process([sys.executable, SCRIPT, db, str(seconds), *PY_NAMES, str(PARTITIONS)])


def parse_rust(lines):
    """The worker's report lines (simulate/protocol.rs) as (kind, fields)."""
    return [(l.split(" ")[0], l.split(" ")[1:]) for l in lines if l]


def test_python_and_rust_processors_share_one_group(tmp_path):
    db = str(tmp_path / "fleet.db")
    rust = {"rust-1": rust_worker(db, "rust-1")}
    # The first Rust worker holds every partition before a Python processor starts, so that the
    # Python side has to take some from it: its balanced strategy claims one a cycle, and
    # after a fixed 2 s it held about half, the Python side took only free ones, and no
    # partition moved from Rust to Python (1 run in 4 in CI).
    deadline = time.monotonic() + 60
    while len({f[0] for k, f in parse_rust(list(rust["rust-1"].out)) if k == "C"}) < PARTITIONS:
        assert time.monotonic() < deadline, "rust-1 did not claim every partition in 60 s"
        time.sleep(0.1)
    py = [python_processor(db, 16)]
    time.sleep(2)
    rust["rust-2"] = rust_worker(db, "rust-2")
    py.append(python_processor(db, 12))
    py_lines = []
    for p in py:
        rc, out, err = p.finish(timeout=120)
        assert rc == 0, err
        py_lines.append([json.loads(l) for l in out if l.startswith("{")])
    time.sleep(3)  # the Rust workers take back what the stopped processors released
    rust_out = {}
    for name, w in rust.items():
        w.proc.stdin.write("stop\n")
        w.proc.stdin.flush()
        rc, out, err = w.finish(timeout=60)
        assert rc == 0, (name, err, out[-20:])
        rust_out[name] = parse_rust(out)

    # Nobody failed.
    for name, reports in rust_out.items():
        assert not [f for k, f in reports if k == "X"], (name, reports)
        assert reports[-1][0] == "D", name
    for lines in py_lines:
        assert not [l for l in lines if "error" in l], lines
    py_ids = [next(l["done"] for l in lines if "done" in l) for lines in py_lines]

    # Every claim won, from both sides: (partition, etag claimed from, new etag, owner).
    wins = []
    for name, reports in rust_out.items():
        for k, f in reports:
            if k == "C":
                part, old, new, owner = f[0], f[1], f[2], f[3]
                wins.append((part, None if old == "-" else old, new, None if owner == "-" else owner))
    for lines in py_lines:
        for l in lines:
            if "claim" in l:
                wins.append((l["claim"], l["old"], l["new"], l["owner"] or None))
    owners_by_side = collections.Counter(
        "rust" if o in rust else "python" for _, _, _, o in wins if o)
    print(f"{len(wins)} claims won: {dict(owners_by_side)}")
    # One owner per ownership generation: an etag is won once, and from any one etag (or from
    # no row) a partition moves to one new generation only.
    assert len({new for _, _, new, _ in wins}) == len(wins)
    successors = collections.Counter((p, old) for p, old, _, _ in wins)
    assert max(successors.values()) == 1, [k for k, n in successors.items() if n > 1]
    # Every generation's owner is one of the four processors (or nobody: released).
    assert {o for _, _, _, o in wins} <= set(rust) | set(py_ids) | {None}
    # Both sides held partitions, and ownership moved between them in both directions.
    assert owners_by_side["rust"] and owners_by_side["python"], owners_by_side
    # Who held each generation: a release (no owner) keeps the side of the owner before it, so
    # a partition released by one side and claimed by the other counts as moving between them.
    moves = collections.Counter()
    by_old = {(p, old): (new, o) for p, old, new, o in wins}
    for p in map(str, range(PARTITIONS)):
        etag, before, walked = None, None, 0
        while (p, etag) in by_old:
            etag, o = by_old[(p, etag)]
            walked += 1
            now = "rust" if o in rust else "python" if o else before
            if before and now != before:
                moves[(before, now)] += 1
            before = now
        # The claims of a partition form one chain from its first claim, whoever made them.
        assert walked == sum(1 for w in wins if w[0] == p), p
    print("ownership moves (from side, to side):", dict(moves))
    assert moves[("python", "rust")] and moves[("rust", "python")], moves

    # Positions, read both ways. Acknowledged checkpoints per partition, by side.
    acked = {"rust": collections.defaultdict(set), "python": collections.defaultdict(set)}
    for reports in rust_out.values():
        for k, f in reports:
            if k == "K":
                acked["rust"][f[0]].add(int(f[1]))
    for lines in py_lines:
        for l in lines:
            if "checkpoint" in l:
                acked["python"][l["checkpoint"]].add(l["seq"])
    # A Rust worker that gains a partition resumes at the stored position + 1: its first
    # processed event after a gain. Some of those positions were written by Python.
    rust_resumed_from_python = 0
    for reports in rust_out.values():
        fresh = set(str(p) for p in range(PARTITIONS))  # partitions not being processed
        for k, f in reports:
            if k == "L":
                fresh.add(f[0])
            elif k == "P":
                if f[0] in fresh and int(f[1]) - 1 in acked["python"][f[0]]:
                    rust_resumed_from_python += 1
                fresh.discard(f[0])
    # A Python processor that starts a partition reads the stored position; some were Rust's.
    py_resumed_from_rust = sum(
        1 for lines in py_lines for l in lines
        if "start" in l and l["stored"] in acked["rust"][l["start"]])
    print(f"rust resumed from python positions {rust_resumed_from_python} times, "
          f"python from rust positions {py_resumed_from_rust} times")
    assert rust_resumed_from_python > 0 and py_resumed_from_rust > 0

    # Nothing acknowledged was lost: the stored position of each partition is at or past every
    # checkpoint either side was told was written, read through each side's own spelling.
    import eventhubs_checkpointstore_sqlite as ehcs

    with ehcs.SqliteCheckpointStore(db) as store:
        stored = {c["partition_id"]: c["sequence_number"]
                  for c in store.list_checkpoints(*PY_NAMES)}
        assert stored == {c["partition_id"]: c["sequence_number"]
                          for c in store.list_checkpoints(*RUST_NAMES)}
    listed = json.loads(subprocess.run(
        [CLI, "--db", db, "--json", "checkpoints", "list", "--namespace", PY_NAMES[0],
         "--hub", PY_NAMES[1], "--group", PY_NAMES[2]],
        check=True, capture_output=True, text=True, timeout=60).stdout)
    assert {c["partition_id"]: c["sequence_number"] for c in listed} == stored
    for p in map(str, range(PARTITIONS)):
        most = max(acked["rust"][p] | acked["python"][p] | {0})
        assert stored.get(p, 0) >= most, (p, stored.get(p), most)
