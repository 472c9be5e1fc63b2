"""The broadcast state pattern end to end: both function kinds at parallelism 1 and 2,
checkpointed, failed and restored, against a failure-free run; read-only enforcement.

Nothing orders a broadcast element against the records of the other input, so both test
functions are written to give the same output in every interleaving (as real ones
must): a record that finds no rule yet is kept in state and handled when the rule comes.
The output goes to an exactly-once file sink, so after a failure it is compared with the
reference as an exact multiset. The rules are read long before the failure and not
replayed: after the restore only the restored broadcast state knows them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamflow import (
    BroadcastProcessFunction,
    ConfigError,
    GraphError,
    JobFailedError,
    KeyedBroadcastProcessFunction,
    RestartStrategy,
    StateError,
    StreamEnvironment,
    UserFunctionError,
)
from streamflow.connectors import CollectionSource, CollectSink, ExactlyOnceFileSink, read_committed_lines
from streamflow.core.faults import FaultInjector
from streamflow.state import ListStateDescriptor, MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

faults = FaultInjector()  # the faults these tests arm; every job built here gets it

RULES = MapStateDescriptor[str, int]("rules")
NAMES = MapStateDescriptor[str, str]("names")
PATH = MapStateDescriptor[str, int]("path")  # keyed: channel -> actions so far
REPORTED = MapStateDescriptor[str, bool]("reported")  # keyed: channels already reported

CHANNELS = ["web", "app", "mail", "sms"]
THRESHOLDS = {"web": 6, "app": 9, "mail": 14}  # no rule for sms: never reported
ACTIONS = [(f"u{i % 12}", CHANNELS[(i * 7 + i // 12) % 4]) for i in range(480)]
CODES = {f"c{i}": f"name-{i}" for i in range(6)}
RECORDS = [(i, f"c{i % 6}") for i in range(300)]

CONFIGS = [pytest.param(1, id="p1"), pytest.param(2, id="p2")]


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    faults.disarm()
    yield
    faults.disarm()


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"broadcast::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


def expected_reports() -> Counter[str]:
    counts = Counter(ACTIONS)
    return Counter(
        f"{user} {channel} {THRESHOLDS[channel]}"
        for (user, channel), n in counts.items()
        if channel in THRESHOLDS and n >= THRESHOLDS[channel]
    )


async def paced(record: Any) -> Any:
    """Slows the records so that periodic checkpoints complete while they flow."""
    await asyncio.sleep(0.0005)
    return record


async def late(rule: Any) -> Any:
    """Delays one rule so that some users pass its threshold before it arrives."""
    if rule[0] == "mail":
        await asyncio.sleep(0.05)
    return rule


class PathLength(KeyedBroadcastProcessFunction):
    """Reports a user once per channel, when their actions in it reach the channel's rule.

    Whichever comes last triggers the report: the action (element side, reading the
    rule) or the rule (broadcast side, visiting every user's counts).
    """

    restored_rules: list[list[tuple[str, int]]] = []

    def open(self, ctx: Any) -> None:
        self.path = ctx.get_state(PATH)
        self.reported = ctx.get_state(REPORTED)

    def initialize_state(self, ctx: Any) -> None:
        if ctx.is_restored:
            rules = ctx.operator_state_store.get_broadcast_state(RULES)
            PathLength.restored_rules.append(sorted(rules.items()))

    def snapshot_state(self, ctx: Any) -> None:
        return None

    def _report(self, user: str, channel: str, threshold: int, out: Any) -> None:
        if (self.path.get(channel) or 0) >= threshold and not self.reported.contains(channel):
            self.reported.put(channel, True)
            out.collect(f"{user} {channel} {threshold}")

    def process_element(self, action: Any, ctx: Any, out: Any) -> None:
        user, channel = action
        self.path.put(channel, (self.path.get(channel) or 0) + 1)
        threshold = ctx.get_broadcast_state(RULES).get(channel)
        if threshold is not None:
            self._report(user, channel, threshold, out)

    def process_broadcast_element(self, rule: Any, ctx: Any, out: Any) -> None:
        channel, threshold = rule
        ctx.get_broadcast_state(RULES).put(channel, threshold)
        ctx.apply_to_keyed_state(PATH, lambda user, _path: self._report(user, channel, threshold, out))


def path_job(directory: Path, out: Path, parallelism: int, restart: RestartStrategy) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism).set_fault_injector(faults)
    env.enable_checkpointing(0.01, directory=directory)
    env.set_restart_strategy(restart)
    env.set_source_batch_size(4)
    env.set_channel_capacity(2)
    rules = (
        env.from_source(CollectionSource(sorted(THRESHOLDS.items()), batch_size=1), name="rules").uid("rules")
        .map(late).uid("late")
        .broadcast(RULES)
    )
    (
        env.from_source(CollectionSource(ACTIONS, batch_size=4), name="actions").uid("actions")
        .map(paced).uid("paced")
        .key_by(lambda action: action[0])
        .connect(rules)
        .process(PathLength()).uid("path-length")
        .sink_to(ExactlyOnceFileSink(out)).uid("out")
    )
    return env


@pytest.mark.parametrize("parallelism", CONFIGS)
async def test_keyed_broadcast_function_restores_broadcast_and_keyed_state_after_a_failure(
    parallelism: int, tmp_path: Path
) -> None:
    await path_job(tmp_path / "ref-chk", tmp_path / "ref", parallelism, RestartStrategy.none()).execute("ref")
    reference = Counter(read_committed_lines(tmp_path / "ref"))
    assert reference == expected_reports()

    PathLength.restored_rules = []
    faults.arm("after_completion", 3, action="raise")
    result = await path_job(
        tmp_path / "chk", tmp_path / "out", parallelism, RestartStrategy.fixed_delay(attempts=2, delay=0)
    ).execute("faulty")

    assert result.attempts == 2 and result.restored_from == 3
    assert Counter(read_committed_lines(tmp_path / "out")) == reference
    # Every subtask got all rules back from the checkpoint: the rules source read them
    # before its first barrier, so it does not replay them after the restore.
    assert PathLength.restored_rules == [sorted(THRESHOLDS.items())] * parallelism


class Enrich(BroadcastProcessFunction):
    """Names each record by its code from the broadcast table; records whose code is not
    known yet wait in operator ListState until the broadcast side learns it."""

    def __init__(self) -> None:
        self.waiting: list[Any] = []

    def initialize_state(self, ctx: Any) -> None:
        self.buffer = ctx.operator_state_store.get_list_state(ListStateDescriptor("waiting"))
        self.waiting = [tuple(r) for r in self.buffer.get()]

    def snapshot_state(self, ctx: Any) -> None:
        self.buffer.update(self.waiting)

    def process_element(self, record: Any, ctx: Any, out: Any) -> None:
        name = ctx.get_broadcast_state(NAMES).get(record[1])
        if name is None:
            self.waiting.append(record)
        else:
            out.collect(f"{record[0]} {name}")

    def process_broadcast_element(self, entry: Any, ctx: Any, out: Any) -> None:
        code, name = entry
        ctx.get_broadcast_state(NAMES).put(code, name)
        still = []
        for record in self.waiting:
            if record[1] == code:
                out.collect(f"{record[0]} {name}")
            else:
                still.append(record)
        self.waiting = still


async def slow_code(entry: Any) -> Any:
    if entry[0] in ("c4", "c5"):
        await asyncio.sleep(0.05)  # records with these codes wait in the buffer first
    return entry


def enrich_job(directory: Path, out: Path, parallelism: int, restart: RestartStrategy) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism).set_fault_injector(faults)
    env.enable_checkpointing(0.01, directory=directory)
    env.set_restart_strategy(restart)
    env.set_source_batch_size(4)
    env.set_channel_capacity(2)
    names = (
        env.from_source(CollectionSource(sorted(CODES.items()), batch_size=1), name="codes").uid("codes")
        .map(slow_code).uid("slow-code")
        .broadcast(NAMES)
    )
    (
        env.from_source(CollectionSource(RECORDS, batch_size=4), name="records").uid("records")
        .map(paced).uid("paced")
        .connect(names)
        .process(Enrich()).uid("enrich")
        .sink_to(ExactlyOnceFileSink(out)).uid("out")
    )
    return env


@pytest.mark.parametrize("parallelism", CONFIGS)
async def test_broadcast_function_restores_broadcast_and_list_state_after_a_failure(
    parallelism: int, tmp_path: Path
) -> None:
    expected = Counter(f"{i} {CODES[code]}" for i, code in RECORDS)
    await enrich_job(tmp_path / "ref-chk", tmp_path / "ref", parallelism, RestartStrategy.none()).execute("ref")
    assert Counter(read_committed_lines(tmp_path / "ref")) == expected

    faults.arm("after_completion", 3, action="raise")
    result = await enrich_job(
        tmp_path / "chk", tmp_path / "out", parallelism, RestartStrategy.fixed_delay(attempts=2, delay=0)
    ).execute("faulty")
    assert result.attempts == 2 and result.restored_from == 3
    assert Counter(read_committed_lines(tmp_path / "out")) == expected


# -- read-only enforcement and misuse -------------------------------------------------------


def _small_job(fn: Any, out: str, *, keyed: bool) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    rules = env.from_collection([("web", 1)], name="rules").uid("rules").broadcast(RULES)
    actions = env.from_collection([("u1", "web"), ("u2", "web")], name="actions").uid("actions")
    stream = actions.key_by(lambda a: a[0]) if keyed else actions
    stream.connect(rules).process(fn).uid("fn").sink_to(CollectSink(out))
    return env


class WritesRulesOnTheElementSide(BroadcastProcessFunction):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(RULES).put(value[1], 99)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(RULES).put(*value)


async def test_writing_broadcast_state_on_the_element_side_fails_the_job_with_a_clear_error(out: str) -> None:
    with pytest.raises(JobFailedError, match=r"read-only here: put\(\) was called from the element side") as info:
        await _small_job(WritesRulesOnTheElementSide(), out, keyed=False).execute("read-only")
    cause = info.value.__cause__
    assert isinstance(cause, UserFunctionError) and cause.operator == "fn"
    assert isinstance(cause.__cause__, StateError) and cause.__cause__.state == "rules"


class ClearsRulesInTimer(KeyedBroadcastProcessFunction):
    """Reads the rule in a timer (allowed), then tries to clear it there (refused)."""

    seen: list[Any] = []

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.timer_service.register_event_time_timer(10.0)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(RULES).put(*value)

    def on_timer(self, timestamp: float, ctx: Any, out: Any) -> None:
        rules = ctx.get_broadcast_state(RULES)
        ClearsRulesInTimer.seen.append((ctx.get_current_key(), rules.items()))
        rules.clear()


async def test_timers_see_broadcast_state_read_only(out: str) -> None:
    # The final watermark of the bounded inputs fires the timers; it passes the operator
    # only once both inputs ended, so the rule is known by then.
    ClearsRulesInTimer.seen = []
    with pytest.raises(JobFailedError, match=r"read-only here: clear\(\) was called"):
        await _small_job(ClearsRulesInTimer(), out, keyed=True).execute("timer-read-only")
    assert len(ClearsRulesInTimer.seen) == 1  # the first timer read the rule, then failed
    assert ClearsRulesInTimer.seen[0][1] == [("web", 1)]


class TouchesKeyedStateOnTheBroadcastSide(KeyedBroadcastProcessFunction):
    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        self.count.update(self.count.value() + 1)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        self.count.update(-1)  # no current key here: must not hit the last record's key


async def test_keyed_state_has_no_current_key_on_the_broadcast_side(out: str) -> None:
    with pytest.raises(JobFailedError, match="keyed state used outside a keyed context") as info:
        await _small_job(TouchesKeyedStateOnTheBroadcastSide(), out, keyed=True).execute("no-key")
    assert isinstance(info.value.__cause__, UserFunctionError)
    assert isinstance(info.value.__cause__.__cause__, StateError)


class AsksForAnUndeclaredState(BroadcastProcessFunction):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        return None

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(NAMES)


async def test_only_states_declared_in_broadcast_are_available(out: str) -> None:
    with pytest.raises(JobFailedError, match=r"operator 'fn' has no broadcast state .*'names'.* it declares \['rules'\]"):
        await _small_job(AsksForAnUndeclaredState(), out, keyed=False).execute("undeclared")


def test_connect_checks_the_function_against_the_stream_and_the_descriptors() -> None:
    env = StreamEnvironment()
    actions = env.from_collection([("u1", "web")]).uid("actions")
    rules = env.from_collection([("web", 1)]).uid("rules").broadcast(RULES)
    with pytest.raises(GraphError, match="KeyedBroadcastProcessFunction: call .key_by"):
        actions.connect(rules).process(PathLength())
    with pytest.raises(GraphError, match="is a BroadcastProcessFunction, but the connected stream is keyed"):
        actions.key_by(lambda a: a[0]).connect(rules).process(Enrich())
    with pytest.raises(ConfigError, match="lacks process_element, process_broadcast_element"):
        actions.connect(rules).process(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="connect needs a BroadcastStream"):
        actions.connect(actions.broadcast())  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="different environments"):
        actions.connect(StreamEnvironment().from_collection([1]).broadcast(RULES))
    with pytest.raises(ConfigError, match="broadcast state 'r' cannot have a ttl"):
        actions.broadcast(MapStateDescriptor("r", ttl=StateTtlConfig(ttl=5)))
    with pytest.raises(ConfigError, match="takes MapStateDescriptors"):
        actions.broadcast(ListStateDescriptor("l"))  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="two descriptors named 'rules'"):
        actions.broadcast(RULES, MapStateDescriptor("rules"))


class ListStateNamedLikeTheRules(BroadcastProcessFunction):
    def initialize_state(self, ctx: Any) -> None:
        ctx.operator_state_store.get_list_state(ListStateDescriptor("rules"))

    def snapshot_state(self, ctx: Any) -> None:
        return None

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        return None

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        return None


async def test_a_broadcast_state_name_used_by_list_state_fails_naming_the_operator(out: str) -> None:
    with pytest.raises(
        JobFailedError, match=r"operator 'fn' \(subtask 0\): operator state 'rules' is a split list state, "
        r"cannot use it as a broadcast state"
    ):
        await _small_job(ListStateNamedLikeTheRules(), out, keyed=False).execute("name-clash")
