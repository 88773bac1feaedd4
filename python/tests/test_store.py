"""The modern store's contract (azure-eventhub 5.x), sync and aio, mirroring the Rust tests:
claims, lists, checkpoints, names, bad input, bad files, two threads, fork, fenced mode."""

import asyncio
import copy
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import eventhubs_checkpointstore_sqlite as ehcs
from eventhubs_checkpointstore_sqlite import aio
from conftest import GROUP, HUB, NS, checkpoint, ownership

try:
    import azure.eventhub  # noqa: F401

    HAVE_SDK = hasattr(azure.eventhub, "CheckpointStore")
except ImportError:
    HAVE_SDK = False


BLOCKER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("ROLLBACK")
"""


def hold(script, db):
    """Another process running `script` on `db`: it holds a lock (it says "locked") until a
    line is written to it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout.readline() == b"locked\n"
    return holder


class Sync:
    """Runs the sync store's methods as they are."""

    def __init__(self, path, **kw):
        self.store = ehcs.SqliteCheckpointStore(path, **kw)

    def __getattr__(self, name):
        return getattr(self.store, name)


class Async:
    """Runs the aio store's methods to completion, so one test body covers both faces."""

    def __init__(self, path, **kw):
        self.loop = asyncio.new_event_loop()
        self.store = aio.SqliteCheckpointStore(path, **kw)

    def __getattr__(self, name):
        method = getattr(self.store, name)

        def run(*a, **kw):
            return self.loop.run_until_complete(method(*a, **kw))

        return run


@pytest.fixture(params=[Sync, Async], ids=["sync", "aio"])
def face(request, db):
    made = []

    def make(path=db, **kw):
        s = request.param(path, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# -- claims ------------------------------------------------------------------------------------


def test_claim_without_etag_only_creates_and_returns_fresh_dicts(face):
    s = face()
    asked = [ownership("0"), ownership("1")]
    before = copy.deepcopy(asked)
    won = s.claim_ownership(asked)
    assert asked == before, "the input is never mutated"
    assert [w["partition_id"] for w in won] == ["0", "1"]
    for w, a in zip(won, asked):
        assert w is not a
        assert isinstance(w["etag"], str) and w["etag"]
        assert isinstance(w["last_modified_time"], float)
        assert abs(w["last_modified_time"] - time.time()) < 60
        assert w["owner_id"] == "p1"
    # A second create-only claim loses: left out, never raised.
    assert s.claim_ownership([ownership("0", owner="p2")]) == []


def test_claim_with_etag_wins_only_with_the_stored_etag_and_rotates_it(face):
    s = face()
    (first,) = s.claim_ownership([ownership("0")])
    (renewed,) = s.claim_ownership([dict(first)])
    assert renewed["etag"] != first["etag"]
    assert renewed["last_modified_time"] >= first["last_modified_time"]
    # The stale etag loses; an etag for a partition nobody claimed loses too.
    assert s.claim_ownership([dict(first, owner_id="p2")]) == []
    assert s.claim_ownership([ownership("9", etag=first["etag"])]) == []


def test_results_keep_input_order_and_leave_lost_claims_out(face):
    s = face()
    s.claim_ownership([ownership("1", owner="other")])
    asked = [ownership(p) for p in ["3", "1", "0", "2"]]
    won = s.claim_ownership(asked)
    assert [w["partition_id"] for w in won] == ["3", "0", "2"]
    assert isinstance(won, list)


def test_release_reads_back_as_an_empty_owner(face):
    s = face()
    (mine,) = s.claim_ownership([ownership("0")])
    (released,) = s.claim_ownership([dict(mine, owner_id="")])
    assert released["owner_id"] == ""
    (listed,) = s.list_ownership(NS, HUB, GROUP)
    assert listed["owner_id"] == "" and listed["etag"] == released["etag"]
    # None releases too.
    (again,) = s.claim_ownership([dict(released, owner_id="p1")])
    (none,) = s.claim_ownership([dict(again, owner_id=None)])
    assert none["owner_id"] == ""


def test_claim_of_nothing_is_an_empty_list(face):
    assert face().claim_ownership([]) == []


def test_bad_input_is_a_value_error_and_nothing_is_written(face):
    s = face()
    for bad in [
        [ownership("0"), ownership("")],  # an empty partition id
        [ownership("0"), {"partition_id": "1"}],  # missing names
        [ownership("0"), "not a dict"],
        [ownership("0", ns="")],
    ]:
        with pytest.raises(ValueError):
            s.claim_ownership(bad)
    assert s.list_ownership(NS, HUB, GROUP) == [], "one invalid entry writes nothing"


# -- lists and names ---------------------------------------------------------------------------


def test_lists_are_scoped_sorted_numerically_and_give_the_callers_spelling(face):
    s = face()
    s.claim_ownership([ownership(p) for p in ["10", "2", "1"]])
    s.claim_ownership([ownership("0", group="other")])
    listed = s.list_ownership(NS.upper(), "TELEMETRY", "$default")
    assert [o["partition_id"] for o in listed] == ["1", "2", "10"]
    assert {o["fully_qualified_namespace"] for o in listed} == {NS.upper()}
    assert {o["eventhub_name"] for o in listed} == {"TELEMETRY"}
    assert {o["consumer_group"] for o in listed} == {"$default"}
    assert set(listed[0]) == {
        "fully_qualified_namespace",
        "eventhub_name",
        "consumer_group",
        "partition_id",
        "owner_id",
        "etag",
        "last_modified_time",
    }
    # Fresh copies: mutating a listed dict changes nothing stored.
    listed[0]["owner_id"] = "mutated"
    assert s.list_ownership(NS, HUB, GROUP)[0]["owner_id"] == "p1"


def test_names_fold_in_ascii_only_as_in_rust():
    assert ehcs.fold("MyNS.ServiceBus") == "myns.servicebus"
    assert ehcs.fold("ÄÖ-Hub") == "ÄÖ-hub", "non-ASCII letters are not folded, as in Rust"


def test_keyword_names_and_kwargs_are_the_sdks(face):
    s = face()
    s.claim_ownership(ownership_list=[ownership("0")], extra="ignored")
    listed = s.list_ownership(
        fully_qualified_namespace=NS, eventhub_name=HUB, consumer_group=GROUP, timeout=3
    )
    assert len(listed) == 1
    s.update_checkpoint(checkpoint=checkpoint("0"), whatever=1)
    assert s.list_checkpoints(
        fully_qualified_namespace=NS, eventhub_name=HUB, consumer_group=GROUP, x=1
    )[0]["offset"] == "100"


# -- checkpoints -------------------------------------------------------------------------------


def test_checkpoints_are_replaced_typed_and_listed_in_order(face):
    s = face()
    s.update_checkpoint(checkpoint("1", "8591964920", 960180))
    s.update_checkpoint(checkpoint("0", "0", 0))
    s.update_checkpoint(checkpoint("1", "8591965000", 960181))
    listed = s.list_checkpoints(NS, HUB, GROUP)
    assert [c["partition_id"] for c in listed] == ["0", "1"]
    assert listed[0]["offset"] == "0" and isinstance(listed[0]["offset"], str)
    assert listed[1]["offset"] == "8591965000"
    assert listed[1]["sequence_number"] == 960181
    assert isinstance(listed[1]["sequence_number"], int)
    # Either field alone is a position.
    s.update_checkpoint(checkpoint("2", None, 5))
    s.update_checkpoint(checkpoint("3", "77", None))
    by = {c["partition_id"]: c for c in s.list_checkpoints(NS, HUB, GROUP)}
    assert (by["2"]["offset"], by["2"]["sequence_number"]) == (None, 5)
    assert (by["3"]["offset"], by["3"]["sequence_number"]) == ("77", None)


def test_a_checkpoint_with_neither_field_is_a_value_error(face):
    s = face()
    with pytest.raises(ValueError, match="offset or a sequence_number"):
        s.update_checkpoint(checkpoint("0", None, None))
    with pytest.raises(ValueError):
        s.update_checkpoint(checkpoint("0", "1", "not a number"))
    with pytest.raises(ValueError):
        s.update_checkpoint({"partition_id": "0", "offset": "1"})
    assert s.list_checkpoints(NS, HUB, GROUP) == []


def test_the_store_is_truthy_and_a_context_manager(db):
    with ehcs.SqliteCheckpointStore(db) as s:
        assert bool(s) is True
        s.update_checkpoint(checkpoint("0"))
    with pytest.raises(ehcs.StoreClosedError):
        s.list_checkpoints(NS, HUB, GROUP)
    s.close()  # idempotent

    async def run():
        async with aio.SqliteCheckpointStore(db) as a:
            assert bool(a) is True
            assert len(await a.list_checkpoints(NS, HUB, GROUP)) == 1
        with pytest.raises(ehcs.StoreClosedError):
            await a.list_checkpoints(NS, HUB, GROUP)

    asyncio.run(run())


def test_subclasses_of_the_sdk_bases_when_the_sdk_is_installed():
    if not HAVE_SDK:
        assert ehcs.SqliteCheckpointStore.__mro__[1] is object
        pytest.skip("azure-eventhub 5.x is not installed here")
    import azure.eventhub
    import azure.eventhub.aio
    from azure.eventhub.exceptions import OwnershipLostError

    assert issubclass(ehcs.SqliteCheckpointStore, azure.eventhub.CheckpointStore)
    assert issubclass(aio.SqliteCheckpointStore, azure.eventhub.aio.CheckpointStore)
    assert ehcs.OwnershipLostError is OwnershipLostError


# -- files, processes, threads -----------------------------------------------------------------


def test_a_file_that_is_not_a_store_is_refused_and_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a database at all, just text " * 100)
    before = path.read_bytes()
    with pytest.raises(ehcs.NotAStoreError):
        ehcs.SqliteCheckpointStore(path)
    assert path.read_bytes() == before
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(ehcs.NotAStoreError, match="another application"):
        ehcs.SqliteCheckpointStore(other)
    assert other.read_bytes() == before
    assert isinstance(ehcs.NotAStoreError("x"), OSError)


def test_bad_options_are_value_errors(db):
    with pytest.raises(ValueError):
        ehcs.SqliteCheckpointStore(db, durability="sometimes")
    with pytest.raises(ValueError):
        ehcs.SqliteCheckpointStore(db, busy_timeout=-1)


def test_a_busy_database_raises_a_timeout_error_and_releases_the_gil(db):
    s = ehcs.SqliteCheckpointStore(db, busy_timeout=1.5)
    s.update_checkpoint(checkpoint("0"))
    # The lock is held by another process: in this one, Python's own sqlite3 library would not
    # see the POSIX locks of the store's (two SQLite copies in one process; sqlite.org
    # howtocorrupt 2.2.1).
    blocker = hold(BLOCKER, db)
    errors = []

    def writer():
        try:
            s.update_checkpoint(checkpoint("0", "200", 20))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=writer)
    started = time.monotonic()
    t.start()
    # While the writer waits for the lock, this thread keeps running Python: the GIL is free.
    spins = 0
    while t.is_alive() and time.monotonic() - started < 10:
        spins += 1
    t.join()
    blocker.communicate(b"done\n", timeout=10)
    assert len(errors) == 1 and isinstance(errors[0], ehcs.StoreBusyError), errors
    assert isinstance(errors[0], TimeoutError)
    assert time.monotonic() - started >= 1.4
    assert spins > 100_000, f"the main thread ran only {spins} loops while the writer waited"
    assert s.list_checkpoints(NS, HUB, GROUP)[0]["offset"] == "100", "nothing was written"


def test_two_threads_use_one_store_at_once(db):
    s = ehcs.SqliteCheckpointStore(db)
    done = []

    def balance():
        for i in range(200):
            owned = [o for o in s.list_ownership(NS, HUB, GROUP) if o["owner_id"] == "p1"]
            s.claim_ownership(owned or [ownership("0")])
        done.append("balance")

    def receive():
        for i in range(200):
            s.update_checkpoint(checkpoint("0", str(i), i))
        done.append("receive")

    threads = [threading.Thread(target=balance), threading.Thread(target=receive)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(done) == ["balance", "receive"]
    assert s.list_checkpoints(NS, HUB, GROUP)[0]["sequence_number"] == 199


def fork_child(body):
    """Runs `body` in a child of `os.fork()`; returns a function that waits for the child and
    returns what `body` returned (a str), or the exception it raised, as text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        try:
            try:
                msg = body()
            except Exception as e:  # noqa: BLE001 - reported to the parent
                msg = f"{type(e).__name__}: {e}"
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)

    def result():
        with os.fdopen(r) as f:
            msg = f.read()
        os.waitpid(pid, 0)
        return msg

    return result


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_an_inherited_store_refuses_after_fork_and_a_new_one_works(db):
    s = ehcs.SqliteCheckpointStore(db)
    s.update_checkpoint(checkpoint("0"))

    def child():
        try:
            s.list_checkpoints(NS, HUB, GROUP)
            msg = "inherited store answered"
        except ehcs.ForkedError as e:
            msg = "refused: " + str(e)
        fresh = ehcs.SqliteCheckpointStore(db)
        fresh.update_checkpoint(checkpoint("1", "5", 5))
        fresh.close()
        return msg

    msg = fork_child(child)()
    assert msg.startswith("refused:") and "reopen after fork" in msg, msg
    # The parent's store still works, and sees the child's write.
    assert [c["partition_id"] for c in s.list_checkpoints(NS, HUB, GROUP)] == ["0", "1"]


GATE_HOLDER = """
import fcntl, sys
f = open(sys.argv[1], "r+b")
fcntl.lockf(f, fcntl.LOCK_EX, 1, 0x40001000)
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_store_opened_after_fork_takes_turns_with_the_parent_waiting_at_the_gate(db):
    # Another process holds the store's cross-process gate (a lock on one byte of the file,
    # GATE_BYTE in src/store/gate.rs), and the parent's writer waits for it when the parent
    # forks: a wait in the kernel, in no SQLite call (forking during one could leave the child
    # a lock no thread of its own will release). A new store in the child must wait for the
    # gate like any process's, and write once it is free; sharing the parent's descriptor,
    # and with it the gate's state, it waited for the parent's helper thread, which the child
    # does not have, and failed with StoreBusyError.
    s = ehcs.SqliteCheckpointStore(db, busy_timeout=60)
    s.update_checkpoint(checkpoint("0"))
    holder = hold(GATE_HOLDER, db)
    writer = threading.Thread(target=s.update_checkpoint, args=(checkpoint("0", "2", 2),))
    writer.start()
    time.sleep(0.5)

    def child():
        fresh = ehcs.SqliteCheckpointStore(db, busy_timeout=20)
        fresh.update_checkpoint(checkpoint("1", "5", 5))
        fresh.close()
        return "written"

    result = fork_child(child)
    time.sleep(1.0)
    holder.communicate(b"go\n", timeout=30)
    writer.join(30)
    assert not writer.is_alive()
    msg = result()
    assert msg == "written", msg
    listed = {c["partition_id"]: c["sequence_number"] for c in s.list_checkpoints(NS, HUB, GROUP)}
    assert listed == {"0": 2, "1": 5}, listed


def test_two_stores_on_one_file_never_both_win_a_claim(db):
    a, b = ehcs.SqliteCheckpointStore(db), ehcs.SqliteCheckpointStore(db)
    wins = []
    barrier = threading.Barrier(2)

    def claim(store, name):
        barrier.wait()
        for p in range(50):
            wins.extend((w["partition_id"], name) for w in store.claim_ownership([ownership(str(p), owner=name)]))

    ts = [threading.Thread(target=claim, args=(a, "a")), threading.Thread(target=claim, args=(b, "b"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(p for p, _ in wins) == sorted(str(p) for p in range(50))


# -- fenced mode -------------------------------------------------------------------------------


def test_fenced_mode_raises_ownership_lost_once_another_owner_holds_the_partition(face):
    s = face(fenced=True)
    other = face()
    with pytest.raises(ehcs.OwnershipLostError):
        s.update_checkpoint(checkpoint("0", "1", 1))  # never won it
    (mine,) = s.claim_ownership([ownership("0", owner="me")])
    s.update_checkpoint(checkpoint("0", "10", 10))
    # Renewals move the remembered etag along.
    (mine,) = s.claim_ownership([dict(mine)])
    s.update_checkpoint(checkpoint("0", "20", 20))
    # Another processor steals it with the etag it listed.
    (listed,) = other.list_ownership(NS, HUB, GROUP)
    (theirs,) = other.claim_ownership([dict(listed, owner_id="thief")])
    other.update_checkpoint(checkpoint("0", "30", 30))
    with pytest.raises(ehcs.OwnershipLostError):
        s.update_checkpoint(checkpoint("0", "25", 25))
    assert other.list_checkpoints(NS, HUB, GROUP)[0]["offset"] == "30", "the stale write did not land"
    # A plain store is not fenced.
    other.update_checkpoint(checkpoint("0", "31", 31))
    # Released by this instance: not held any more.
    s2 = face(fenced=True)
    (won,) = s2.claim_ownership([ownership("1", owner="me")])
    s2.claim_ownership([dict(won, owner_id="")])
    with pytest.raises(ehcs.OwnershipLostError):
        s2.update_checkpoint(checkpoint("1", "1", 1))


def test_concurrent_aio_checkpoints_share_transactions(db):
    """Group commit reaches Python callers: 32 tasks checkpointing at once are written in far
    fewer transactions than writes, and every write lands."""

    async def body():
        async with aio.SqliteCheckpointStore(db) as s:
            async def writer(p):
                for i in range(1, 21):
                    await s.update_checkpoint(checkpoint(str(p), str(i), i))

            await asyncio.gather(*(writer(p) for p in range(32)))
            writes, commits = s.commit_stats()
            listed = await s.list_checkpoints(NS, HUB, GROUP)
            return writes, commits, listed

    writes, commits, listed = asyncio.run(body())
    assert writes == 32 * 20
    assert commits * 4 <= writes, f"{writes} writes in {commits} transactions"
    assert sorted(c["sequence_number"] for c in listed) == [20] * 32


def test_an_aio_batch_fails_each_write_alone(db):
    """One fenced-out or invalid write in a batch does not fail the others."""

    async def body():
        async with aio.SqliteCheckpointStore(db, fenced=True) as s:
            await s.claim_ownership([ownership("0", owner="me")])
            results = await asyncio.gather(
                s.update_checkpoint(checkpoint("0", "1", 1)),
                s.update_checkpoint(checkpoint("1", "1", 1)),  # never claimed
                s.update_checkpoint(checkpoint("0", None, None)),  # names no position
                return_exceptions=True,
            )
            return results, await s.list_checkpoints(NS, HUB, GROUP)

    results, listed = asyncio.run(body())
    assert results[0] is None
    assert isinstance(results[1], ehcs.OwnershipLostError)
    assert isinstance(results[2], ValueError)
    assert [(c["partition_id"], c["offset"]) for c in listed] == [("0", "1")]
