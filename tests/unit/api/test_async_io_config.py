"""map_async / flat_map_async settings: refused at build time with a message that says
what to change; retry delays as Flink's AsyncRetryStrategy computes them."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import pytest

from streamflow import AsyncFunction, AsyncRetry, ConfigError, StreamEnvironment
from streamflow.api.async_io import AsyncOrdering
from streamflow.graph.spec import OperatorKind


async def lookup(x: int) -> int:
    return x


async def lookup_with(x: int, offset: int) -> int:
    return x + offset


class Client(AsyncFunction):
    async def __call__(self, record: Any) -> Any:
        return record


def stream() -> Any:
    return StreamEnvironment().from_collection([1, 2, 3])


def test_map_async_adds_an_async_node_with_its_settings() -> None:
    env = StreamEnvironment()
    retry = AsyncRetry.exponential_backoff(4, timedelta(milliseconds=10), 2.0, 1.0)
    env.from_collection([1]).key_by(lambda x: x).map_async(
        lookup, capacity=7, timeout=timedelta(seconds=2), ordered="per_key", retry=retry
    ).uid("enrich")
    node = next(n for n in env._graph.nodes.values() if n.kind is OperatorKind.ASYNC)
    assert node.name == "map_async" and node.uid == "enrich" and node.holds_state and not node.has_keyed_state
    config = node.async_io
    assert config is not None
    assert (config.capacity, config.timeout, config.ordering, config.retry, config.flat) == (
        7, 2.0, AsyncOrdering.PER_KEY, retry, False
    )


@pytest.mark.parametrize("fn", [lookup, Client(), functools.partial(lookup_with, offset=1)])
def test_async_callables_of_every_shape_are_taken(fn: Any) -> None:
    stream().map_async(fn)
    stream().flat_map_async(fn)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.map_async(lambda x: x), "map_async needs an async function"),
        (lambda s: s.flat_map_async(len), "for a synchronous function use flat_map"),
        (lambda s: s.map_async(lookup, capacity=0), "capacity must be an int >= 1"),
        (lambda s: s.map_async(lookup, capacity=2.5), "capacity must be an int >= 1"),
        (lambda s: s.map_async(lookup, timeout=0), "timeout must be > 0 seconds"),
        (lambda s: s.map_async(lookup, timeout="5s"), "timeout must be seconds"),
        (lambda s: s.map_async(lookup, ordered="per_key"), "ordered='per_key' needs a keyed stream"),
        (lambda s: s.map_async(lookup, ordered="yes"), "ordered must be True, False or 'per_key'"),
        (lambda s: s.map_async(lookup, retry=3), "retry must be an AsyncRetry"),
    ],
)
def test_bad_settings_are_refused_when_the_stream_is_built(call: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(stream())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AsyncRetry.fixed_delay(0, 1.0), "max_attempts must be an int >= 1"),
        (lambda: AsyncRetry.fixed_delay(3, -1.0), "delay must be >= 0 seconds"),
        (lambda: AsyncRetry.exponential_backoff(3, 1.0, multiplier=0.5), "multiplier must be a number >= 1"),
        (lambda: AsyncRetry.exponential_backoff(3, 2.0, max_delay=1.0), "max_delay .* is below the initial delay"),
        (lambda: AsyncRetry.fixed_delay(3, 1.0, on_result=5), "on_result must be a callable"),
    ],
)
def test_bad_retry_strategies_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_retry_delays_fixed_and_exponential_with_a_cap() -> None:
    fixed = AsyncRetry.fixed_delay(3, timedelta(milliseconds=50))
    assert [fixed.delay_before(n) for n in (2, 3)] == [0.05, 0.05]
    backoff = AsyncRetry.exponential_backoff(6, 0.1, multiplier=3.0, max_delay=1.0)
    assert [round(backoff.delay_before(n), 6) for n in (2, 3, 4, 5)] == [0.1, 0.3, 0.9, 1.0]


def test_retry_predicates_default_to_every_exception_and_no_result() -> None:
    retry = AsyncRetry.fixed_delay(2, 0.0)
    assert retry.on_exception(ValueError()) and not retry.on_exception(KeyboardInterrupt())
    assert retry.on_result is None
    empty = AsyncRetry.fixed_delay(2, 0.0, on_result=lambda r: r is None, on_exception=lambda e: False)
    assert empty.on_result is not None and empty.on_result(None) and not empty.on_exception(ValueError())
