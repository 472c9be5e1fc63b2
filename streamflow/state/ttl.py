"""State time-to-live: the configuration and the pieces every TTL state shares.

A state with a :class:`StateTtlConfig` stores each value together with the clock time of
its last update, ``(value, timestamp)``; a value whose ``timestamp + ttl <= now`` has
expired. Time comes from the :class:`~streamflow.core.clock.Clock` the runtime gives
the backend, so tests move it by hand.

Expired values leave live state in three ways, each opt-in as in Flink:

* on read (``cleanup_on_read``): a read that finds an expired value removes it;
* incrementally (``cleanup_incremental=n``): every access to the state walks ``n`` more
  entries of a persistent cursor over all of the state's entries and removes the
  expired ones; with ``incremental_per_record`` the backend also does so once per record
  when the runtime calls ``on_record()``;
* at a full snapshot (``cleanup_full_snapshot``): expired values are left out of the
  snapshot (live state keeps them until another cleanup removes them).

A state without TTL pays nothing: it uses handle classes with no TTL code at all.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from streamflow.config import seconds
from streamflow.core.clock import Clock
from streamflow.errors import ConfigError

__all__ = ["StateTtlConfig", "TtlUpdateType", "TtlVisibility"]


class TtlUpdateType(enum.Enum):
    """Which accesses restart a value's time to live."""

    ON_CREATE_AND_WRITE = "on_create_and_write"
    """Only writes (``update``, ``add``, ``put``) refresh the timestamp."""
    ON_READ_AND_WRITE = "on_read_and_write"
    """Reads of a value that has not expired refresh it too."""


class TtlVisibility(enum.Enum):
    """Whether a read may return a value that expired but is still stored."""

    NEVER_RETURN_EXPIRED = "never_return_expired"
    """Expired values are invisible even before cleanup removes them."""
    RETURN_EXPIRED_IF_NOT_CLEANED_UP = "return_expired_if_not_cleaned_up"
    """Expired values are returned until some cleanup removes them (cheaper to reason
    about when exact expiry does not matter)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StateTtlConfig:
    """Time to live of a state's values.

    Attributes:
        ttl: how long a value lives after its last refresh, in seconds or a timedelta
            (normalised to float seconds).
        update_type: which accesses refresh a value's timestamp.
        visibility: whether reads may return expired values that are still stored.
        cleanup_on_read: a read that finds an expired value removes it.
        cleanup_full_snapshot: snapshots leave expired values out.
        cleanup_incremental: entries checked (and removed if expired) per state access;
            0 turns incremental cleanup off.
        incremental_per_record: also run one incremental step per record, when the
            runtime calls ``KeyedStateBackend.on_record()``; needs
            ``cleanup_incremental > 0``.
    """

    ttl: float | timedelta
    update_type: TtlUpdateType = TtlUpdateType.ON_CREATE_AND_WRITE
    visibility: TtlVisibility = TtlVisibility.NEVER_RETURN_EXPIRED
    cleanup_on_read: bool = True
    cleanup_full_snapshot: bool = False
    cleanup_incremental: int = 0
    incremental_per_record: bool = False

    def __post_init__(self) -> None:
        ttl = seconds(self.ttl, "StateTtlConfig.ttl")
        if not ttl > 0:
            raise ConfigError(
                f"StateTtlConfig.ttl must be > 0 seconds, got {self.ttl!r}; drop ttl= to keep state forever"
            )
        object.__setattr__(self, "ttl", ttl)
        if not isinstance(self.update_type, TtlUpdateType):
            raise ConfigError(
                f"StateTtlConfig.update_type must be a TtlUpdateType, got {self.update_type!r}; "
                "use TtlUpdateType.ON_CREATE_AND_WRITE or TtlUpdateType.ON_READ_AND_WRITE"
            )
        if not isinstance(self.visibility, TtlVisibility):
            raise ConfigError(
                f"StateTtlConfig.visibility must be a TtlVisibility, got {self.visibility!r}; "
                "use TtlVisibility.NEVER_RETURN_EXPIRED or TtlVisibility.RETURN_EXPIRED_IF_NOT_CLEANED_UP"
            )
        for name in ("cleanup_on_read", "cleanup_full_snapshot", "incremental_per_record"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"StateTtlConfig.{name} must be True or False, got {getattr(self, name)!r}")
        n = self.cleanup_incremental
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(
                f"StateTtlConfig.cleanup_incremental must be an int >= 0 (entries checked per access; "
                f"0 = off), got {n!r}"
            )
        if self.incremental_per_record and n == 0:
            raise ConfigError(
                "StateTtlConfig.incremental_per_record=True needs cleanup_incremental > 0 "
                "(the number of entries to check per record); set both or neither"
            )


MISSING: Any = object()
"""Returned by :meth:`TtlPolicy.read` for an expired, hidden value."""

# A stored TTL value is the tuple ``(user_value, last_update_timestamp)``.
TtlValue = tuple[Any, float]

# Removes the expired parts of one stored entry: purge(group, key, now, ttl_seconds).
Purge = Callable[[dict[Any, Any], Any, float, float], None]


class TtlPolicy:
    """The resolved TTL settings of one registered state, plus its cleanup cursor.

    One instance per state name, shared by every handle of that name so the incremental
    cursor advances once per access whichever handle made it.
    """

    __slots__ = (
        "config",
        "clock",
        "ttl",
        "refresh_on_read",
        "return_expired",
        "cleanup_on_read",
        "_table",
        "_purge",
        "_incremental",
        "_cursor",
    )

    def __init__(self, config: StateTtlConfig, clock: Clock, table: dict[int, dict[Any, Any]], purge: Purge) -> None:
        self.config = config
        self.clock = clock
        self.ttl = seconds(config.ttl, "StateTtlConfig.ttl")  # already float; this narrows the type
        self.refresh_on_read = config.update_type is TtlUpdateType.ON_READ_AND_WRITE
        self.return_expired = config.visibility is TtlVisibility.RETURN_EXPIRED_IF_NOT_CLEANED_UP
        self.cleanup_on_read = config.cleanup_on_read
        self._table = table
        self._purge = purge
        self._incremental = config.cleanup_incremental
        self._cursor: Iterator[tuple[int, Any]] | None = None

    def alive(self, timestamp: float, now: float) -> bool:
        """Whether a value last refreshed at ``timestamp`` is still live at ``now``."""
        return timestamp + self.ttl > now

    def read(self, container: dict[Any, Any], key: Any, entry: TtlValue, now: float) -> Any:
        """The user value of ``entry`` (stored in ``container[key]``), applying the policy.

        Returns ``MISSING`` when the entry expired and is hidden. A live entry is refreshed
        under ON_READ_AND_WRITE; an expired one is removed under ``cleanup_on_read`` and,
        with RETURN_EXPIRED_IF_NOT_CLEANED_UP, returned this one last time (as in Flink).
        """
        value, timestamp = entry
        if timestamp + self.ttl > now:
            if self.refresh_on_read:
                container[key] = (value, now)
            return value
        if self.cleanup_on_read:
            del container[key]
        return value if self.return_expired else MISSING

    def on_access(self) -> None:
        """Called by every handle method: one incremental cleanup step, if configured."""
        if self._incremental:
            self.incremental_step()

    def incremental_step(self) -> None:
        """Check the next ``cleanup_incremental`` entries of the state, removing expired ones.

        The cursor iterates over a copy of each key group's keys, so writes between steps
        never break it; at the end of the state it starts over, at most once per step so
        an empty state cannot spin.
        """
        remaining = self._incremental
        restarted = False
        now = self.clock.now()
        table = self._table
        purge = self._purge
        ttl = self.ttl
        while remaining > 0:
            if self._cursor is None:
                if restarted:
                    return
                self._cursor = _walk(table)
                restarted = True
            for key_group, key in self._cursor:
                group = table.get(key_group)
                if group is not None and key in group:
                    purge(group, key, now, ttl)
                remaining -= 1
                if remaining == 0:
                    return
            self._cursor = None


def _walk(table: dict[int, dict[Any, Any]]) -> Iterator[tuple[int, Any]]:
    for key_group in list(table):
        group = table.get(key_group)
        if group:
            for key in list(group):
                yield key_group, key
