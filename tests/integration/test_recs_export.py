"""``cartwise recs export``: batch recommendations from a trained model on a seeded store."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.schema import Product
from engine.events import MessageBus
from engine.recommend.schema import Recommendation as RecommendationRow
from serving.cli import app
from tests.servers import seeded_store_and_recommender

pytestmark = pytest.mark.integration
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_RECS", "redis://127.0.0.1:6379/9")
REASONS = {"personalized", "similar", "trending", "promoted"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    from training.demo.seed import SeedConfig
    from training.recommend.als import AlsParams

    data = tmp_path_factory.mktemp("recs-export")
    url = f"sqlite:///{data / 'cartwise.db'}"
    model = seeded_store_and_recommender(
        url,
        data / "model",
        seed=SeedConfig(seed=8, customers=80, products=40, merchants=2, days=10),
        als=AlsParams(factors=8, iterations=4, alpha=5.0),
    )
    return data, url, model


@pytest.fixture
def env(store: tuple[Path, str, Path], flushed_redis: Callable[[str], Any]) -> Any:
    data, url, model = store
    with flushed_redis(URL):
        yield {
            "CARTWISE_DATA_DIR": str(data),
            "CARTWISE_DATABASE_URL": url,
            "CARTWISE_REDIS_URL": URL,
            "CARTWISE_RECS_MODEL": str(model),
            "CARTWISE_LOG_LEVEL": "WARNING",
        }


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["recs", "export", *args], env=env)


def _shown(url: str) -> int:
    db = Database(url)
    try:
        with db.transaction(readonly=True) as s:
            return int(s.scalar(select(func.count()).select_from(RecommendationRow)) or 0)
    finally:
        db.dispose()


def test_every_customer_gets_ranked_catalogue_items(env: dict[str, str], tmp_path: Path) -> None:
    url = env["CARTWISE_DATABASE_URL"]
    shown_before = _shown(url)
    out = tmp_path / "recs.parquet"
    result = run(env, "--out", str(out), "--k", "5")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    db = Database(url)
    try:
        customers = Catalog(db, MessageBus()).customer_ids()
        with db.transaction(readonly=True) as s:
            skus = set(s.scalars(select(Product.sku)))
    finally:
        db.dispose()
    assert summary["customers"] == len(customers) >= 80  # the seed adds a few of its own
    got = pd.read_parquet(out)
    assert summary["rows"] == len(got) and 0 < len(got) <= 5 * len(customers)
    assert list(got["customer_id"].drop_duplicates()) == customers
    for _, rows in got.groupby("customer_id"):
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        assert rows["sku"].is_unique
    assert set(got["sku"]) <= skus and set(got["reason"]) <= REASONS
    assert (got["reason"] == "personalized").any()
    assert set(got["model_version"]) == {summary["model_version"]}
    assert set(got["widget"]) == {"home"}
    assert _shown(url) == shown_before  # an export is not an exposure


def test_a_customer_file_chooses_who_and_in_what_order(env: dict[str, str], tmp_path: Path) -> None:
    wanted = tmp_path / "who.csv"
    pd.DataFrame({"customer_id": ["new-shopper", "", "new-shopper"]}).to_csv(wanted, index=False)
    out = tmp_path / "recs.csv.gz"
    result = run(env, "--customers", str(wanted), "--out", str(out), "--k", "3")
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out)
    assert set(got["customer_id"]) == {"new-shopper"} and len(got) == 3
    assert set(got["reason"]) <= {"trending", "promoted"}  # no history: the cold-start fill


def test_bad_requests_exit_2_naming_the_option(env: dict[str, str], tmp_path: Path) -> None:
    no_column = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["a"]}).to_csv(no_column, index=False)
    cases = [
        (env, ["--out", str(tmp_path / "x.json")], "(out)"),
        (env, ["--widget", "nope", "--out", str(tmp_path / "x.csv")], "(widget)"),
        (env, ["--k", "500", "--out", str(tmp_path / "x.csv")], "(k)"),
        (env, ["--customers", str(no_column), "--out", str(tmp_path / "x.csv")], "(customers)"),
        (
            env | {"CARTWISE_RECS_MODEL": "champion"},  # an empty registry
            ["--out", str(tmp_path / "x.csv")],
            "(model)",
        ),
    ]
    for environment, args, field in cases:
        result = run(environment, *args)
        assert result.exit_code == 2, (args, result.output)
        assert field in result.output, (args, result.output)
    assert not any(p.name.startswith("x.") for p in tmp_path.iterdir())
