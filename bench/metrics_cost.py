"""What watching a job costs: pipeline (a) of throughput.py with and without metrics.

Variants, on the same in-memory records (``throughput.py``'s ~100-byte JSON records),
parallelism 1, checkpointing off, run alternately (the order flips every round, so drift
hits both alike), the median of ``--repeats`` runs each:

- plain: source -> map(parse, transform, serialise) -> counting sink;
- served: the same job with the Prometheus endpoint (``set_metrics_port``) and the
  dashboard (``set_web_ui``, which samples the metrics every second) on, nobody asking;
- observed: served, and a separate process that, every second, scrapes ``/metrics`` and
  fetches what the dashboard page fetches (``/api/job``, ``/api/metrics``,
  ``/api/checkpoints``, ``/api/history``), as a Prometheus server and an open page would.

The goal: observed / plain >= 0.97 (metrics cost at most 3%), as the ratio of the
medians; the median of the per-round ratios is printed too (the variants of one round
run back to back, so a round's ratio sees one machine load). On a machine with few
cores the scraping process takes CPU from the job too; served / plain shows the job's own
share. A run must last several
seconds for the per-second work to show: the scraper reports how many rounds it made,
and a run with fewer rounds than its whole seconds less one (the scraper's start) is
marked unproven.

Usage: python3 bench/metrics_cost.py [--records N] [--repeats R]
(the defaults, 5 M records and 5 rounds, take about 5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamflow  # noqa: E402
from throughput import BenchSource, CountingSink, make_records, transform  # noqa: E402

GOAL = 0.97


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    scrape_rounds: int | None = None  # None: not observed


def run_job(source: BenchSource, batch: int, variant: str) -> Run:
    observed = variant == "observed"

    async def job() -> Run:
        env = streamflow.StreamEnvironment(parallelism=1).set_source_batch_size(batch)
        if variant != "plain":
            env.set_metrics_port(0).set_web_ui(0)
        sink = CountingSink()
        env.from_source(source, name="bench-source").map(transform).sink_to(sink)
        client = env.execute_async("bench-a")
        scraper = None
        if observed:
            assert client.metrics_url is not None and client.web_url is not None
            scraper = subprocess.Popen(
                [sys.executable, __file__, "--scrape", client.metrics_url, client.web_url],
                stdout=subprocess.PIPE, text=True,
            )
        started = time.perf_counter()
        await client.wait()  # the job starts running here
        elapsed = time.perf_counter() - started
        rounds = None
        if scraper is not None:
            scraper.send_signal(signal.SIGTERM)
            out, _ = scraper.communicate(timeout=30)
            said = out.strip().splitlines()
            rounds = int(said[-1]) if said else 0  # stopped before it could count (a short run)
        if sink.count != source.count:
            raise RuntimeError(f"counted {sink.count} of {source.count} records")
        return Run(elapsed, rounds)

    return asyncio.run(job())


def scrape(metrics_url: str, web_url: str) -> None:
    """The scraper child: every second, one Prometheus scrape and one dashboard poll;
    on SIGTERM, print the number of rounds made and exit."""
    rounds = 0
    since = 0.0

    def stop(signum: int, frame: object) -> None:
        print(rounds, flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        started = time.monotonic()
        try:
            urllib.request.urlopen(metrics_url, timeout=5).read()
            for path in ("api/job", "api/metrics", "api/checkpoints"):
                urllib.request.urlopen(web_url + path, timeout=5).read()
            history = json.loads(urllib.request.urlopen(f"{web_url}api/history?since={since}", timeout=5).read())
            if history["points"]:
                since = history["points"][-1]["t"]
            rounds += 1
        except OSError:
            pass  # the job is starting or has ended
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--scrape", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scrape:
        scrape(*args.scrape)
        return
    records = make_records(args.records)
    source = BenchSource(records, len(records))
    warmup = BenchSource(records[:50_000], 50_000)
    variants = ["plain", "served", "observed"]
    for name in variants:
        run_job(warmup, args.batch_size, name)
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    for round_ in range(args.repeats):
        for name in variants if round_ % 2 == 0 else variants[::-1]:
            gc.collect()
            runs[name].append(run_job(source, args.batch_size, name))
    n = args.records
    print(f"\nmachine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}")
    print(f"records: {n:,}, batch {args.batch_size}, {args.repeats} runs each, alternated, parallelism 1\n")
    labels = {
        "plain": "(a) plain",
        "served": "(a) metrics + dashboard on, not scraped",
        "observed": "(a) metrics + dashboard, scraped every 1 s",
    }
    rows = []
    medians = {}
    for name, label in labels.items():
        rates = [n / r.seconds for r in runs[name]]
        medians[name] = statistics.median(rates)
        rounds = ", ".join(str(r.scrape_rounds) for r in runs[name] if r.scrape_rounds is not None)
        rows.append((label, f"{medians[name]:,.0f}", ", ".join(f"{x / 1e3:,.0f}k" for x in rates), rounds))
    header = ("variant", "median records/s", "runs (records/s)", "scrape rounds")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.rjust(w) if i == 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |")
    # a round's variants ran back to back, so their ratio sees the same machine load
    per_round = {
        name: [runs["plain"][i].seconds / runs[name][i].seconds for i in range(args.repeats)]
        for name in ("served", "observed")
    }
    print()
    for name in ("served", "observed"):
        ratios = ", ".join(f"{r:.3f}" for r in per_round[name])
        print(f"{name} / plain per round: {ratios}; median {statistics.median(per_round[name]):.3f}")
    served = medians["served"] / medians["plain"]
    print(f"\nserved / plain: {served:.3f} (cost {100 * (1 - served):+.1f}%): the job's own work, for information")
    ratio = medians["observed"] / medians["plain"]
    # the scraper starts with the job (an interpreter start): one round less is expected
    short = [r for r in runs["observed"] if r.scrape_rounds is not None and r.scrape_rounds < int(r.seconds) - 1]
    verdict = "met" if ratio >= GOAL else "NOT met"
    if short:
        verdict += f" (unproven: {len(short)} runs made fewer scrape rounds than seconds)"
    print(f"observed / plain: {ratio:.3f} (cost {100 * (1 - ratio):+.1f}%), goal >= {GOAL}: {verdict}")


if __name__ == "__main__":
    main()
