"""Delivery guarantees: what a sink promises about each record after failures."""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import Any

from streamflow.errors import ConfigError

__all__ = ["DeliveryGuarantee", "declared_guarantee", "parse_guarantee"]


class DeliveryGuarantee(enum.Enum):
    """What a sink promises about each record after failures and restarts."""

    NONE = "none"
    """At most once: nothing is waited for; records in flight at a failure may be lost."""
    AT_LEAST_ONCE = "at_least_once"
    """Flushed at every checkpoint: nothing is lost, a restore may write duplicates."""
    EXACTLY_ONCE = "exactly_once"
    """Transactions committed with the checkpoint (two-phase commit): readers of committed
    data see each record once."""


def parse_guarantee(value: Any, sink: str, allowed: Collection[DeliveryGuarantee] = tuple(DeliveryGuarantee)
                    ) -> DeliveryGuarantee:
    """``value`` as a DeliveryGuarantee (its name or value as a string is accepted), or a
    ConfigError naming ``sink`` and the guarantees it supports."""
    guarantee: Any = value
    if isinstance(value, str):
        guarantee = next((g for g in DeliveryGuarantee if value.lower() in (g.value, g.name.lower())), None)
    if not isinstance(guarantee, DeliveryGuarantee) or guarantee not in allowed:
        names = ", ".join(g.name for g in allowed)
        raise ConfigError(
            f"{sink} delivery_guarantee must be a DeliveryGuarantee ({names}), got {value!r}",
            value=repr(value),
        )
    return guarantee


def declared_guarantee(sink: Any) -> DeliveryGuarantee | None:
    """The guarantee ``sink`` declares through its ``delivery_guarantee`` attribute (a
    :class:`DeliveryGuarantee`), or None if it declares none.

    The job reads it when it must restore past a damaged completed checkpoint: with a
    sink that declares EXACTLY_ONCE that rollback would duplicate committed output and is
    refused unless allowed. A sink of your own that commits with checkpoints (a
    two-phase-commit writer) should declare it, e.g. as a class attribute
    ``delivery_guarantee = DeliveryGuarantee.EXACTLY_ONCE``; an undeclared sink counts as
    at-least-once.
    """
    guarantee = getattr(sink, "delivery_guarantee", None)
    return guarantee if isinstance(guarantee, DeliveryGuarantee) else None
