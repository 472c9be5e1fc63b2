"""Native (incremental) keyed parts the way a task and a restore handle them, for tests
that take RocksDB checkpoints below the runtime: the files uploaded into a real shared
folder, the part read back with where its files are."""

from __future__ import annotations

from typing import Any

from streamflow.checkpoint.incremental import locate_native
from streamflow.checkpoint.metadata import StateHandle
from streamflow.checkpoint.shared_files import SharedFileStore
from streamflow.checkpoint.snapshot import PendingKeyedState


async def upload_native(
    part: dict[str, Any], pending: PendingKeyedState, store: SharedFileStore, checkpoint_id: int, owner: str
) -> dict[str, Any]:
    """Finish ``pending`` (its files into ``store``), discard its staging files, and
    return ``part`` as a restore reads it back (its files located, with checksums)."""
    try:
        finished = await pending.finish(store)
    finally:
        await pending.discard()
    handle = StateHandle(file=f"{owner}-{checkpoint_id}", size=1, sha256="0" * 64, shared=finished.shared)
    return locate_native(part, handle, store.directory.parent)
