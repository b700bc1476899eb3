"""``cartwise pricing …`` on a real SQLite store and Redis: rules files, reprice, elasticity
fits from a sales file, the simulator."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from serving.cli import app
from training.pricing.simulator import make_market, simulate_history

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_PRICING", "redis://127.0.0.1:6379/6")


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flushed_redis: Callable[[str], Any]
) -> Any:
    monkeypatch.setenv("CARTWISE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CARTWISE_REDIS_URL", URL)
    monkeypatch.setenv("CARTWISE_LOG_LEVEL", "WARNING")
    with flushed_redis(URL) as client:
        yield client


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["pricing", *args])


def test_a_rules_file_is_applied_whole_or_refused(env: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  x: {strategy: competitor, params: {action: crush}}\n")
    result = run("rules", "--load", str(bad))
    assert result.exit_code == 2
    assert "rules.x.params.action" in result.output
    good = tmp_path / "good.yaml"
    good.write_text("guardrails: {charm: '.95'}\nrules:\n  x: {strategy: demand, priority: 7}\n")
    result = run("rules", "--load", str(good))
    assert result.exit_code == 0, result.output
    assert "charm: '.95'" in result.output and "priority: 7" in result.output


def test_reprice_dry_run_on_an_empty_store(env: Any) -> None:
    result = run("reprice", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["evaluated"] == 0
    result = run("reprice", "--sku", "NOPE")
    assert result.exit_code == 2 and "skus[0]" in result.output


def test_fit_elasticity_from_a_sales_file_is_stored_and_shown(env: Any, tmp_path: Path) -> None:
    market = make_market(n_skus=60, n_categories=3, seed=4)
    path = tmp_path / "sales.csv"
    simulate_history(market, 90, seed=4).to_csv(path, index=False)
    result = run("fit-elasticity", "--sales", str(path), "--json")
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.output)
    categories = [e for e in fitted["estimates"] if e["level"] == "category"]
    assert len(categories) == 3 and all(e["status"] == "ok" for e in categories)
    shown = run("elasticities", "--level", "category")
    assert shown.exit_code == 0 and fitted["fit_id"] in shown.output


def test_simulate_prints_the_share_of_the_oracle(env: Any) -> None:
    result = run("simulate", "--skus", "60", "--categories", "3")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["share_of_oracle"] >= 0.9
