"""Scale-out: one job on several worker processes, with Kafka topics between them.

A job runs as N workers with the same program and graph; each checkpoints on its own,
and records that change worker travel through exchange topics written exactly once.
This package holds what a worker does at start-up and what runs the workers; the parts
lower layers need live there:

- :mod:`streamflow.partitioning.workers`: global subtask indices, and which exchange
  partitions and key groups each worker and subtask owns (pure arithmetic);
- :mod:`streamflow.api.exchange`: an exchange as plain data, and the factory protocol a
  connector implements (the Kafka one: ``streamflow.connectors.kafka.KafkaExchange``);
- :mod:`streamflow.savepoint.sets`: one savepoint per worker as one set, and what each
  of M new workers restores from a set written by N.

Here:

- :mod:`.rewrite`: a worker's job graph, with redistributing edges cut into exchanges;
- :mod:`.fingerprint` and :mod:`.manifest`: what the workers of a job must agree on, the
  checks that refuse a misconfigured worker at start-up, and the per-index lock;
- :mod:`.supervisor`: N local worker processes started, signalled and restarted.
"""

from streamflow.workers.rewrite import rewrite_for_workers

__all__ = ["rewrite_for_workers"]
