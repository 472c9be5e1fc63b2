"""XA transaction ids of the exactly-once MySQL sink.

An xid is ``(gtrid, bqual, formatID)``. Ours:

* ``formatID`` = :data:`FORMAT_ID`: tells streamflow's xids from anyone else's in
  ``XA RECOVER``.
* ``gtrid`` = ``sf1/<sink key>/<subtask>/<checkpoint>``: the sink key is a hash of the job
  name, the operator uid and the database (16 hex digits; the markers table keeps the
  names in full). XA RECOVER lists the prepared xids of the whole server, so two jobs
  may share a name and a uid only when they write to different databases;
  ``checkpoint`` is the checkpoint the transaction was opened for (the one after the
  last barrier the writer saw; XA START comes with the first record, before the barrier
  says its id).
* ``bqual`` = ``<attempt>.<n>``: a random token of the writer and its transaction count.
  A restored job numbers its checkpoints on from the restored one, so a crashed attempt
  may have left a prepared xid for the very checkpoint the new attempt is opening: the
  token keeps the two apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

__all__ = ["FORMAT_ID", "Xid", "sink_key"]

FORMAT_ID = 0x5346  # "SF"
_PREFIX = "sf1"


def sink_key(job_name: str, operator_uid: str, database: str) -> str:
    """16 hex digits naming one sink of one job writing to one database (stable across
    runs and restarts)."""
    return hashlib.sha256(f"{job_name}\0{operator_uid}\0{database}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Xid:
    gtrid: str
    bqual: str
    format_id: int = FORMAT_ID

    @classmethod
    def of(cls, key: str, subtask: int, checkpoint_id: int, attempt: str, n: int) -> Xid:
        return cls(f"{_PREFIX}/{key}/{subtask}/{checkpoint_id}", f"{attempt}.{n}")

    @classmethod
    def from_recover(cls, row: tuple[Any, ...]) -> Xid:
        """From an ``XA RECOVER`` row: (formatID, gtrid_length, bqual_length, data)."""
        format_id, gtrid_length, _, data = row
        raw = data if isinstance(data, bytes) else str(data).encode("utf-8", "surrogateescape")
        length = int(gtrid_length)
        return cls(raw[:length].decode("utf-8", "replace"), raw[length:].decode("utf-8", "replace"), int(format_id))

    @classmethod
    def from_handle(cls, value: Any) -> Xid:
        gtrid, bqual, format_id = value
        return cls(str(gtrid), str(bqual), int(format_id))

    def to_handle(self) -> list[Any]:
        return [self.gtrid, self.bqual, self.format_id]

    def sql(self) -> str:
        """The xid as XA statements take it (hex literals: nothing to escape)."""
        return f"X'{self.gtrid.encode().hex()}',X'{self.bqual.encode().hex()}',{self.format_id}"

    def belongs_to(self, key: str) -> bool:
        return self.format_id == FORMAT_ID and self.gtrid.startswith(f"{_PREFIX}/{key}/")

    @property
    def subtask(self) -> int:
        return int(self.gtrid.split("/")[2])

    @property
    def checkpoint_id(self) -> int:
        return int(self.gtrid.split("/")[3])

    def __str__(self) -> str:
        return f"{self.gtrid}|{self.bqual}"
