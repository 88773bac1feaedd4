"""The legacy face (azure-eventhub 1.x EventProcessorHost) driven directly, with or without the
SDK installed: the contract research §2 lists (in place updates, True/False, tokens that last a
tenure, None at StartOfStream, int sequence numbers, awaitables from get_all_leases)."""

import asyncio

import pytest

from eventhubs_checkpointstore_sqlite import SqliteCheckpointStore
from eventhubs_checkpointstore_sqlite.eph import Checkpoint, SqliteCheckpointLeaseManager, SqliteLease
from conftest import GROUP, HUB, NS, checkpoint

try:
    import azure.eventprocessorhost  # noqa: F401

    HAVE_EPH = True
except ImportError:
    HAVE_EPH = False


def manager(db, host, **kw):
    return SqliteCheckpointLeaseManager(
        db,
        host_name=host,
        fully_qualified_namespace=NS,
        eventhub_name=HUB,
        consumer_group=GROUP,
        **kw,
    )


def run(coro):
    return asyncio.run(coro)


def test_acquire_updates_the_lease_in_place_and_a_lost_lease_is_false(db):
    async def body():
        a, b = manager(db, "host-a"), manager(db, "host-b")
        lease = await a.create_lease_if_not_exists_async("0")
        assert (lease.owner, lease.token, lease.epoch) == (None, None, 0)
        assert await lease.is_expired()
        assert await a.acquire_lease_async(lease) is True
        assert lease.owner == "host-a" and lease.token and lease.epoch == 1
        assert not await lease.is_expired()
        # b steals from the copy it read; a's copy is lost: False, never an exception.
        theirs = await b.get_lease_async("0")
        assert await b.acquire_lease_async(theirs) is True
        assert theirs.epoch == 2 and theirs.owner == "host-b"
        assert await a.renew_lease_async(lease) is False
        assert await a.update_checkpoint_async(lease, Checkpoint("0", "10", 1)) is False
        assert await a.release_lease_async(lease) is False
        # A stale acquire (the copy b read before its own write) is False too.
        stale = SqliteLease(a)
        stale._set(theirs._native())
        await b.renew_lease_async(theirs)
        assert await a.acquire_lease_async(stale) is False

    run(body())


def test_the_token_lasts_from_acquire_to_release_and_old_copies_checkpoint(db):
    async def body():
        m = manager(db, "host-a")
        lease = await m.create_lease_if_not_exists_async("0")
        await m.acquire_lease_async(lease)
        pumps = SqliteLease(m)
        pumps._set(lease._native())
        for i in range(1, 6):
            assert await m.renew_lease_async(lease) is True
            assert lease.token == pumps.token and lease.etag != pumps.etag
            assert await m.update_checkpoint_async(pumps, Checkpoint("0", str(i * 10), i)) is True
        assert await m.release_lease_async(lease) is True
        assert lease.owner is None and lease.token is None
        assert await m.update_checkpoint_async(pumps, Checkpoint("0", "99", 99)) is False
        cp = await m.get_checkpoint_async("0")
        assert (cp.offset, cp.sequence_number) == ("50", 5)
        assert isinstance(cp.sequence_number, int)

    run(body())


def test_get_checkpoint_is_none_at_start_of_stream(db):
    async def body():
        m = manager(db, "host-a")
        assert await m.get_checkpoint_async("0") is None
        created = await m.create_checkpoint_if_not_exists_async("0")
        assert (created.offset, created.sequence_number) == ("-1", 0)
        # Still at StartOfStream: None, so the host's initial_offset_provider applies.
        assert await m.get_checkpoint_async("0") is None
        assert await m.create_checkpoint_store_if_not_exists_async() is True
        assert await m.create_lease_store_if_not_exists_async() is True

    run(body())


def test_get_all_leases_is_awaitable_and_returns_awaitables(db):
    async def body():
        m = manager(db, "host-a")
        for p in ["2", "10", "1"]:
            await m.create_lease_if_not_exists_async(p)
        got = await m.get_all_leases()
        leases = [await g for g in got]
        assert [l.partition_id for l in leases] == ["1", "2", "10"]
        assert leases[0].serializable()["partition_id"] == "1"
        assert set(leases[0].serializable()) >= {
            "partition_id", "owner", "token", "epoch", "event_processor_context", "offset",
            "sequence_number",
        }

    run(body())


def test_legacy_and_modern_share_rows_and_positions(db):
    async def body():
        m = manager(db, "host-a")
        modern = SqliteCheckpointStore(db)
        lease = await m.create_lease_if_not_exists_async("0")
        await m.acquire_lease_async(lease)
        assert await m.update_checkpoint_async(lease, Checkpoint("0", "8591964920", 960180))
        (c,) = modern.list_checkpoints(NS.upper(), HUB, GROUP)
        assert (c["offset"], c["sequence_number"]) == ("8591964920", 960180)
        (o,) = modern.list_ownership(NS, HUB, GROUP)
        assert o["owner_id"] == "host-a" and o["etag"] == lease.etag
        # A modern processor steals with the etag it listed: the legacy host is fenced out.
        (won,) = modern.claim_ownership([dict(o, owner_id="modern")])
        assert await m.update_checkpoint_async(lease, Checkpoint("0", "1", 1)) is False
        assert await m.renew_lease_async(lease) is False
        modern.update_checkpoint(checkpoint("0", "9000000000", 960200))
        cp = await m.get_checkpoint_async("0")
        assert (cp.offset, cp.sequence_number) == ("9000000000", 960200)

    run(body())


def test_bad_arguments_are_value_errors(db):
    with pytest.raises(ValueError):
        manager(db, "host-a", lease_duration=10, lease_renew_interval=10)
    with pytest.raises(ValueError):
        SqliteCheckpointLeaseManager(db, host_name="h")


def test_subclasses_the_sdk_bases_when_1x_is_installed(db):
    if not HAVE_EPH:
        pytest.skip("azure-eventhub 1.x is not installed here")
    from azure.eventprocessorhost.abstract_checkpoint_manager import AbstractCheckpointManager
    from azure.eventprocessorhost.abstract_lease_manager import AbstractLeaseManager
    from azure.eventprocessorhost.lease import Lease

    m = manager(db, "h")
    assert isinstance(m, AbstractCheckpointManager) and isinstance(m, AbstractLeaseManager)
    assert issubclass(SqliteLease, Lease)
    assert m.lease_renew_interval == 10 and m.lease_duration == 30
