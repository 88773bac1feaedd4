"""A 1.x EventProcessorHost (this venv) and a 5.x EventProcessor (another venv, a subprocess:
modern_processor.py) in one consumer group on one file: they share the partitions, take them
from each other, resume from each other's positions, and no acknowledged checkpoint goes back."""

import asyncio
import collections
import json
import os
import subprocess
import sys

import pytest

from test_eph_host import PARTITIONS, fake_pumps, owners, start_host  # noqa: F401 (fake_pumps: autouse)
import test_eph_host

MODERN = os.environ.get("EHCS_MODERN_PYTHON")
pytestmark = pytest.mark.skipif(not MODERN, reason="EHCS_MODERN_PYTHON (a 5.x venv) not given")


def test_a_legacy_host_and_a_modern_processor_share_one_group(tmp_path):
    db = os.path.join(tmp_path, "mixed.db")
    script = os.path.join(os.path.dirname(__file__), "modern_processor.py")

    async def body():
        host, _ = await start_host(db)
        await asyncio.sleep(3)
        modern = await asyncio.create_subprocess_exec(
            MODERN, script, db, "14", stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        reading = asyncio.ensure_future(modern.communicate())
        snapshots = []
        while not reading.done():
            snapshots.append(collections.Counter(owners(db).values()))
            await asyncio.sleep(0.5)
        out, err = await reading
        await asyncio.sleep(4)  # the host takes back what the stopped processor released
        after = collections.Counter(owners(db).values())
        await host.close_async()
        return host.host_name, modern.returncode, out.decode(), err.decode(), snapshots, after

    name, rc, out, err, snapshots, after = asyncio.run(body())
    assert rc == 0, err
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    assert not [l for l in lines if "error" in l], lines
    legacy = [(h, p, s) for h, p, s in test_eph_host.LOG.checkpoints]
    modern = [l for l in lines if "checkpoint" in l]
    (done,) = [l["done"] for l in lines if "done" in l]
    balanced = [c for c in snapshots if c == collections.Counter({name: 2, done: 2})]
    print(f"legacy {len(legacy)} checkpoints, modern {len(modern)}, "
          f"{len(balanced)} of {len(snapshots)} snapshots split 2/2")
    # While both ran, they split the partitions 2/2 (the modern processor took its fair share
    # from the legacy host, through the same rows).
    assert balanced, snapshots
    # Every owner seen is one of the two (or released).
    assert all(set(c) <= {name, done, ""} for c in snapshots), snapshots
    # The modern processor resumed each partition from the position the legacy host stored.
    starts = [l for l in lines if "start" in l]
    assert starts and all(s["stored"] > 0 for s in starts), starts
    # After it stopped (and released), the legacy host holds everything again.
    assert after == collections.Counter({name: 4}), after
    # No acknowledged checkpoint went backwards on any partition, across the two processes
    # (the legacy host's log is in its loop's order; the modern one's is timestamped).
    modern_by = collections.defaultdict(list)
    for l in modern:
        modern_by[l["checkpoint"]].append(l["seq"])
    for p, seqs in modern_by.items():
        assert seqs == sorted(seqs), p
    final = {}
    for h, p, s in legacy:
        final[p] = max(final.get(p, 0), s)
    for p, seqs in modern_by.items():
        final[p] = max(final.get(p, 0), max(seqs))
    from eventhubs_checkpointstore_sqlite import SqliteCheckpointStore

    store = SqliteCheckpointStore(db)
    stored = {c["partition_id"]: c["sequence_number"] for c in store.list_checkpoints(
        "ns.servicebus.windows.net", "hub", "$default")}
    for p in PARTITIONS:
        assert stored[p] >= final.get(p, 0), (p, stored[p], final.get(p))
