"""The job's metrics in Prometheus' exposition format, read at scrape time.

:class:`JobCollector` is a prometheus_client custom collector: a scrape calls
``collect``, which takes a reading from the job's registry (or shares one at most a
second old) and turns each declared metric into a metric family. Nothing is kept or
computed between scrapes. Every series is exposed as a gauge under its Flink name,
``streamflow_<scope>_<name>``, including the counters: as Flink's own Prometheus
reporter does, so the names stay Flink's (a Prometheus counter would gain ``_total``),
and ``rate()`` works on them all the same.

:func:`exposition` renders one scrape for an HTTP handler; the dashboard's server
serves it at ``/metrics`` (see :mod:`streamflow.web.server`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from streamflow.metrics.registry import MetricsRegistry

__all__ = ["JobCollector", "exposition"]


class JobCollector(Collector):
    """Collects one job's metrics at scrape time (see the module docstring)."""

    def __init__(self, registry: MetricsRegistry, *, max_age: float = 1.0) -> None:
        self._registry = registry
        self._max_age = max_age

    def collect(self) -> Iterator[Metric]:
        reading = self._registry.latest(self._max_age)
        for definition, series in reading.grouped():
            unit = f" [{definition.unit}]" if definition.unit else ""
            family = GaugeMetricFamily(
                definition.prometheus_name,
                f"{definition.help}{unit} ({definition.kind.value})",
                labels=list(definition.labels),
            )
            for s in series:
                family.add_metric(list(s.labels), s.value)
            yield family


def collector_registry(registry: MetricsRegistry) -> CollectorRegistry:
    """A prometheus_client registry holding only this job's collector."""
    target = CollectorRegistry(auto_describe=False)
    target.register(JobCollector(registry))
    return target


def exposition(target: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """One scrape: the body and its content type, in the format ``accept`` asks for
    (Prometheus' text format, or OpenMetrics when the scraper prefers it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(target), content_type
