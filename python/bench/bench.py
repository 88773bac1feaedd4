"""Benchmark of the Python package (BENCHMARKS.md, section "Python"): our aio store, a plain
Python sqlite3 baseline (one connection behind a lock, the same SQL and synchronous setting, run
in an executor), and, given an Azurite account URL, azure-eventhub-checkpointstoreblob-aio, side
by side in one run. Timing only; nothing here is a test.

    python bench.py [--blob-url URL] [--rounds N] [--partitions 1024] [--durability full]

With Azurite: bash .ci/with-azurite VENV/bin/python python/bench/bench.py --blob-url {url}
"""

import argparse
import asyncio
import concurrent.futures
import os
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid

from eventhubs_checkpointstore_sqlite.aio import SqliteCheckpointStore

NS, HUB, GROUP = "bench.servicebus.windows.net", "hub", "$default"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def checkpoint(pid, seq):
    return {
        "fully_qualified_namespace": NS,
        "eventhub_name": HUB,
        "consumer_group": GROUP,
        "partition_id": pid,
        "offset": str(seq * 100),
        "sequence_number": seq,
    }


def ownership(pid, owner="bench"):
    return {
        "fully_qualified_namespace": NS,
        "eventhub_name": HUB,
        "consumer_group": GROUP,
        "partition_id": pid,
        "owner_id": owner,
    }


class PlainSqlite:
    """The baseline: Python's sqlite3, one connection behind a lock, WAL, the store's
    checkpoint UPSERT and synchronous setting, called through an executor as an aio store
    would be."""

    def __init__(self, path, synchronous):
        self.con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute(f"PRAGMA synchronous={synchronous}")
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS checkpoint (namespace TEXT NOT NULL, event_hub TEXT NOT NULL,"
            " consumer_group TEXT NOT NULL, partition_id TEXT NOT NULL, event_offset TEXT,"
            " sequence_number INTEGER,"
            " PRIMARY KEY (namespace, event_hub, consumer_group, partition_id)) WITHOUT ROWID"
        )
        self.lock = threading.Lock()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=64)

    def _write(self, c):
        with self.lock:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.execute(
                "INSERT INTO checkpoint VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " event_offset = excluded.event_offset, sequence_number = excluded.sequence_number",
                (
                    c["fully_qualified_namespace"].lower(),
                    c["eventhub_name"].lower(),
                    c["consumer_group"].lower(),
                    c["partition_id"],
                    c["offset"],
                    c["sequence_number"],
                ),
            )
            self.con.execute("COMMIT")

    async def update_checkpoint(self, c):
        await asyncio.get_running_loop().run_in_executor(self.executor, self._write, c)

    async def close(self):
        self.executor.shutdown()
        self.con.close()


async def sequential(store, n):
    times = []
    for i in range(n):
        t = time.perf_counter()
        await store.update_checkpoint(checkpoint("0", i + 1))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def concurrent_tasks(store, tasks, per_task):
    async def writer(k):
        for i in range(per_task):
            await store.update_checkpoint(checkpoint(str(k), i + 1))

    t = time.perf_counter()
    await asyncio.gather(*(writer(k) for k in range(tasks)))
    return tasks * per_task / (time.perf_counter() - t)


async def claims_and_lists(store, partitions):
    requests = [ownership(str(p)) for p in range(partitions)]
    t = time.perf_counter()
    won = list(await store.claim_ownership(requests))
    claim = time.perf_counter() - t
    assert len(won) == partitions, f"claimed {len(won)} of {partitions}"
    t = time.perf_counter()
    listed = list(await store.list_ownership(NS, HUB, GROUP))
    listing = time.perf_counter() - t
    assert len(listed) == partitions, f"listed {len(listed)} of {partitions}"
    return claim, listing


async def blob_store(url):
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    conn = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={url};"
    )
    container = f"bench-{uuid.uuid4().hex[:12]}"
    store = BlobCheckpointStore.from_connection_string(conn, container)
    await store._container_client.create_container()
    return store


def fmt_us(s):
    return f"{s * 1e6:9.0f} us"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blob-url")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sequential", type=int, default=500)
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--per-task", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=1024)
    ap.add_argument("--durability", choices=["full", "normal"], default="full")
    a = ap.parse_args()
    sync = a.durability.upper()
    d = tempfile.mkdtemp(prefix="ehcs-bench-")
    print(f"durability {a.durability}, rounds {a.rounds}, cpus {os.cpu_count()}")
    rows = {}
    for r in range(a.rounds):
        ours = SqliteCheckpointStore(os.path.join(d, f"ours-{r}.db"), durability=a.durability)
        plain = PlainSqlite(os.path.join(d, f"plain-{r}.db"), sync)
        rows.setdefault("seq ours", []).append(await sequential(ours, a.sequential))
        rows.setdefault("seq plain", []).append(await sequential(plain, a.sequential))
        rows.setdefault("conc ours", []).append(await concurrent_tasks(ours, a.tasks, a.per_task))
        rows.setdefault("conc plain", []).append(await concurrent_tasks(plain, a.tasks, a.per_task))
        claim, listing = await claims_and_lists(ours, a.partitions)
        rows.setdefault("claim ours", []).append(claim)
        rows.setdefault("list ours", []).append(listing)
        if a.blob_url:
            blob = await blob_store(a.blob_url)
            async with blob:
                rows.setdefault("seq blob", []).append(await sequential(blob, min(a.sequential, 200)))
                rows.setdefault("conc blob", []).append(
                    await concurrent_tasks(blob, a.tasks, max(1, a.per_task // 4))
                )
                claim, listing = await claims_and_lists(blob, a.partitions)
                rows.setdefault("claim blob", []).append(claim)
                rows.setdefault("list blob", []).append(listing)
        await ours.close()
        await plain.close()
    m = {k: statistics.median(v) for k, v in rows.items()}
    print(f"sequential update_checkpoint p50: ours {fmt_us(m['seq ours'])}  plain sqlite3 "
          f"{fmt_us(m['seq plain'])}  ratio {m['seq ours'] / m['seq plain']:.2f}x")
    print(f"{a.tasks} tasks checkpointing: ours {m['conc ours']:9.0f}/s  plain sqlite3 "
          f"{m['conc plain']:9.0f}/s  ratio {m['conc ours'] / m['conc plain']:.1f}x")
    print(f"claim {a.partitions} in one call: ours {m['claim ours'] * 1e3:8.2f} ms")
    print(f"list {a.partitions}:             ours {m['list ours'] * 1e3:8.2f} ms")
    if a.blob_url:
        print(f"blob store: sequential p50 {fmt_us(m['seq blob'])}, {a.tasks} tasks "
              f"{m['conc blob']:.0f}/s (ours {m['conc ours'] / m['conc blob']:.0f}x), claim "
              f"{m['claim blob'] * 1e3:.0f} ms (ours {m['claim blob'] / m['claim ours']:.0f}x faster), "
              f"list {m['list blob'] * 1e3:.0f} ms (ours {m['list blob'] / m['list ours']:.0f}x faster)")


if __name__ == "__main__":
    asyncio.run(main())
