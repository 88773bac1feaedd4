"""The official Python Blob checkpoint store (azure-eventhub-checkpointstoreblob-aio 1.2.0) as the
other side of `eh-checkpoints blob` (issue 15); tests/it/blob_move.rs runs it from the venv that
.ci/blob.sh makes.

    python store.py list CONTAINER NS HUB GROUP            prints what the store lists (JSON)
    python store.py write CONTAINER NS HUB GROUP N OWNER   checkpoints and claims 0..N, then lists
    python store.py upload CONTAINER DIR PREFIX            uploads each file of DIR as PREFIX+name
                                                           (EventProcessorHost lease fixtures)

The connection string comes from AZURE_STORAGE_CONNECTION_STRING. The listing is one JSON object,
{"checkpoints":[{"partition_id","offset","sequence_number"}],"ownerships":[{"partition_id",
"owner_id","etag"}]}, each sorted by partition id as a string.
"""
import asyncio
import json
import os
import sys

from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
# The store vendors its own copy of azure-storage-blob; the upload uses that one.
from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob.aio import (
    ContainerClient,
)


async def listing(store, ns, hub, group):
    checkpoints = await store.list_checkpoints(ns, hub, group)
    ownerships = await store.list_ownership(ns, hub, group)
    return {
        "checkpoints": sorted(
            (
                {
                    "partition_id": c["partition_id"],
                    "offset": c["offset"],
                    "sequence_number": c["sequence_number"],
                }
                for c in checkpoints
            ),
            key=lambda c: c["partition_id"],
        ),
        "ownerships": sorted(
            (
                {
                    "partition_id": o["partition_id"],
                    "owner_id": o["owner_id"] or None,
                    "etag": o["etag"].strip('"'),
                }
                for o in ownerships
            ),
            key=lambda o: o["partition_id"],
        ),
    }


async def upload(container, directory, prefix):
    client = ContainerClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"], container
    )
    async with client:
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), "rb") as f:
                await client.upload_blob(prefix + name, f.read())


async def main(argv):
    if argv[1] == "upload":
        await upload(*argv[2:5])
        return
    mode, container, ns, hub, group = argv[1:6]
    store = BlobCheckpointStore.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"], container
    )
    async with store:
        if mode == "write":
            n, owner = int(argv[6]), argv[7]
            for p in range(n):
                await store.update_checkpoint(
                    {
                        "fully_qualified_namespace": ns,
                        "eventhub_name": hub,
                        "consumer_group": group,
                        "partition_id": str(p),
                        "offset": str(9000 + p * 7),
                        "sequence_number": 300 + p,
                    }
                )
            claimed = await store.claim_ownership(
                [
                    {
                        "fully_qualified_namespace": ns,
                        "eventhub_name": hub,
                        "consumer_group": group,
                        "partition_id": str(p),
                        "owner_id": owner,
                    }
                    for p in range(n)
                ]
            )
            if len(claimed) != n:
                raise SystemExit(f"claimed {len(claimed)} of {n} partitions")
        elif mode != "list":
            raise SystemExit(f"unknown mode {mode!r}")
        print(json.dumps(await listing(store, ns, hub, group)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
