"""The command line's worker options: local workers get ports of their own."""

from __future__ import annotations

from streamflow.cli import _ports_of_worker, parser


def test_local_workers_serve_their_dashboard_and_metrics_on_ports_of_their_own() -> None:
    argv = ["run", "mod:build", "--workers", "3", "--web-port", "8080", "--metrics-port", "0"]
    args = parser().parse_args(argv)
    for index in range(3):
        worker = parser().parse_args([*argv, *_ports_of_worker(args, index), "--worker-index", str(index)])
        assert (worker.web_port, worker.metrics_port, worker.worker_index) == (8080 + index, 0, index)
