"""The sync store: ``eventhubs_checkpointstore_sqlite.SqliteCheckpointStore``."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from . import _common, _native
from ._common import Key, OwnershipLostError

try:
    from azure.eventhub import CheckpointStore as _Base  # azure-eventhub 5.x
except ImportError:  # no SDK (or 1.x): the same methods, without the base class
    _Base = object  # type: ignore[assignment,misc]

PathLike = Union[str, "os.PathLike[str]"]


class _Core:
    """The state both stores share: the native store and the fenced mode's memory."""

    def __init__(
        self, path: PathLike, durability: str, busy_timeout: float, fenced: bool
    ) -> None:
        self.native = _native.Store(os.fspath(path), durability, float(busy_timeout))
        self.fenced = bool(fenced)
        # Fenced mode: per partition, the (owner id, etag) this instance last won.
        self.won: Dict[Key, Tuple[str, str]] = {}
        self.won_lock = threading.Lock()

    def list_ownership(self, ns: str, hub: str, group: str) -> List[Dict[str, Any]]:
        rows = self.native.list_ownership(ns, hub, group)
        return _common.listed_ownership(ns, hub, group, rows)

    def claim_ownership(self, ownership_list: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
        requested = list(ownership_list)
        if not requested:
            return []
        answers = self.native.claim(_common.claim_requests(requested))
        result = _common.claimed(requested, answers)
        if self.fenced:
            with self.won_lock:
                for d in result:
                    key = _common.key_of(
                        d["fully_qualified_namespace"],
                        d["eventhub_name"],
                        d["consumer_group"],
                        d["partition_id"],
                    )
                    if d["owner_id"]:
                        self.won[key] = (d["owner_id"], d["etag"])
                    else:
                        self.won.pop(key, None)
        return result

    def fence_for(self, args: tuple) -> Tuple[Optional[str], Optional[str]]:
        """The (owner, etag) a checkpoint is fenced by: (None, None) unless fenced; raises
        OwnershipLostError if this instance holds no ownership of the partition."""
        if not self.fenced:
            return (None, None)
        with self.won_lock:
            held = self.won.get(_common.key_of(*args[:4]))
        if held is None:
            raise OwnershipLostError(
                f"partition {args[3]!r}: this store (fenced=True) holds no ownership of it"
            )
        return held

    def lost(self, args: tuple, held: Tuple[Optional[str], Optional[str]], e: Exception) -> Exception:
        """Forgets an ownership a fenced write found lost; the error to raise."""
        key = _common.key_of(*args[:4])
        with self.won_lock:
            if self.won.get(key) == held:
                del self.won[key]
        return OwnershipLostError(str(e))

    def update_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        args = _common.checkpoint_args(checkpoint)
        held = self.fence_for(args)
        try:
            self.native.update_checkpoint(*args, *held)
        except _native.OwnershipLost as e:
            raise self.lost(args, held, e) from None

    def list_checkpoints(self, ns: str, hub: str, group: str) -> List[Dict[str, Any]]:
        rows = self.native.list_checkpoints(ns, hub, group)
        return _common.listed_checkpoints(ns, hub, group, rows)


class SqliteCheckpointStore(_Base):  # type: ignore[misc,valid-type]
    """A checkpoint store in one SQLite file, for ``azure.eventhub.EventHubConsumerClient``.

    :param path: the database file (created if missing); ``":memory:"`` for a private
        in-memory store.
    :param durability: ``"full"`` (default: every write is on disk when the call returns) or
        ``"normal"`` (survives a process crash, may lose the last writes on power loss).
    :param busy_timeout: seconds to wait for another process's lock before
        :class:`StoreBusyError`.
    :param fenced: if true, ``update_checkpoint`` writes only while the ownership this
        instance last won for the partition is still the stored one, and raises
        ``azure.eventhub.exceptions.OwnershipLostError`` otherwise (the processor then closes
        the partition). Not in the SDK's Blob store; off by default.

    The same file serves many processes (Python and Rust) at once. Every SQLite call releases
    the GIL. After ``os.fork()`` an inherited store raises :class:`ForkedError`: open a new
    one in the child.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        durability: str = "full",
        busy_timeout: float = 5.0,
        fenced: bool = False,
    ) -> None:
        self._core = _Core(path, durability, busy_timeout, fenced)

    def __bool__(self) -> bool:  # the SDK tests `if checkpoint_store`
        return True

    def list_ownership(
        self,
        fully_qualified_namespace: str,
        eventhub_name: str,
        consumer_group: str,
        **kwargs: Any,
    ) -> List[Dict[str, Any]]:
        """The group's ownerships, in partition order (numeric ids by value)."""
        return self._core.list_ownership(fully_qualified_namespace, eventhub_name, consumer_group)

    def claim_ownership(
        self, ownership_list: Iterable[Dict[str, Any]], **kwargs: Any
    ) -> List[Dict[str, Any]]:
        """Claims each ownership on its own (no etag: create-only; an etag: only if it is still
        the stored one), in one transaction. Returns fresh dicts of the won claims in input
        order, with a new ``etag`` and ``last_modified_time``; lost claims are left out."""
        return self._core.claim_ownership(ownership_list)

    def update_checkpoint(self, checkpoint: Dict[str, Optional[Union[str, int]]], **kwargs: Any) -> None:
        """Writes the partition's position. Raises ``ValueError`` if it has neither an
        ``offset`` nor a ``sequence_number``."""
        self._core.update_checkpoint(checkpoint)

    def list_checkpoints(
        self,
        fully_qualified_namespace: str,
        eventhub_name: str,
        consumer_group: str,
        **kwargs: Any,
    ) -> List[Dict[str, Any]]:
        """The group's positions, in partition order."""
        return self._core.list_checkpoints(fully_qualified_namespace, eventhub_name, consumer_group)

    def commit_stats(self) -> Tuple[int, int]:
        """(checkpoint writes committed, transactions that committed them) since open: how
        well concurrent checkpoints shared transactions (group commit)."""
        return self._core.native.commit_stats()

    def close(self) -> None:
        """Closes the file; later calls raise :class:`StoreClosedError`. Idempotent."""
        self._core.native.close()

    def __enter__(self) -> "SqliteCheckpointStore":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
