"""The legacy face: EventProcessorHost's checkpoint and lease manager (azure-eventhub 1.x),
``eventhubs_checkpointstore_sqlite.eph.SqliteCheckpointLeaseManager``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
from typing import Any, Awaitable, Callable, Dict, List, Optional, TypeVar

from . import _native
from ._store import PathLike

try:  # azure-eventhub 1.x
    from azure.eventprocessorhost.abstract_checkpoint_manager import (
        AbstractCheckpointManager as _CheckpointBase,
    )
    from azure.eventprocessorhost.abstract_lease_manager import (
        AbstractLeaseManager as _LeaseBase,
    )
    from azure.eventprocessorhost.checkpoint import Checkpoint
    from azure.eventprocessorhost.lease import Lease as _Lease
except ImportError:  # no SDK (or 5.x): the same shapes without the base classes

    class _CheckpointBase:  # type: ignore[no-redef]
        pass

    class _LeaseBase:  # type: ignore[no-redef]
        def __init__(self, lease_renew_interval: float, lease_duration: float) -> None:
            self.lease_renew_interval = lease_renew_interval
            self.lease_duration = lease_duration

    class Checkpoint:  # type: ignore[no-redef]
        """A partition's position, as ``azure.eventprocessorhost.checkpoint.Checkpoint``."""

        def __init__(self, partition_id: str, offset: str = "-1", sequence_number: Any = "0"):
            self.partition_id = partition_id
            self.offset = offset
            self.sequence_number = sequence_number

    class _Lease:  # type: ignore[no-redef]
        def __init__(self) -> None:
            self.partition_id = None
            self.sequence_number = None
            self.owner = None
            self.token = None
            self.epoch = 0
            self.event_processor_context = None

        def with_partition_id(self, partition_id: str) -> None:
            self.partition_id = partition_id
            self.owner = None
            self.token = None
            self.epoch = 0
            self.event_processor_context = None

        def with_source(self, lease: Any) -> None:
            self.partition_id = lease.partition_id
            self.epoch = lease.epoch
            self.owner = lease.owner
            self.token = lease.token
            self.event_processor_context = lease.event_processor_context

        def increment_epoch(self) -> int:
            self.epoch += 1
            return self.epoch


T = TypeVar("T")

__all__ = ["SqliteCheckpointLeaseManager", "SqliteLease", "Checkpoint"]


class SqliteLease(_Lease):  # type: ignore[misc,valid-type]
    """A partition's lease (a subclass of ``azure.eventprocessorhost.lease.Lease`` when 1.x is
    installed): ``partition_id``, ``owner``, ``token``, ``epoch``,
    ``event_processor_context``, plus ``etag`` and ``last_modified_time`` (epoch seconds) of
    the stored row. ``offset`` and ``sequence_number`` are the partition's position when the
    lease was read."""

    def __init__(self, manager: Optional["SqliteCheckpointLeaseManager"] = None) -> None:
        super().__init__()
        self.offset: Optional[str] = None
        self.etag: Optional[str] = None
        self.last_modified_time: Optional[float] = None
        self._manager = manager

    @classmethod
    def _from_native(cls, manager: "SqliteCheckpointLeaseManager", t: tuple) -> "SqliteLease":
        lease = cls(manager)
        lease._set(t)
        return lease

    def _set(self, t: tuple) -> None:
        (
            self.partition_id,
            self.owner,
            self.token,
            self.etag,
            self.epoch,
            self.event_processor_context,
            self.last_modified_time,
        ) = t

    def _native(self) -> tuple:
        return (
            str(self.partition_id),
            self.owner or None,
            self.token or None,
            self.etag or None,
            int(self.epoch or 0),
            self.event_processor_context,
            self.last_modified_time,
        )

    async def is_expired(self) -> bool:
        """True when nobody holds this copy of the lease now: released, or not renewed for the
        lease duration (by the store's clock)."""
        if self._manager is None:
            return True
        return self._manager._native_manager().is_expired(self._native())

    def serializable(self) -> Dict[str, Any]:
        """The lease as a dict with the keys of the 1.x lease blob (plus ``etag``)."""
        return {
            "partition_id": self.partition_id,
            "sequence_number": self.sequence_number,
            "owner": self.owner,
            "token": self.token,
            "epoch": self.epoch,
            "event_processor_context": self.event_processor_context,
            "offset": self.offset,
            "etag": self.etag,
        }


class SqliteCheckpointLeaseManager(_CheckpointBase, _LeaseBase):  # type: ignore[misc,valid-type]
    """EventProcessorHost's checkpoint and lease manager on one SQLite file: pass it as
    ``storage_manager`` to ``azure.eventprocessorhost.EventProcessorHost`` where
    ``AzureStorageCheckpointLeaseManager`` goes today.

    :param path: the database file (created if missing), shareable with 5.x processors and
        Rust processes.
    :param lease_duration: seconds a lease lasts after it was last written (default 30).
    :param lease_renew_interval: seconds between the host's renewals (default 10); shorter
        than ``lease_duration``.
    :param durability: ``"full"`` or ``"normal"``, as for the modern store.
    :param busy_timeout: seconds to wait for another process's lock.
    :param host_name, fully_qualified_namespace, eventhub_name, consumer_group: only for use
        without a host: ``initialize(host)`` takes them from the host instead.

    A lease's token stays the same from acquire to release, as an Azure blob lease id, so the
    host's pump checkpoints with its copy while the loop renews another. A lost lease is
    ``False`` (never an exception); a host that lost its lease never writes.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        lease_duration: float = 30,
        lease_renew_interval: float = 10,
        durability: str = "full",
        busy_timeout: float = 5.0,
        host_name: Optional[str] = None,
        fully_qualified_namespace: Optional[str] = None,
        eventhub_name: Optional[str] = None,
        consumer_group: Optional[str] = None,
    ) -> None:
        _CheckpointBase.__init__(self)
        _LeaseBase.__init__(self, lease_renew_interval, lease_duration)
        if not float(lease_renew_interval) < float(lease_duration):
            raise ValueError(
                f"lease_renew_interval ({lease_renew_interval}) must be shorter than "
                f"lease_duration ({lease_duration})"
            )
        self._store = _native.Store(os.fspath(path), durability, float(busy_timeout))
        self._manager: Optional[_native.LeaseManager] = None
        self.host: Any = None
        # The manager's own threads, as the Azure manager has its executor.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="ehcs-eph"
        )
        if host_name is not None:
            if not (fully_qualified_namespace and eventhub_name and consumer_group):
                raise ValueError(
                    "host_name needs fully_qualified_namespace, eventhub_name and consumer_group"
                )
            self._bind(fully_qualified_namespace, eventhub_name, consumer_group, host_name)

    def __bool__(self) -> bool:
        return True

    def _bind(self, ns: str, hub: str, group: str, host_name: str) -> None:
        self._manager = _native.LeaseManager(
            self._store,
            ns,
            hub,
            group,
            host_name,
            float(self.lease_duration),
            float(self.lease_renew_interval),
        )

    def initialize(self, host: Any) -> None:
        """Called by the ``EventProcessorHost`` constructor: binds the manager to the host's
        name and its event hub (namespace ``sb_name.namespace_suffix``, hub, consumer
        group)."""
        self.host = host
        config = host.eh_config
        ns = f"{config.sb_name}.{config.namespace_suffix}"
        self._bind(ns, config.eh_name, config.consumer_group, host.host_name)

    def _native_manager(self) -> _native.LeaseManager:
        if self._manager is None:
            raise RuntimeError(
                "the manager is not bound to a host: EventProcessorHost calls initialize(host); "
                "without a host pass host_name and the three names"
            )
        return self._manager

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _lease(self, t: tuple) -> SqliteLease:
        return SqliteLease._from_native(self, t)

    # -- AbstractCheckpointManager ------------------------------------------------------------

    async def create_checkpoint_store_if_not_exists_async(self) -> bool:
        """The tables exist once the file is open: True if the store answers."""
        await self._run(self._native_manager().ping)
        return True

    async def get_checkpoint_async(self, partition_id: str) -> Optional[Checkpoint]:
        """The partition's position, or None if it has none yet (also while it is still at
        StartOfStream, so the host's ``initial_offset_provider`` applies, as with the Azure
        manager)."""
        found = await self._run(self._native_manager().get_checkpoint, partition_id)
        if found is None:
            return None
        offset, seq = found
        if offset == "-1":
            return None
        return Checkpoint(partition_id, offset, int(seq))

    async def create_checkpoint_if_not_exists_async(self, partition_id: str) -> Checkpoint:
        offset, seq = await self._run(
            self._native_manager().create_checkpoint_if_not_exists, partition_id
        )
        return Checkpoint(partition_id, offset, int(seq))

    async def update_checkpoint_async(self, lease: Any, checkpoint: Any) -> bool:
        """Writes the position while ``lease`` is held (by this host, in its tenure), with the
        lease's ``event_processor_context``. True on success, False if the lease was lost
        (nothing written)."""
        native = _native_lease(lease)
        return await self._run(
            self._native_manager().update_checkpoint,
            native,
            str(checkpoint.offset),
            int(checkpoint.sequence_number),
        )

    async def delete_checkpoint_async(self, partition_id: str) -> None:
        """Deletes the partition's position (a missing one is fine); the lease stays."""
        await self._run(self._native_manager().delete_checkpoint, partition_id)

    # -- AbstractLeaseManager -----------------------------------------------------------------

    async def create_lease_store_if_not_exists_async(self) -> bool:
        await self._run(self._native_manager().ping)
        return True

    async def delete_lease_store_async(self) -> bool:
        """Deletes every lease of the group (checkpoints stay). For tests."""
        await self._run(self._native_manager().delete_lease_store)
        return True

    async def get_lease_async(self, partition_id: str) -> Optional[SqliteLease]:
        found = await self._run(self._native_manager().get_lease, partition_id)
        return None if found is None else self._lease(found)

    async def get_all_leases(self) -> List[Awaitable[Optional[SqliteLease]]]:
        """Every partition's lease, read in one query, as a list of awaitables (the host awaits
        the call, then each element). Partitions without a lease get one created."""
        manager = self._native_manager()
        leases = {t[0]: t for t in await self._run(manager.get_all_leases)}
        ids = await self.host.partition_manager.get_partition_ids_async() if self.host else []
        out: List[Awaitable[Optional[SqliteLease]]] = []
        loop = asyncio.get_running_loop()
        for pid in ids or list(leases):
            if pid in leases:
                future: asyncio.Future = loop.create_future()
                future.set_result(self._lease(leases[pid]))
                out.append(future)
            else:
                out.append(self.create_lease_if_not_exists_async(pid))
        return out

    async def create_lease_if_not_exists_async(self, partition_id: str) -> SqliteLease:
        t = await self._run(self._native_manager().create_lease_if_not_exists, partition_id)
        return self._lease(t)

    async def delete_lease_async(self, lease: Any) -> bool:
        return await self._run(self._native_manager().delete_lease, _native_lease(lease))

    async def acquire_lease_async(self, lease: Any) -> bool:
        """Takes the lease for this host (stealing allowed) if nobody wrote it since it was
        read; updates ``lease`` in place. False if someone did."""
        return await self._held(self._native_manager().acquire, lease)

    async def renew_lease_async(self, lease: Any) -> bool:
        return await self._held(self._native_manager().renew, lease)

    async def release_lease_async(self, lease: Any) -> bool:
        return await self._held(self._native_manager().release, lease)

    async def update_lease_async(self, lease: Any) -> bool:
        return await self._held(self._native_manager().update, lease)

    async def _held(self, fn: Callable[[tuple], Optional[tuple]], lease: Any) -> bool:
        after = await self._run(fn, _native_lease(lease))
        if after is None:
            return False
        _update_in_place(lease, after)
        return True

    def close(self) -> None:
        """Closes the file; later calls raise. Idempotent."""
        if self._manager is not None:
            self._manager.close()
        self._store.close()
        self._executor.shutdown(wait=False)


def _native_lease(lease: Any) -> tuple:
    if isinstance(lease, SqliteLease):
        return lease._native()
    # A plain Lease (say, built by the caller): no etag or time of ours.
    return (
        str(lease.partition_id),
        getattr(lease, "owner", None) or None,
        getattr(lease, "token", None) or None,
        getattr(lease, "etag", None) or None,
        int(getattr(lease, "epoch", 0) or 0),
        getattr(lease, "event_processor_context", None),
        getattr(lease, "last_modified_time", None),
    )


def _update_in_place(lease: Any, t: tuple) -> None:
    if isinstance(lease, SqliteLease):
        lease._set(t)
        return
    (
        lease.partition_id,
        lease.owner,
        lease.token,
        etag,
        lease.epoch,
        lease.event_processor_context,
        modified,
    ) = t
    lease.etag = etag
    lease.last_modified_time = modified
