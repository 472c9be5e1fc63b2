"""Turning a partition's fetched records into pipeline records, fast.

A deserializer is named (``"bytes"``, ``"str"``, ``"json"``) or any callable taking
``bytes`` and returning the value. The per-batch functions here keep one tight loop
over the records and leave failures to the exception path: a record that raises is set
aside as a :class:`~streamflow.api.connector.RecordFailure` (its raw record, for a
dead-letter sink) and the loop resumes after it.

``None`` (a tombstone value, a record without key) stays ``None`` with the built-in
deserializers; a custom callable receives ``None`` and decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import orjson

from streamflow.api.connector import RecordFailure
from streamflow.connectors.kafka.records import KafkaOutput, KafkaRecord, new_record
from streamflow.errors import ConfigError

__all__ = ["Deserializer", "decode_batch", "resolve_deserializer"]

Deserializer = Union[str, Callable[[Any], Any]]
"""``"bytes"`` (as is), ``"str"`` (utf-8), ``"json"`` (orjson), or ``callable(bytes)``."""

_NAMED: dict[str, Callable[[Any], Any] | None] = {
    "bytes": None,  # no call at all
    "str": bytes.decode,  # utf-8, strict
    "json": orjson.loads,
}


class _Builtin:
    """A named deserializer: ``None`` in, ``None`` out, without calling ``fn``."""

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: Callable[[Any], Any] | None) -> None:
        self.name = name
        self.fn = fn

    def __repr__(self) -> str:
        return f"deserializer {self.name!r}"


def resolve_deserializer(value: Deserializer, what: str) -> Callable[[Any], Any] | None | _Builtin:
    """Validate a user's deserializer; ``what`` names the argument in errors."""
    if isinstance(value, str):
        if value not in _NAMED:
            raise ConfigError(
                f"KafkaSource {what}={value!r} is not a known deserializer; use 'bytes', 'str', 'json' or a "
                "callable taking bytes",
                value=value,
            )
        return _Builtin(value, _NAMED[value])
    if not callable(value):
        raise ConfigError(f"KafkaSource {what} must be 'bytes', 'str', 'json' or a callable, got {value!r}")
    return value


def decode_batch(
    records: Sequence[Any],
    output: KafkaOutput,
    value_fn: Callable[[Any], Any] | None | _Builtin,
    key_fn: Callable[[Any], Any] | None | _Builtin,
    *,
    topic: str,
    partition: int,
) -> tuple[list[Any], list[int], list[float | None], list[RecordFailure] | None]:
    """Pipeline records, their offsets, their timestamps (the Kafka timestamps in float
    seconds), and the records that failed to decode.

    ``records`` are the fetched records of partition ``partition`` of ``topic``, in offset
    order: anything with aiokafka's record attributes ``offset``, ``timestamp`` (ms),
    ``key``, ``value`` and ``headers`` (the record-batch reader's records, or
    ConsumerRecords).
    """
    offsets = [r.offset for r in records]
    timestamps: list[float | None] = [r.timestamp / 1000.0 for r in records]
    if output is KafkaOutput.VALUE:
        fn, builtin = _unwrap(value_fn)
        if fn is None:
            return [r.value for r in records], offsets, timestamps, None
        out, failed = _decode_values(records, fn, builtin)
    else:
        out, failed = _decode_records(records, topic, partition, value_fn, key_fn)
    if not failed:
        return out, offsets, timestamps, None
    gone = {index for index, _ in failed}
    failures = [
        RecordFailure(records[i].offset, raw_record(records[i], topic, partition), exc) for i, exc in failed
    ]
    kept = [i for i in range(len(records)) if i not in gone]
    return out, [offsets[i] for i in kept], [timestamps[i] for i in kept], failures


def _unwrap(fn: Callable[[Any], Any] | None | _Builtin) -> tuple[Callable[[Any], Any] | None, bool]:
    if isinstance(fn, _Builtin):
        return fn.fn, True
    return fn, False


def _decode_values(
    records: Sequence[Any], fn: Callable[[Any], Any], builtin: bool
) -> tuple[list[Any], list[tuple[int, Exception]]]:
    out: list[Any] = []
    append = out.append
    failed: list[tuple[int, Exception]] = []
    it = iter(records)
    while True:
        try:
            for record in it:
                append(fn(record.value))
            return out, failed
        except Exception as exc:  # the record at len(out) + len(failed) raised
            index = len(out) + len(failed)
            if builtin and records[index].value is None:
                append(None)  # a tombstone: built-ins map None to None
            else:
                failed.append((index, exc))


def _decode_records(
    records: Sequence[Any],
    topic: str,
    partition: int,
    value_fn: Callable[[Any], Any] | None | _Builtin,
    key_fn: Callable[[Any], Any] | None | _Builtin,
) -> tuple[list[Any], list[tuple[int, Exception]]]:
    value_of = _total(value_fn)
    key_of = _total(key_fn)
    new = new_record
    if key_of is None and value_of is None:  # bytes as they are: nothing can fail
        return [
            new(topic, partition, r.offset, r.timestamp / 1000.0, r.key, r.value, tuple(r.headers)) for r in records
        ], []
    out: list[Any] = []
    append = out.append
    failed: list[tuple[int, Exception]] = []
    for index, r in enumerate(records):
        try:
            key = r.key if key_of is None else key_of(r.key)
            value = r.value if value_of is None else value_of(r.value)
        except Exception as exc:
            failed.append((index, exc))
            continue
        append(new(topic, partition, r.offset, r.timestamp / 1000.0, key, value, tuple(r.headers)))
    return out, failed


def _total(fn: Callable[[Any], Any] | None | _Builtin) -> Callable[[Any], Any] | None:
    """A one-argument function for the record path, None-safe for built-ins; ``None``
    for bytes as they are (no call at all)."""
    if isinstance(fn, _Builtin):
        inner = fn.fn
        if inner is None:
            return None
        return lambda raw: None if raw is None else inner(raw)
    return fn


def raw_record(r: Any, topic: str, partition: int) -> KafkaRecord:
    """The record as read, key and value still bytes: what a dead letter carries."""
    return KafkaRecord(topic, partition, r.offset, r.timestamp / 1000.0, r.key, r.value, tuple(r.headers))
