"""The job's metrics: read on demand from the running job, under Flink's names.

- :mod:`~streamflow.metrics.snapshot`: ``job_metrics(execution)``, everything read now
  from tasks, channels, operators, connectors and the coordinator (``JobClient.metrics()``).
- :mod:`~streamflow.metrics.definitions`: every metric declared once (name, scope and
  labels, kind, unit, help), and the ``metrics()`` hook sources and sinks may implement.
- :mod:`~streamflow.metrics.registry`: readings of those metrics with per-second rates
  (``JobClient.metrics_registry``).
- :mod:`~streamflow.metrics.prometheus`: the Prometheus collector, read at scrape time.
- :mod:`~streamflow.metrics.layout` and :mod:`~streamflow.metrics.history`: the job graph
  and the chart history the dashboard shows.
"""
