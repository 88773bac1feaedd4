"""The real azure-eventhub 1.3.3 EventProcessorHost loop (its PartitionManager, PartitionPump and
PartitionContext) on this package's SqliteCheckpointLeaseManager, with fake pumps instead of an
Event Hub (research python-binding.md §2.3). Runs in a venv with azure-eventhub 1.x (.ci/python.sh)."""

import asyncio
import collections
import os

import pytest

import azure.eventprocessorhost.partition_manager as partition_manager
from azure.eventprocessorhost import (
    AbstractEventProcessor,
    EPHOptions,
    EventHubConfig,
    EventProcessorHost,
)
from azure.eventprocessorhost.partition_pump import PartitionPump

from eventhubs_checkpointstore_sqlite import SqliteCheckpointStore
from eventhubs_checkpointstore_sqlite.eph import SqliteCheckpointLeaseManager

PARTITIONS = ["0", "1", "2", "3"]
NS = "ns.servicebus.windows.net"  # EventHubConfig("ns", ...) with the default suffix


class Log:
    """What every pump and processor saw, in the order the one event loop saw it."""

    def __init__(self):
        self.checkpoints = []  # (host, partition, sequence number) acknowledged
        self.errors = []  # (host, partition, message)
        self.first_seen = {}  # (host, partition, pump number) -> first sequence number processed


LOG = Log()


class FakeOffset:
    def __init__(self, value):
        self.value = value


class FakeEvent:
    def __init__(self, seq):
        self.offset = FakeOffset(str(seq * 100))
        self.sequence_number = seq


class FakePump(PartitionPump):
    """A pump that 'receives' one event every few ms from where the partition's checkpoint
    says, and checkpoints each one, through the real PartitionPump/PartitionContext code."""

    pumps = 0
    interval = 0.005

    async def on_open_async(self):
        self.set_pump_status("Running")
        FakePump.pumps += 1
        self.number = FakePump.pumps
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self):
        ctx = self.partition_context
        await ctx.get_initial_offset_async()
        seq = ctx.sequence_number if ctx.sequence_number is not None else -1
        seq = max(int(seq), 0)
        key = (self.host.host_name, ctx.partition_id, self.number)
        while self.pump_status == "Running":
            seq += 1
            LOG.first_seen.setdefault(key, seq)
            await self.process_events_async([FakeEvent(seq)])
            await asyncio.sleep(self.interval)

    async def on_closing_async(self, reason):
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass


class Processor(AbstractEventProcessor):
    def __init__(self, params=None):
        super().__init__(params)

    async def open_async(self, context):
        pass

    async def close_async(self, context, reason):
        pass

    async def process_events_async(self, context, messages):
        await context.checkpoint_async()
        LOG.checkpoints.append((context.host.host_name, context.partition_id, context.sequence_number))

    async def process_error_async(self, context, error):
        LOG.errors.append((context.host.host_name, context.partition_id, str(error)))


@pytest.fixture(autouse=True)
def fake_pumps(monkeypatch):
    monkeypatch.setattr(partition_manager, "EventHubPartitionPump", FakePump)
    global LOG
    LOG = Log()
    FakePump.pumps = 0
    yield


async def start_host(db, renew=1, duration=3):
    manager = SqliteCheckpointLeaseManager(db, lease_renew_interval=renew, lease_duration=duration)
    options = EPHOptions()
    options.release_partition_on_checkpoint_failure = True
    host = EventProcessorHost(
        Processor,
        EventHubConfig("ns", "hub", "policy", "key"),
        manager,
        eph_options=options,
        loop=asyncio.get_running_loop(),
    )
    host.partition_manager.partition_ids = list(PARTITIONS)
    await host.open_async()
    return host, manager


def owners(db):
    store = SqliteCheckpointStore(db)
    try:
        return {o["partition_id"]: o["owner_id"] for o in store.list_ownership(NS, "hub", "$default")}
    finally:
        store.close()


def test_one_host_checkpoints_thousands_of_times_without_a_failure(tmp_path):
    db = os.path.join(tmp_path, "eph.db")

    async def body():
        host, _ = await start_host(db)
        await asyncio.sleep(8)
        await host.close_async()
        return host.host_name

    name = asyncio.run(body())
    print(f"one host: {len(LOG.checkpoints)} checkpoints, {len(LOG.errors)} errors")
    assert len(LOG.checkpoints) >= 2000, len(LOG.checkpoints)
    failures = [e for e in LOG.errors if "failed to persist checkpoint" in e[2]]
    assert failures == [], f"{len(failures)} spurious checkpoint failures: {failures[:5]}"
    assert LOG.errors == []
    assert {h for h, _, _ in LOG.checkpoints} == {name}
    assert {p for _, p, _ in LOG.checkpoints} == set(PARTITIONS)


def test_two_hosts_balance_resume_from_the_stored_position_and_fence_stale_pumps(tmp_path):
    db = os.path.join(tmp_path, "eph.db")

    async def body():
        a, _ = await start_host(db)
        await asyncio.sleep(4)
        assert set(owners(db).values()) == {a.host_name}, "host a alone takes every partition"
        before_b = {p: max(s for h, q, s in LOG.checkpoints if q == p) for p in PARTITIONS}
        b, _ = await start_host(db)
        for _ in range(30):
            await asyncio.sleep(1)
            counts = collections.Counter(owners(db).values())
            if counts == collections.Counter({a.host_name: 2, b.host_name: 2}):
                break
        await asyncio.sleep(2)  # let the stale pumps meet the fence
        counts = collections.Counter(owners(db).values())
        await b.close_async()
        await a.close_async()
        return a.host_name, b.host_name, counts, before_b

    a, b, counts, before_b = asyncio.run(body())
    print(f"two hosts: {len(LOG.checkpoints)} checkpoints, {len(LOG.errors)} refused, owners {dict(counts)}")
    assert counts == collections.Counter({a: 2, b: 2}), counts

    # The partitions b took over were resumed from the stored position, not from the start.
    taken = {p for (h, p, _n) in LOG.first_seen if h == b}
    assert len(taken) == 2, taken
    for (h, p, _n), first in LOG.first_seen.items():
        if h == b:
            assert first > before_b[p], f"partition {p}: b started at {first}, stored was {before_b[p]}"

    # Acknowledged checkpoints never went backwards on any partition, across owners.
    last = {}
    for h, p, seq in LOG.checkpoints:
        assert seq >= last.get(p, 0), f"partition {p}: {h} checkpointed {seq} after {last[p]}"
        last[p] = seq

    # Every refused checkpoint was a's stale pump on a partition b had taken: fenced.
    for h, p, msg in LOG.errors:
        assert h == a and p in taken, (h, p, msg)
        assert msg in ("failed to persist checkpoint", "offset/sequenceNumber invalid"), msg
    # and no checkpoint of a landed on a taken partition after b's first one there.
    for p in taken:
        seq_b = [i for i, (h, q, _) in enumerate(LOG.checkpoints) if q == p and h == b]
        late_a = [i for i, (h, q, _) in enumerate(LOG.checkpoints) if q == p and h == a and i > seq_b[0]]
        assert late_a == [], f"partition {p}: a checkpointed after b took it over"
