"""The public test kit, for your own tests as for the project's.

- :mod:`~streamflow.testing.connectors`: the connector contract as checks to run against
  your own source or sink (``check_replayable_source``, ``check_exactly_once_sink``);
- :mod:`~streamflow.testing.windows`: ``WindowHarness``, a window operator driven by hand;
- :mod:`~streamflow.testing.kafka` and :mod:`~streamflow.testing.mysql`: topics, tables
  and read-backs on a real broker and database, independent of streamflow's connectors;
- :mod:`~streamflow.testing.slow_sink`: ``SlowSink``, a sink slow on purpose, to make
  backpressure to look at.
"""
