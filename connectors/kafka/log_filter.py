"""Rate-limiting aiokafka's repeated warnings and errors.

While a broker is down, every aiokafka client logs each failed connection, metadata
request and fetch (``Unable connect to node with id 1``, ``Unable to update metadata``,
``Failed fetch messages``...), at ERROR, as often as it retries: a Kafka job logged
about 150,000 lines in 10 s (measured, with the reconnect loop that :mod:`.clients` now
slows down). What they say once is useful; the repeats are noise that
hides everything else and fills disks.

:class:`RepeatFilter`, on every aiokafka logger, lets the first WARNING or ERROR of each
kind (logger and message template) through, drops the repeats for ``window`` seconds,
and lets the next one through with the number dropped meanwhile. DEBUG and INFO pass
untouched. Our own clients add one WARNING per outage (see :mod:`.clients`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["AIOKAFKA_LOGGERS", "RepeatFilter", "install_log_filter"]

AIOKAFKA_LOGGERS = (
    "aiokafka", "aiokafka.cluster", "aiokafka.conn", "aiokafka.admin.client", "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher", "aiokafka.consumer.group_coordinator", "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)
"""The loggers aiokafka writes to (a filter on a logger sees only records made there)."""

WINDOW = 60.0


class RepeatFilter(logging.Filter):
    """Pass the first WARNING+ record of each (logger, template), then at most one per
    ``window`` seconds, which carries the count of those dropped in between."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()  # logging may be called from threads (to_thread users)
        self._passed: dict[tuple[str, str], float] = {}  # key -> when one last went through
        self._dropped: dict[tuple[str, str], int] = {}
        self.dropped_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        with self._lock:
            last = self._passed.get(key)
            if last is not None and now - last < self.window:
                self._dropped[key] = self._dropped.get(key, 0) + 1
                self.dropped_total += 1
                return False
            self._passed[key] = now
            dropped = self._dropped.pop(key, 0)
        if dropped and last is not None:
            record.msg = f"{record.getMessage()} ({dropped} more like it in the last {now - last:.0f} s not logged)"
            record.args = None
        return True


_installed: RepeatFilter | None = None
_install_lock = threading.Lock()


def install_log_filter() -> RepeatFilter:
    """Put one :class:`RepeatFilter` on every aiokafka logger (once per process)."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = RepeatFilter()
            for name in AIOKAFKA_LOGGERS:
                logging.getLogger(name).addFilter(_installed)
        return _installed
