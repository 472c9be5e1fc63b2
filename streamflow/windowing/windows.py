"""Where :class:`TimeWindow`, :class:`GlobalWindow` and :class:`Window` used to live.

They are defined in :mod:`streamflow.eventtime.windows`, below the state layer, whose
RocksDB key encoding writes a time window as two doubles. Checkpoints and savepoints
written before the move name this module in their pickles, so it keeps the names.
"""

from streamflow.eventtime.windows import GLOBAL_WINDOW, GlobalWindow, TimeWindow, Window

__all__ = ["GLOBAL_WINDOW", "GlobalWindow", "TimeWindow", "Window"]
