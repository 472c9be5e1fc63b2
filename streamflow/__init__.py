"""streamflow: an asyncio-native stream processor with Flink's fault-tolerance model.

The public API, re-exported here; everything else is internal.
"""

from streamflow.api.async_io import AsyncFunction, AsyncRetry
from streamflow.api.broadcast import BroadcastProcessFunction, KeyedBroadcastProcessFunction
from streamflow.api.errors_policy import ErrorPolicy
from streamflow.api.functions import (
    CheckpointedFunction,
    CheckpointListener,
    Function,
    KeyedProcessFunction,
    ProcessFunction,
    RuntimeContext,
)
from streamflow.api.side_outputs import OutputTag
from streamflow.config import (
    CheckpointConfig,
    CheckpointingMode,
    RestartStrategy,
    RetentionOnCancel,
)
from streamflow.datastream.broadcast import BroadcastConnectedStream, BroadcastStream
from streamflow.datastream.client import JobClient
from streamflow.datastream.environment import StreamEnvironment
from streamflow.datastream.stream import DataStream, KeyedStream
from streamflow.datastream.windowed import WindowedStream
from streamflow.errors import (
    CheckpointError,
    ConfigError,
    ConnectorError,
    DataLossError,
    GraphError,
    JobFailedError,
    StateError,
    StreamflowError,
    TimestampError,
    UserFunctionError,
)
from streamflow.eventtime.strategy import WatermarkStrategy
from streamflow.runtime.eventloop import run
from streamflow.runtime.executor import JobResult, JobStatus

__all__ = [
    "AsyncFunction",
    "AsyncRetry",
    "BroadcastConnectedStream",
    "BroadcastProcessFunction",
    "BroadcastStream",
    "CheckpointConfig",
    "CheckpointError",
    "CheckpointListener",
    "CheckpointedFunction",
    "CheckpointingMode",
    "ConfigError",
    "ConnectorError",
    "DataLossError",
    "DataStream",
    "ErrorPolicy",
    "Function",
    "GraphError",
    "JobClient",
    "JobFailedError",
    "JobResult",
    "JobStatus",
    "KeyedBroadcastProcessFunction",
    "KeyedProcessFunction",
    "KeyedStream",
    "OutputTag",
    "ProcessFunction",
    "RestartStrategy",
    "RetentionOnCancel",
    "RuntimeContext",
    "StateError",
    "StreamEnvironment",
    "StreamflowError",
    "TimestampError",
    "UserFunctionError",
    "WatermarkStrategy",
    "WindowedStream",
    "run",
]
