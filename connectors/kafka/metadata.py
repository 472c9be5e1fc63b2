"""Which partitions a KafkaSource's topics have, from the brokers' metadata.

Used at open and by partition discovery. Metadata comes from an admin client (the
consumer only caches metadata of topics it already reads). Errors name the topic and
the bootstrap servers and say what to do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import for_code

from streamflow.errors import ConnectorError

__all__ = ["TopicPartitions", "describe_partitions", "missing_topic_error"]

TopicPartitions = dict[str, list[int]]
_UNKNOWN_TOPIC = 3


async def describe_partitions(
    admin: Any,
    *,
    topics: Sequence[str] | None,
    pattern: re.Pattern[str] | None,
    led_only: bool,
) -> tuple[TopicPartitions, list[str]]:
    """The partitions of the selected topics, and the listed topics that do not exist.

    With ``pattern``, every non-internal topic whose whole name matches is selected.
    ``led_only`` keeps only partitions that have a leader right now (discovery takes a
    new partition once it can be read; a later look finds the rest).
    """
    if topics is not None:
        names = list(topics)
    else:
        assert pattern is not None  # KafkaSource checked that exactly one is set
        names = sorted(t for t in await admin.list_topics() if pattern.fullmatch(t))
    if not names:
        return {}, []
    found: TopicPartitions = {}
    missing: list[str] = []
    for described in await admin.describe_topics(names):
        topic, code = described["topic"], described["error_code"]
        if code == _UNKNOWN_TOPIC:
            missing.append(topic)
            continue
        if code != 0:
            error = for_code(code)
            raise ConnectorError(
                f"KafkaSource: the broker refused to describe topic {topic!r}: {error.__name__} "
                f"(code {code}); check the topic's ACLs and the client's credentials",
                topic=topic,
            )
        if pattern is not None and described.get("is_internal"):
            continue
        partitions = [
            p["partition"]
            for p in described["partitions"]
            if not led_only or (p["error_code"] == 0 and p["leader"] >= 0)
        ]
        if partitions:
            found[topic] = sorted(partitions)
    return found, missing


def missing_topic_error(source_uid: str, topics: Sequence[str], bootstrap_servers: str) -> ConnectorError:
    names = ", ".join(repr(t) for t in topics)
    return ConnectorError(
        f"KafkaSource {source_uid!r}: topic {names} does not exist on the brokers at {bootstrap_servers!r}. "
        "KafkaSource does not create topics: create it first (e.g. kafka-topics.sh --create --topic NAME "
        "--partitions N), or fix the name in topics=",
        operator=source_uid,
        topic=topics[0],
        bootstrap_servers=bootstrap_servers,
    )
