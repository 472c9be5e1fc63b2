"""What a savepoint or checkpoint holds, for ``streamflow inspect``.

:func:`describe_snapshot` verifies the snapshot and decodes every state file into a
plain, JSON-ready description: per operator uid its parallelism and sizes; per subtask
the key groups it owned, its keyed states (name, kind, TTL, keys), timers, operator
states (lists, broadcast maps), source splits and the sink's pending transactions. For
keyed state in RocksDB files (an incremental checkpoint) it shows the files instead of
key counts: how many, their bytes, and how many were written for this checkpoint
(the others it shares with earlier ones); the timers those files hold are counted by
reading them (put into a scratch directory and opened read-only).
:func:`format_description` renders that for a terminal. Values themselves are not
printed (they may be large or private); counts and sizes are, and source splits and
transaction handles, which are small positions and names.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import tempfile
from pathlib import Path
from typing import Any

from streamflow.checkpoint.incremental import is_native_part, locate_native, materialize_native
from streamflow.checkpoint.metadata import StateHandle
from streamflow.checkpoint.serde import decode
from streamflow.checkpoint.shared_files import uploaded_for
from streamflow.checkpoint.snapshot import STORED_PARTS, OperatorSnapshot
from streamflow.partitioning.keygroups import key_group_range
from streamflow.savepoint.location import locate_snapshot
from streamflow.savepoint.restore import is_auto_uid
from streamflow.state.rocksdb.native import timer_counts

__all__ = ["describe_snapshot", "format_description"]

log = logging.getLogger("streamflow.savepoint")

_SHOWN_ITEMS = 10  # splits / transactions listed per subtask in text output


async def describe_snapshot(path: str | Path) -> dict[str, Any]:
    """Verify the snapshot at ``path`` (see :func:`~streamflow.savepoint.location.locate_snapshot`)
    and describe it; every file is checked against its checksum first."""
    located = await locate_snapshot(path)
    for skipped in located.skipped:
        log.warning("%s; showing the previous checkpoint", skipped.problem)
    metadata = located.metadata
    operators = []
    for uid, meta in sorted(metadata.operators.items()):
        subtasks = []
        for index in range(meta.parallelism):
            owned = key_group_range(meta.max_parallelism, meta.parallelism, index)
            entry: dict[str, Any] = {"subtask": index, "key_groups": [owned.start, owned.stop - 1]}
            handle = meta.subtasks.get(index)
            if handle is None:
                entry.update(file=None, size=0)
            else:
                state = decode(await located.storage.read_state(located.completed.checkpoint_id, handle))
                entry.update(file=handle.file, size=handle.size, **_describe_state(state))
                keyed = state.get("keyed") if isinstance(state, dict) else None
                if isinstance(keyed, dict) and is_native_part(keyed) and keyed.get("timers"):
                    entry["timers"] = await _native_timers(keyed, handle, located.storage.directory)
                if handle.shared:
                    entry["shared_files"] = {
                        "files": len(handle.shared),
                        "bytes": sum(shared.size for shared in handle.shared),
                        "written_for_this_checkpoint": sum(
                            1 for shared in handle.shared if uploaded_for(shared.name) == metadata.checkpoint_id
                        ),
                    }
            subtasks.append(entry)
        operators.append(
            {
                "uid": uid,
                "auto_uid": is_auto_uid(uid),
                "parallelism": meta.parallelism,
                "max_parallelism": meta.max_parallelism,
                "size": sum(h.size for h in meta.subtasks.values()),
                "shared_size": sum(shared.size for h in meta.subtasks.values() for shared in h.shared),
                "subtasks": subtasks,
            }
        )
    shared = metadata.shared_files()
    return {
        "path": str(located.path),
        "kind": "savepoint" if metadata.is_savepoint else "checkpoint",
        "format_version": metadata.format_version,
        "job_name": metadata.job_name,
        "checkpoint_id": metadata.checkpoint_id,
        "timestamp": metadata.timestamp,
        "size": sum(op["size"] for op in operators),
        "shared_files": len(shared),
        "shared_size": sum(file.size for file in shared),
        "operators": operators,
    }


async def _native_timers(keyed: dict[str, Any], handle: StateHandle, directory: Path) -> dict[str, int]:
    """The timers a native part's files hold, per domain."""
    part = locate_native(keyed, handle, directory)
    with tempfile.TemporaryDirectory(prefix="streamflow-inspect-") as scratch:
        restored = await materialize_native(part, Path(scratch) / "db")
        counts = await asyncio.to_thread(timer_counts, restored)
    return {"processing": counts["processing"], "event": counts["event"]}


def _describe_state(state: Any) -> dict[str, Any]:
    """The parts of one subtask's stored snapshot (see :mod:`streamflow.checkpoint.snapshot`)."""
    if not isinstance(state, dict):
        return {"other": [type(state).__name__]}
    snapshot = OperatorSnapshot.from_stored(state)
    out: dict[str, Any] = {}
    if is_native_part(snapshot.keyed):
        assert snapshot.keyed is not None
        out["keyed_states"] = [
            {"name": meta["name"], "kind": meta["kind"], "ttl": bool(meta["ttl"]), "serializer": meta["serializer"],
             "keys": None, "key_groups_with_state": None, "key_group_span": None}
            for meta in snapshot.keyed.get("states", [])
        ]  # fmt: skip
        out["keyed_format"] = snapshot.keyed.get("format")
    elif isinstance(snapshot.keyed, dict):
        out["keyed_states"] = [
            _describe_keyed(name, data) for name, data in sorted((snapshot.keyed.get("states") or {}).items())
        ]
    if snapshot.timers is not None:
        out["timers"] = {"processing": len(snapshot.timers.processing), "event": len(snapshot.timers.event)}
    if isinstance(snapshot.operator, dict):
        out["operator_states"] = [
            {
                "name": name,
                "mode": data.get("mode"),
                "serializer": data.get("serializer"),
                "items": len(data.get("items") or []),
            }
            for name, data in sorted((snapshot.operator.get("states") or {}).items())
        ]
    if snapshot.source is not None:
        out["source_splits"] = list(snapshot.source)
    if snapshot.sink is not None:
        out["sink_transactions"] = [
            {"checkpoint_id": t.get("checkpoint_id"), "subtask": t.get("subtask"), "handle": t.get("handle")}
            if isinstance(t, dict)
            else {"checkpoint_id": None, "subtask": None, "handle": t}
            for t in snapshot.sink
        ]
    other = sorted(set(state) - STORED_PARTS)
    if other:
        out["other"] = other
    return out


def _describe_keyed(name: str, data: dict[str, Any]) -> dict[str, Any]:
    groups = data.get("key_groups") or {}
    numbers = sorted(int(g) for g in groups)
    return {
        "name": name,
        "kind": data.get("kind"),
        "ttl": bool(data.get("ttl")),
        "serializer": data.get("serializer"),  # None: written before serializers were recorded
        "keys": sum(len(entries) for entries in groups.values()),
        "key_groups_with_state": len(numbers),
        "key_group_span": [numbers[0], numbers[-1]] if numbers else None,
    }


# -- text ------------------------------------------------------------------------------


def format_description(description: dict[str, Any]) -> str:
    """Human-readable lines for :func:`describe_snapshot`'s result."""
    d = description
    taken = datetime.datetime.fromtimestamp(d["timestamp"]).strftime("%Y-%m-%d %H:%M:%S")
    shared = f" + {d['shared_files']} shared file(s), {_size(d['shared_size'])}" if d.get("shared_files") else ""
    lines = [
        f"{d['kind']} {d['path']}",
        f"  job {d['job_name']!r}, checkpoint {d['checkpoint_id']}, taken {taken}, format version "
        f"{d['format_version']}, {len(d['operators'])} operator(s) with state, {_size(d['size'])}{shared}",
    ]
    for op in d["operators"]:
        auto = "  (auto-generated uid: the operator had no .uid())" if op["auto_uid"] else ""
        lines.append("")
        shared_size = f" + {_size(op['shared_size'])} in shared files" if op.get("shared_size") else ""
        lines.append(
            f"  operator {op['uid']!r}  parallelism {op['parallelism']}, max parallelism "
            f"{op['max_parallelism']}, {_size(op['size'])}{shared_size}{auto}"
        )
        for sub in op["subtasks"]:
            lines.extend(_format_subtask(sub))
    return "\n".join(lines)


def _format_subtask(sub: dict[str, Any]) -> list[str]:
    if sub["file"] is None:
        return [f"    subtask {sub['subtask']}  no state"]
    head = f"    subtask {sub['subtask']}  {sub['file']}  {_size(sub['size'])}"
    if "keyed_states" in sub:
        first, last = sub["key_groups"]
        head += f"  key groups {first}-{last}"
    lines = [head]
    files = sub.get("shared_files")
    if files:
        lines.append(
            f"      {sub.get('keyed_format') or 'shared'} files: {files['files']} ({_size(files['bytes'])}), "
            f"{files['written_for_this_checkpoint']} written for this checkpoint, the others shared with earlier ones"
        )
    for state in sub.get("keyed_states", []):
        ttl = ", ttl" if state["ttl"] else ""
        ttl += _serializer_note(state)
        if state["keys"] is None:
            lines.append(f"      keyed state {state['name']!r} ({state['kind']}{ttl}): in the files above")
            continue
        span = state["key_group_span"]
        where = f" (key groups {span[0]}-{span[1]})" if span else ""
        lines.append(
            f"      keyed state {state['name']!r} ({state['kind']}{ttl}): {state['keys']} key(s) in "
            f"{state['key_groups_with_state']} key group(s){where}"
        )
    timers = sub.get("timers")
    if timers and (timers["processing"] or timers["event"]):
        lines.append(f"      timers: {timers['processing']} processing-time, {timers['event']} event-time")
    for state in sub.get("operator_states", []):
        lines.append(
            f"      operator state {state['name']!r} ({state['mode']}{_serializer_note(state)}): "
            f"{state['items']} item(s)"
        )
    if "source_splits" in sub:
        splits = sub["source_splits"]
        lines.append(f"      source splits: {len(splits) or 'none'}")
        lines.extend(f"        {split!r}" for split in splits[:_SHOWN_ITEMS])
        if len(splits) > _SHOWN_ITEMS:
            lines.append(f"        ... {len(splits) - _SHOWN_ITEMS} more (--json shows all)")
    if "sink_transactions" in sub:
        txns = sub["sink_transactions"]
        lines.append(f"      sink pending transactions: {len(txns) or 'none'}")
        for txn in txns[:_SHOWN_ITEMS]:
            lines.append(f"        checkpoint {txn['checkpoint_id']}: {txn['handle']!r}")
        if len(txns) > _SHOWN_ITEMS:
            lines.append(f"        ... {len(txns) - _SHOWN_ITEMS} more (--json shows all)")
    if sub.get("other"):
        lines.append(f"      other state: {', '.join(sub['other'])}")
    return lines


def _serializer_note(state: dict[str, Any]) -> str:
    """Names a serializer other than the default (pickle), which most states use."""
    serializer = state.get("serializer")
    return f", serializer {serializer}" if serializer not in (None, "pickle") else ""


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"
