"""MergingWindowSet: the session windows of one key, and which window holds their state.

When session windows merge, their contents must end up together. Copying the contents
into the merged window's namespace on every merge would be costly, so, as in Flink, each
window in flight maps to a *state window*: the namespace that actually holds its
contents. A merge keeps the state window of one of the merged windows for the result
and folds only the others' contents into it.

:meth:`add_window` runs the merge and returns the window the new element belongs to
and the :class:`Merge` steps the caller must apply to its state (trigger ``on_merge``,
``clear`` of the windows merged away, folding their contents into the state window).
The set is plain data for a checkpoint: :meth:`snapshot` / :meth:`restore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from streamflow.errors import StateError
from streamflow.eventtime.windows import TimeWindow

__all__ = ["Merge", "MergingWindowSet"]


class WindowMerger(Protocol):
    """What :class:`MergingWindowSet` needs of its assigner (a MergingWindowAssigner)."""

    def merge_windows(self, windows: Sequence[TimeWindow]) -> list[tuple[TimeWindow, list[TimeWindow]]]: ...


@dataclass(frozen=True, slots=True)
class Merge:
    """One merge: ``merged`` (windows in flight before) became ``result``.

    ``state_window`` holds the result's contents from now on; the contents of
    ``merged_state_windows`` must be folded into it and removed.
    """

    result: TimeWindow
    merged: tuple[TimeWindow, ...]
    state_window: TimeWindow
    merged_state_windows: tuple[TimeWindow, ...]


class MergingWindowSet:
    """Windows in flight of one key -> their state windows (see the module docstring)."""

    __slots__ = ("_assigner", "_mapping", "changed")

    def __init__(self, assigner: WindowMerger, mapping: dict[TimeWindow, TimeWindow] | None = None) -> None:
        self._assigner = assigner
        self._mapping: dict[TimeWindow, TimeWindow] = dict(mapping or {})
        self.changed = False
        """Whether windows came or went since the set was made, restored or persisted."""

    # -- persistence -----------------------------------------------------------------

    def snapshot(self) -> list[list[float]]:
        """``[[start, end, state_start, state_end], ...]``, sorted by window."""
        return [
            [w.start, w.end, s.start, s.end] for w, s in sorted(self._mapping.items(), key=lambda i: (i[0].start, i[0].end))
        ]

    @classmethod
    def restore(cls, assigner: WindowMerger, data: list[list[float]]) -> MergingWindowSet:
        return cls(assigner, {TimeWindow(a, b): TimeWindow(c, d) for a, b, c, d in data})

    def copy(self) -> MergingWindowSet:
        """An independent set with the same windows (and ``changed`` flag), to plan on."""
        twin = MergingWindowSet(self._assigner, self._mapping)
        twin.changed = self.changed
        return twin

    def mark_persisted(self) -> None:
        self.changed = False

    def __len__(self) -> int:
        return len(self._mapping)

    def windows(self) -> list[TimeWindow]:
        return list(self._mapping)

    # -- queries and changes ---------------------------------------------------------

    def state_window(self, window: TimeWindow) -> TimeWindow | None:
        """The namespace holding ``window``'s contents, or None if it is not in flight
        (it was merged into another, or retired)."""
        return self._mapping.get(window)

    def retire_window(self, window: TimeWindow) -> None:
        """Forget ``window`` (it is over, or too late to keep)."""
        if self._mapping.pop(window, None) is None:
            raise StateError(f"session window {window!r} is not in flight; cannot retire it")
        self.changed = True

    def add_window(self, new: TimeWindow) -> tuple[TimeWindow, list[Merge]]:
        """Add ``new`` and merge what overlaps; returns the window ``new`` ended up in and
        the merges to apply, in order."""
        mapping = self._mapping
        if new in mapping:  # (a dynamic gap can reproduce a window in flight exactly)
            return new, []
        self.changed = True
        groups = self._assigner.merge_windows([*mapping, new])
        result = new
        new_was_merged = False
        merges: list[Merge] = []
        for cover, members in groups:
            if new in members:
                members = [m for m in members if m != new]
                new_was_merged = True
                result = cover
            state_window = mapping[members[0]]
            merged_states = [mapping.pop(m) for m in members if m in mapping]
            mapping[cover] = state_window
            others = tuple(s for s in merged_states if s != state_window)
            # A new element inside one existing window changes nothing: no merge to apply.
            if not (len(members) == 1 and members[0] == cover):
                merges.append(Merge(cover, tuple(members), state_window, others))
        if not new_was_merged:
            mapping[result] = result
        return result, merges
