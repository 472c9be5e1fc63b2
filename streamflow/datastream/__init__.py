"""The DataStream API: declare a pipeline on a StreamEnvironment, run it, watch it.

:mod:`~streamflow.datastream.environment` (``StreamEnvironment``: configuration,
sources, ``execute``), :mod:`~streamflow.datastream.stream` (``DataStream``,
``KeyedStream`` and the broadcast streams: each method appends one node to the job
graph) and :mod:`~streamflow.datastream.client` (``JobClient``: a running job). It sits
on top of everything else: it builds the graph and hands the plan to the runtime. What a
user implements (functions, sources, sinks) is declared below it, in
:mod:`streamflow.api`.
"""
