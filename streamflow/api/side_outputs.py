"""OutputTag: the name of a side output.

A function sends a value to a side output with ``ctx.output(tag, value)``; the stream
of that output is ``stream.get_side_output(tag)``. Two tags with the same name are the
same side output, so a tag may be rebuilt where it is needed instead of passed around;
the optional type hint is documentation only and takes no part in equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamflow.errors import ConfigError

__all__ = ["OutputTag"]


@dataclass(frozen=True, slots=True)
class OutputTag:
    """Names a side output. ``OutputTag("late-orders")``, optionally with the type of its
    values: ``OutputTag("late-orders", dict)``."""

    name: str
    type_hint: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(
                f"OutputTag needs a non-empty str name, got {self.name!r}; name the side output, "
                "e.g. OutputTag('late-data')"
            )

    def __repr__(self) -> str:
        return f"OutputTag({self.name!r})"
