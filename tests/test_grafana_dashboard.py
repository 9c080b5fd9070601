"""The Grafana dashboard in docs/ uses only metrics the web app or a worker exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support import make_task
from tests.web_support import api_client
from worker import WorkerQueue
from worker.runtime.process_metrics import ProcessMetrics

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "worker-queue.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def _exported(families: object) -> set[str]:
    names = set()
    for family in families:  # type: ignore[attr-defined]
        suffixes = _SUFFIXES.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


def _used() -> set[str]:
    document = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in document["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in document["templating"]["list"] if v["type"] == "query"]
    return {name for expr in exprs for name in re.findall(r"\bworker_queue_\w+", expr)}


async def test_every_metric_the_dashboard_uses_is_exported(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task()])
    async with api_client(queue) as client:
        text = (await client.get("/metrics")).text
    web = _exported(text_string_to_metric_families(text))
    worker = _exported(ProcessMetrics().registry.collect())
    used = _used()
    assert len(used) >= 15
    assert used - (web | worker) == set()
    assert used & worker
    assert used & web
