"""Whether an input drives event time, and what a watermark component hands downstream.

An input (a source split, an input channel) is ACTIVE while it may still send records
that hold event time back, and IDLE when it has had nothing to say for its idle timeout:
an idle input stops holding back the minimum watermark downstream until it sends a
record again (Flink's WatermarkStatus). A status is also a channel element in its own
right: the enum members are singletons, so the runtime can put them into a channel as
they are, in order with the records and watermarks.

Every pure event-time component (tracker, combiner) answers a call with the
:data:`Emission` values to forward, in order: a float is a new watermark, a
:class:`WatermarkStatus` a status change.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["NO_EMISSIONS", "Emission", "Emissions", "WatermarkStatus"]


class WatermarkStatus(enum.Enum):
    ACTIVE = "active"
    IDLE = "idle"


Emission = float | WatermarkStatus
"""A new watermark (float seconds) or a status change, to forward downstream."""

Emissions = tuple[Emission, ...]

NO_EMISSIONS: Final[Emissions] = ()
