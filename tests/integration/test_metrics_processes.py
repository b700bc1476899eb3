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
