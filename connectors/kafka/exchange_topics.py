"""Exchange topics: created by the job when missing, checked when present.

Both ends of an exchange call :func:`ensure_exchange_topic` when they open, so whichever
worker starts first creates the topic; a worker that loses the race to create it finds
it created and checks it like any existing one. An existing topic must have exactly the
job's exchange partition count: partitions hold key groups, so a topic with other
partitions would put keys where no reader looks for them. That is a configuration
error, not retried, with a message that says what to change.

The replication factor is the exchange's setting, or, when it is ``None``, the
brokers' ``default.replication.factor`` (read from the cluster), as Kafka Streams does
for its repartition topics.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code

from streamflow.connectors.kafka.clients import start_client, watch_client
from streamflow.connectors.kafka.metadata import describe_partitions
from streamflow.errors import ConfigError, ConnectorError

__all__ = ["admin_options", "ensure_exchange_topic"]

_ADMIN_OPTIONS = frozenset(inspect.signature(AIOKafkaAdminClient).parameters) - {"loop", "bootstrap_servers"}
_TOPIC_ALREADY_EXISTS = 36
_LEADER_WAIT = 0.05


async def ensure_exchange_topic(
    admin_args: Mapping[str, Any],
    *,
    topic: str,
    partitions: int,
    replication_factor: int | None,
    topic_config: Mapping[str, str],
    timeout: float,
    where: str,
) -> None:
    """Make sure ``topic`` exists with ``partitions`` partitions, each with a leader.

    ``admin_args`` are AIOKafkaAdminClient arguments (servers, security). Raises
    ConfigError if the topic exists with another partition count or the brokers refuse
    its settings, ConnectorError if the brokers cannot be reached within ``timeout``.
    """
    servers = admin_args.get("bootstrap_servers")
    admin = AIOKafkaAdminClient(**admin_args)
    watch_client(admin._client, f"{where} (exchange topic)")
    try:
        async with asyncio.timeout(timeout):
            await start_client(admin.start(), where)
            found = await _partitions(admin, topic)
            if found is None:
                await _create(admin, topic, partitions, replication_factor, dict(topic_config), where)
                found = await _partitions(admin, topic)
            if found is not None and found != partitions:
                raise ConfigError(
                    f"{where}: exchange topic {topic!r} has {found} partitions, but the job's exchanges have "
                    f"{partitions}, and the count is fixed for the job's life (partitions hold key groups). Run the "
                    f"job with {found} exchange partitions; or, if the job keeps no state you need, delete the "
                    "topic and let the job create it again",
                    topic=topic,
                )
            deadline = time.monotonic() + timeout
            while len(await _led(admin, topic)) < partitions and time.monotonic() < deadline:
                await asyncio.sleep(_LEADER_WAIT)
    except (KafkaError, OSError, TimeoutError) as exc:
        why = f"no answer within {timeout:g}s" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        raise ConnectorError(
            f"{where}: cannot check or create exchange topic {topic!r} at {servers!r}: {why}",
            topic=topic,
            bootstrap_servers=servers,
        ) from exc
    finally:
        await admin.close()


def admin_options(client_options: Mapping[str, Any]) -> dict[str, Any]:
    """The consumer or producer options that an admin client takes too (security,
    connection settings)."""
    return {name: value for name, value in client_options.items() if name in _ADMIN_OPTIONS}


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> int | None:
    found, missing = await describe_partitions(admin, topics=[topic], pattern=None, led_only=False)
    return None if missing else len(found.get(topic, ()))


async def _led(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    found, _ = await describe_partitions(admin, topics=[topic], pattern=None, led_only=True)
    return found.get(topic, [])


async def _create(
    admin: AIOKafkaAdminClient,
    topic: str,
    partitions: int,
    replication_factor: int | None,
    config: dict[str, str],
    where: str,
) -> None:
    factor = replication_factor if replication_factor is not None else await _default_replication(admin, where)
    response = await admin.create_topics([NewTopic(topic, partitions, factor, topic_configs=config)])
    for name, code, message in response.topic_errors:
        if name != topic or code in (0, _TOPIC_ALREADY_EXISTS):
            continue  # created, or another worker was first
        raise ConfigError(
            f"{where}: the brokers refused to create exchange topic {topic!r} ({partitions} partitions, replication "
            f"factor {factor}, config {config!r}): {for_code(code).__name__}: {message}. Fix the exchange's "
            "replication_factor or topic_config, or create the topic yourself with these partitions",
            topic=topic,
        )


async def _default_replication(admin: AIOKafkaAdminClient, where: str) -> int:
    """The brokers' ``default.replication.factor``."""
    cluster = await admin.describe_cluster()
    broker = str(cluster["controller_id"] if cluster.get("controller_id", -1) >= 0 else cluster["brokers"][0]["node_id"])
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, broker, {"default.replication.factor": None})]
    )
    for response in responses:
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                if entry["config_names"] == "default.replication.factor":
                    return int(entry["config_value"])
    raise ConfigError(
        f"{where}: cannot read the brokers' default.replication.factor; give the exchange a replication_factor"
    )
