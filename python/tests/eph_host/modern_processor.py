"""A real azure-eventhub 5.x EventProcessor (aio) on this package's fenced aio store, with a mock
Event Hub client as in the SDK's own processor tests: run by test_mixed_fleet.py in the 5.x venv,
beside a 1.x EventProcessorHost on the same file, and by test_rust_fleet.py beside Rust processes.
Prints one JSON line per claim won, partition started, and checkpoint written or refused.
Usage: python modern_processor.py DB SECONDS [NAMESPACE HUB GROUP PARTITIONS]"""

import asyncio
import json
import sys
import time

from azure.eventhub import EventData
from azure.eventhub._client_base import _Address
from azure.eventhub.aio._eventprocessor.event_processor import EventProcessor
from azure.eventhub.exceptions import OwnershipLostError

from eventhubs_checkpointstore_sqlite.aio import SqliteCheckpointStore

NS, HUB, GROUP, PARTITIONS = "ns.servicebus.windows.net", "hub", "$default", 4


def say(**kw):
    print(json.dumps(dict(kw, t=time.time())), flush=True)


class LoggingStore(SqliteCheckpointStore):
    """The store, saying which claims it won: the etag claimed from, the new one, the owner."""

    async def claim_ownership(self, ownership_list, **kwargs):
        old = {o["partition_id"]: o.get("etag") for o in ownership_list}
        won = await super().claim_ownership(ownership_list, **kwargs)
        for w in won:
            say(claim=w["partition_id"], old=old[w["partition_id"]], new=w["etag"], owner=w["owner_id"])
        return won


class Client:
    def __init__(self):
        self.eventhub_name = HUB
        self._address = _Address(hostname=NS, path=HUB)

    def _create_consumer(self, consumer_group, partition_id, event_position, on_event_received, **kw):
        return Consumer(on_event_received)

    async def get_partition_ids(self):
        return [str(p) for p in range(PARTITIONS)]

    async def close(self):
        pass


class Consumer:
    def __init__(self, on_event_received):
        self.on_event_received = on_event_received

    async def receive(self, *a, **kw):
        await asyncio.sleep(0.005)
        await self.on_event_received(EventData("mock"))

    async def close(self):
        pass


async def main(db, seconds):
    store = LoggingStore(db, fenced=True)
    seqs = {}

    async def on_init(ctx):
        listed = await store.list_checkpoints(NS, HUB, GROUP)
        stored = {c["partition_id"]: c["sequence_number"] or 0 for c in listed}
        seqs[ctx.partition_id] = stored.get(ctx.partition_id, 0)
        say(start=ctx.partition_id, stored=seqs[ctx.partition_id])

    async def on_event(ctx, event):
        pid = ctx.partition_id
        seqs[pid] += 1
        try:
            await store.update_checkpoint(
                {
                    "fully_qualified_namespace": NS,
                    "eventhub_name": HUB,
                    "consumer_group": GROUP,
                    "partition_id": pid,
                    "offset": str(seqs[pid] * 100),
                    "sequence_number": seqs[pid],
                }
            )
            say(checkpoint=pid, seq=seqs[pid])
        except OwnershipLostError:
            say(refused=pid, seq=seqs[pid])
            raise

    async def on_error(ctx, err):
        if not isinstance(err, OwnershipLostError):
            say(error=repr(err))

    processor = EventProcessor(
        Client(),
        GROUP,
        on_event,
        checkpoint_store=store,
        partition_initialize_handler=on_init,
        error_handler=on_error,
        load_balancing_interval=0.5,
        partition_ownership_expiration_interval=3,
    )
    task = asyncio.ensure_future(processor.start())
    await asyncio.sleep(seconds)
    await processor.stop()
    await task
    await store.close()
    say(done=processor._id)


if __name__ == "__main__":
    if len(sys.argv) > 3:
        NS, HUB, GROUP, PARTITIONS = *sys.argv[3:6], int(sys.argv[6])
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
