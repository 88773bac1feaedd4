"""An embedded, single-file SQLite checkpoint store for Azure Event Hubs processors.

Three faces over one file (shared with the Rust crate ``eventhubs-checkpointstore-sqlite``):

- :class:`SqliteCheckpointStore`: ``azure.eventhub.CheckpointStore`` (azure-eventhub 5.x, sync)
- :class:`eventhubs_checkpointstore_sqlite.aio.SqliteCheckpointStore`: the asyncio one
- :class:`eventhubs_checkpointstore_sqlite.eph.SqliteCheckpointLeaseManager`: EventProcessorHost's
  checkpoint and lease manager (azure-eventhub 1.x)
"""

from ._common import (
    ForkedError,
    NotAStoreError,
    OwnershipLostError,
    SchemaTooNewError,
    StoreBusyError,
    StoreClosedError,
    StoreError,
    fold,
)
from ._store import SqliteCheckpointStore

__version__ = "0.1.0"

__all__ = [
    "SqliteCheckpointStore",
    "OwnershipLostError",
    "StoreError",
    "NotAStoreError",
    "SchemaTooNewError",
    "StoreBusyError",
    "StoreClosedError",
    "ForkedError",
    "fold",
]
