"""The `/metrics` of a run on a cluster: the shards' metrics added up. Each shard writes its
own in the text format (RUN/shards/<k>/metrics.prom, every few seconds and at its end); at
scrape time the driver reads them and sums every sample with the same name and labels:
counters, gauges (in flight and caps: the whole run's), histogram buckets, sums and counts. So
the names, labels and dashboard are a single run's. The run's status and elapsed time are the
driver's own, beside how many shards are done and running."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gristmill.cluster.worker import METRICS_FILE

if TYPE_CHECKING:
    from gristmill.cluster.driver import ClusterRun

THE_DRIVERS = ("gristmill_run_status", "gristmill_run_elapsed_seconds")

Key = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels


class ClusterCollector(Collector):
    def __init__(self, driver: ClusterRun) -> None:
        self.driver = driver

    def collect(self) -> Iterator[Metric]:
        driver = self.driver
        outcome = driver.outcome
        status = GaugeMetricFamily("gristmill_run_status", "1, labelled with the run's status "
                                   "and, once it ended, its stop reason",
                                   labels=["status", "stop_reason"])
        status.add_metric([outcome.status, outcome.stop_reason] if outcome else ["running", ""], 1)
        yield status
        yield GaugeMetricFamily("gristmill_run_elapsed_seconds", "time since the run started",
                                value=driver.elapsed)
        shards = GaugeMetricFamily("gristmill_cluster_shards", "the run's shards, by state",
                                   labels=["state"])
        done = sum(1 for s in list(driver.summaries.values())  # a copy: the loop adds
                   if s.get("stop_reason") == "complete")
        for state, n in (("done", done), ("running", len(driver.live)),
                         ("total", driver.shards)):
            shards.add_metric([state], n)
        yield shards
        yield GaugeMetricFamily("gristmill_cluster_worker_restarts", "shards run again after "
                                "their worker or node was lost", value=driver.restarts)
        yield from summed(driver.shard_dir(k) / METRICS_FILE for k in range(driver.shards))


def summed(paths: Iterator) -> Iterator[Metric]:  # type: ignore[type-arg]
    """The metric families of the files, every sample added up across them."""
    kinds: dict[str, tuple[str, str]] = {}  # family -> (type, documentation)
    values: dict[str, dict[Key, float]] = defaultdict(lambda: defaultdict(float))
    for path in paths:
        try:
            text = path.read_text()
        except FileNotFoundError:  # a shard not started yet
            continue
        for family in text_string_to_metric_families(text):
            if family.name in THE_DRIVERS:
                continue
            kinds.setdefault(family.name, (family.type, family.documentation))
            for sample in family.samples:
                if sample.name.endswith("_created"):  # a timestamp: not a sum
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                values[family.name][key] += sample.value
    for name, (kind, doc) in kinds.items():
        metric = Metric(name, doc, kind)
        for (sample, labels), value in values[name].items():
            metric.add_sample(sample, dict(labels), value)
        yield metric
