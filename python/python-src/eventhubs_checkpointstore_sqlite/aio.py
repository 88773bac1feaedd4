"""The asyncio store: ``eventhubs_checkpointstore_sqlite.aio.SqliteCheckpointStore``, for
``azure.eventhub.aio.EventHubConsumerClient``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple, TypeVar, Union

from ._common import (  # noqa: F401 (re-exported for convenience)
    ForkedError,
    NotAStoreError,
    OwnershipLostError,
    SchemaTooNewError,
    StoreBusyError,
    StoreClosedError,
    StoreError,
)
from . import _common, _native
from ._store import PathLike, _Core

try:
    from azure.eventhub.aio import CheckpointStore as _Base  # azure-eventhub 5.x
except ImportError:
    _Base = object  # type: ignore[assignment,misc]

T = TypeVar("T")

__all__ = ["SqliteCheckpointStore"]


class SqliteCheckpointStore(_Base):  # type: ignore[misc,valid-type]
    """The asyncio form of :class:`eventhubs_checkpointstore_sqlite.SqliteCheckpointStore`:
    the same arguments and behaviour, every method a coroutine.

    Each call runs on a thread of the store's own pool (``max_workers`` threads, default 64)
    with the GIL released, so concurrent checkpoints from many tasks share one transaction and
    one fsync (group commit). Cancelling an awaiting task does not cancel its write: it may
    still commit.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        durability: str = "full",
        busy_timeout: float = 5.0,
        fenced: bool = False,
        max_workers: int = 64,
    ) -> None:
        self._core = _Core(path, durability, busy_timeout, fenced)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="ehcs-sqlite"
        )
        self._closed = False
        # Checkpoints waiting for the next batch, and the loops whose flush is running.
        self._pending: Dict[asyncio.AbstractEventLoop, List[tuple]] = {}
        self._flushing: Set[asyncio.AbstractEventLoop] = set()

    def __bool__(self) -> bool:  # the SDK tests `if checkpoint_store`
        return True

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def list_ownership(
        self,
        fully_qualified_namespace: str,
        eventhub_name: str,
        consumer_group: str,
        **kwargs: Any,
    ) -> List[Dict[str, Any]]:
        """The group's ownerships, in partition order (numeric ids by value)."""
        return await self._run(
            self._core.list_ownership, fully_qualified_namespace, eventhub_name, consumer_group
        )

    async def claim_ownership(
        self, ownership_list: Iterable[Dict[str, Any]], **kwargs: Any
    ) -> List[Dict[str, Any]]:
        """As the sync store's ``claim_ownership``."""
        # Materialise in the caller's thread: the caller may mutate its dicts afterwards.
        return await self._run(self._core.claim_ownership, [dict(o) for o in ownership_list])

    async def update_checkpoint(
        self, checkpoint: Dict[str, Optional[Union[str, int]]], **kwargs: Any
    ) -> None:
        """As the sync store's ``update_checkpoint``. Checkpoints of concurrent tasks are
        written together (one call of the native store per batch, all joining its group
        commit), so they share transactions and fsyncs."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        args = _common.checkpoint_args(checkpoint)
        held = self._core.fence_for(args)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = self._pending.setdefault(loop, [])
        pending.append((args + held, held, future))
        if len(pending) == 1 and loop not in self._flushing:
            self._flushing.add(loop)
            loop.create_task(self._flush(loop))
        await future

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Writes what the tasks of `loop` queued, batch after batch, until nothing is left."""
        try:
            while self._pending.get(loop):
                batch = self._pending.pop(loop)
                try:
                    answers = await self._run(self._core.native.update_many, [b[0] for b in batch])
                except BaseException as e:  # noqa: BLE001 (the store failed as a whole)
                    answers = [e] * len(batch)
                for (args, held, future), err in zip(batch, answers):
                    if future.done():  # cancelled: the write may still have landed
                        continue
                    if err is None:
                        future.set_result(None)
                    elif isinstance(err, _native.OwnershipLost):
                        future.set_exception(self._core.lost(args, held, err))
                    else:
                        future.set_exception(err)
        finally:
            self._flushing.discard(loop)
            if not self._pending.get(loop):
                self._pending.pop(loop, None)

    async def list_checkpoints(
        self,
        fully_qualified_namespace: str,
        eventhub_name: str,
        consumer_group: str,
        **kwargs: Any,
    ) -> List[Dict[str, Any]]:
        """The group's positions, in partition order."""
        return await self._run(
            self._core.list_checkpoints, fully_qualified_namespace, eventhub_name, consumer_group
        )

    def commit_stats(self) -> Tuple[int, int]:
        """(checkpoint writes committed, transactions that committed them) since open: how
        well concurrent checkpoints shared transactions (group commit)."""
        return self._core.native.commit_stats()

    async def close(self) -> None:
        """Closes the file and the thread pool. Idempotent."""
        if self._closed:
            return
        await self._run(self._core.native.close)
        self._closed = True
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> "SqliteCheckpointStore":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
