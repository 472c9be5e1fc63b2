"""Scale-out: one job on several worker processes, with Kafka topics between them.

A job runs as N workers with the same program and graph; each checkpoints on its own,
and records that change worker travel through exchange topics written exactly once.
The parts, each a module of its own:

- :mod:`.layout`: global subtask indices, and which exchange partitions and key groups
  each worker and subtask owns (pure arithmetic);
- :mod:`.exchange`: an exchange as plain data (topic, partitioning, who writes), and the
  factory protocol the Kafka connector implements;
- :mod:`.rewrite`: a worker's job graph, with redistributing edges cut into exchanges;
- :mod:`.fingerprint` and :mod:`.manifest`: what the workers of a job must agree on, the
  checks that refuse a misconfigured worker at start-up, and the per-index lock;
- :mod:`.savepoint_set`: one savepoint per worker as one set, and what each of M new
  workers restores from a set written by N;
- :mod:`.placement`: restored snapshots laid out by global subtask, for the restore code;
- :mod:`.supervisor`: N local worker processes started, signalled and restarted.
"""

from streamflow.workers.exchange import ExchangeFactory, ExchangeSpec, exchange_topic_name, exchange_uids
from streamflow.workers.layout import WorkerLayout, check_exchange_partitions
from streamflow.workers.rewrite import rewrite_for_workers

__all__ = [
    "ExchangeFactory",
    "ExchangeSpec",
    "WorkerLayout",
    "check_exchange_partitions",
    "exchange_topic_name",
    "exchange_uids",
    "rewrite_for_workers",
]
