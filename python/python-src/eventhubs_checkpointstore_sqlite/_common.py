"""Shared pieces of the three faces: the native module, errors, name folding, and the
conversion between the SDK's dicts and the native module's tuples."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import _native

try:  # azure-eventhub 5.x: raise its own error, which the processor handles.
    from azure.eventhub.exceptions import OwnershipLostError as _SdkOwnershipLostError
except ImportError:  # no SDK, or 1.x (which has no such error)
    _SdkOwnershipLostError = None  # type: ignore[assignment,misc]

if _SdkOwnershipLostError is not None:
    OwnershipLostError = _SdkOwnershipLostError
else:

    class OwnershipLostError(Exception):  # type: ignore[no-redef]
        """Raised by a fenced ``update_checkpoint`` once another owner holds the partition.

        With azure-eventhub 5.x installed this name is
        ``azure.eventhub.exceptions.OwnershipLostError`` itself."""


StoreError = _native.StoreError
NotAStoreError = _native.NotAStoreError
SchemaTooNewError = _native.SchemaTooNewError
StoreBusyError = _native.StoreBusyError
StoreClosedError = _native.StoreClosedError
ForkedError = _native.ForkedError

# Names match case-insensitively in ASCII only, exactly as the Rust store folds them, so that a
# Python and a Rust processor share one consumer group.
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def fold(name: str) -> str:
    """ASCII-lowercase ``name``, as the Rust store stores names."""
    return name.translate(_ASCII_LOWER)


def _name(d: Mapping[str, Any], key: str) -> str:
    try:
        value = d[key]
    except KeyError:
        raise ValueError(f"missing key {key!r}") from None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a str, not {type(value).__name__}")
    return value


def _opt_str(d: Mapping[str, Any], key: str) -> Optional[str]:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a str or None, not {type(value).__name__}")
    return value


Key = Tuple[str, str, str, str]


def key_of(ns: str, hub: str, group: str, partition: str) -> Key:
    return (fold(ns), fold(hub), fold(group), partition)


def claim_requests(ownership_list: List[Mapping[str, Any]]) -> List[tuple]:
    """The native claim requests for the SDK's ownership dicts (``etag`` may be absent)."""
    out = []
    for o in ownership_list:
        if not isinstance(o, Mapping):
            raise ValueError(f"an ownership must be a dict, not {type(o).__name__}")
        owner = _opt_str(o, "owner_id")
        out.append(
            (
                _name(o, "fully_qualified_namespace"),
                _name(o, "eventhub_name"),
                _name(o, "consumer_group"),
                _name(o, "partition_id"),
                owner or None,
                _opt_str(o, "etag") or None,
            )
        )
    return out


def claimed(
    ownership_list: List[Mapping[str, Any]], answers: List[Optional[tuple]]
) -> List[Dict[str, Any]]:
    """Fresh dicts for the won claims, in input order; lost claims are left out."""
    result = []
    for o, won in zip(ownership_list, answers):
        if won is None:
            continue
        etag, modified, owner = won
        d = dict(o)
        d["owner_id"] = owner
        d["etag"] = etag
        d["last_modified_time"] = modified
        result.append(d)
    return result


def listed_ownership(ns: str, hub: str, group: str, rows: List[tuple]) -> List[Dict[str, Any]]:
    return [
        {
            "fully_qualified_namespace": ns,
            "eventhub_name": hub,
            "consumer_group": group,
            "partition_id": pid,
            "owner_id": owner,
            "etag": etag,
            "last_modified_time": modified,
        }
        for pid, owner, etag, modified in rows
    ]


def listed_checkpoints(ns: str, hub: str, group: str, rows: List[tuple]) -> List[Dict[str, Any]]:
    return [
        {
            "fully_qualified_namespace": ns,
            "eventhub_name": hub,
            "consumer_group": group,
            "partition_id": pid,
            "offset": offset,
            "sequence_number": seq,
        }
        for pid, offset, seq in rows
    ]


def checkpoint_args(checkpoint: Mapping[str, Any]) -> tuple:
    """(ns, hub, group, partition, offset, sequence_number) of the SDK's checkpoint dict."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"a checkpoint must be a dict, not {type(checkpoint).__name__}")
    offset = checkpoint.get("offset")
    if offset is not None and not isinstance(offset, str):
        offset = str(offset)  # as the Blob store writes str(offset)
    seq = checkpoint.get("sequence_number")
    if seq is not None:
        if isinstance(seq, bool) or not isinstance(seq, int):
            try:
                seq = int(seq)
            except (TypeError, ValueError):
                raise ValueError(f"sequence_number must be an int, not {seq!r}") from None
    if offset is None and seq is None:
        raise ValueError(
            "a checkpoint needs an offset or a sequence_number (or both): it names no position"
        )
    return (
        _name(checkpoint, "fully_qualified_namespace"),
        _name(checkpoint, "eventhub_name"),
        _name(checkpoint, "consumer_group"),
        _name(checkpoint, "partition_id"),
        offset,
        seq,
    )
