"""Event time: timestamps, watermarks and idleness, as pure logic the runtime feeds.

- :class:`WatermarkStrategy`: how records get timestamps and watermarks (build time).
- :class:`WatermarkGenerator`, :class:`WatermarkOutput`: write your own generator.
- :class:`WatermarkTracker`: one input's timestamps, watermark and idle status.
- :class:`WatermarkCombiner`: several inputs' watermarks and statuses into one.
- :class:`SplitWatermarks`: a source subtask's splits, each tracked, combined.
"""

from streamflow.eventtime.combiner import WatermarkCombiner
from streamflow.eventtime.generators import BoundedOutOfOrdernessWatermarks, WatermarkGenerator, WatermarkOutput
from streamflow.eventtime.splits import SplitWatermarks
from streamflow.eventtime.status import Emission, Emissions, WatermarkStatus
from streamflow.eventtime.strategy import TimestampAssigner, WatermarkStrategy
from streamflow.eventtime.tracker import InvalidTimestampError, Stamped, TimestampFailure, WatermarkTracker

__all__ = [
    "BoundedOutOfOrdernessWatermarks",
    "Emission",
    "Emissions",
    "InvalidTimestampError",
    "SplitWatermarks",
    "Stamped",
    "TimestampAssigner",
    "TimestampFailure",
    "WatermarkCombiner",
    "WatermarkGenerator",
    "WatermarkOutput",
    "WatermarkStatus",
    "WatermarkStrategy",
    "WatermarkTracker",
]
