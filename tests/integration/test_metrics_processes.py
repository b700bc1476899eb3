"""serving/metrics.py across processes: what several API processes count, one scrape adds up
(prometheus-client's multiprocess mode, as Serve replicas and uvicorn workers run it)."""

from __future__ import annotations

import os
import subprocess  # nosec B404
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving import metrics

pytestmark = pytest.mark.integration
COUNT = (
    "from serving.metrics import FRAUD_DECISIONS, HTTP_DURATION\n"
    "for _ in range({n}):\n"
    "    FRAUD_DECISIONS.labels('review', 'elevated', '7', 'false').inc()\n"
    "    HTTP_DURATION.labels('POST', '/v1/fraud/score').observe(0.003)\n"
)
SCRAPE = (
    "import sys\nfrom serving.metrics import exposition\nsys.stdout.write(exposition().decode())\n"
)


def _python(code: str, directory: Path) -> str:
    env = {**os.environ, metrics.ENV: str(directory)}
    done = subprocess.run(  # nosec B603
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def _value(text: str, name: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    )


def test_one_scrape_adds_up_every_process_and_a_new_run_starts_from_zero(tmp_path: Path) -> None:
    directory = Path(metrics.prepare(tmp_path / "metrics"))
    for n in (2, 3):  # two processes that have exited, like replaced replicas
        _python(COUNT.format(n=n), directory)
    assert len(list(directory.glob("*.db"))) >= 2  # one file per process and metric type
    text = _python(SCRAPE, directory)
    assert _value(text, "cartwise_fraud_decisions_total") == 5
    assert _value(text, "cartwise_http_request_duration_seconds_count") == 5
    bucket = 'cartwise_http_request_duration_seconds_bucket{le="0.005",method="POST"'
    assert bucket in text

    metrics.prepare(directory)  # a new deployment on this machine
    assert _value(_python(SCRAPE, directory), "cartwise_fraud_decisions_total") == 0


HEAP = (
    "import gc\n"
    "import serving.api.app  # an API process's imports\n"
    "from serving import heap\n"
    "heap.ready()\n"
    "assert gc.get_freeze_count() > 50_000, gc.get_freeze_count()\n"
    "assert gc.get_count()[2] == 0  # nothing left for a full collection but new objects\n"
    "for _ in range(3):\n"
    "    gc.collect(1)\n"
    "gc.collect(2)\n"
    "heap.watch()  # once per process: a second call adds no second callback\n"
    "gc.collect(0)  # generation 0 is not timed\n"
)


def test_an_api_process_freezes_its_startup_heap_and_times_its_collections(
    tmp_path: Path,
) -> None:
    directory = Path(metrics.prepare(tmp_path / "metrics"))
    _python(HEAP, directory)
    text = _python(SCRAPE, directory)
    by_generation = {
        s.labels["generation"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "cartwise_gc_pause_seconds_count"
    }
    assert by_generation["1"] >= 3 and by_generation["2"] >= 1, text
    assert "0" not in by_generation
