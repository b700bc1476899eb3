"""``cartwise features list`` and ``cartwise features export`` (point-in-time features for
training) from files and from a seeded commerce database."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from engine.commerce.db import Database
from features.definitions import Source
from features.offline import feature_names
from serving.cli import app

pytestmark = pytest.mark.integration
# the export reads no Redis key; bootstrap only connects
URL = os.environ.get("CARTWISE_TEST_REDIS_URL_STORE", "redis://127.0.0.1:6379/12")
DAY0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        app, ["features", *args], env={"CARTWISE_LOG_LEVEL": "WARNING"} | (env or {})
    )


def _transactions(path: Path) -> Path:
    """Customer c1 pays three times within an hour; merchant m1's first payment (a fraud) is
    followed a week later by c2's."""
    rows = [
        ("t1", DAY0, "c1", "m1", 10.00, 1),
        ("t2", DAY0 + timedelta(minutes=1), "c1", "m2", 2.50, 0),
        ("t3", DAY0 + timedelta(minutes=30), "c1", "m2", 7.25, 0),
        ("t4", DAY0 + timedelta(days=7, hours=6), "c2", "m1", 40.00, 0),
    ]
    frame = pd.DataFrame(
        rows,
        columns=["transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "is_fraud"],
    )
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame.to_csv(path, index=False)
    return path


def test_list_prints_every_view_and_the_json_catalogue(tmp_path: Path) -> None:
    table = run("list", "--source", "interaction")
    assert table.exit_code == 0, table.output
    assert "session_activity" in table.output and "customer_txn" not in table.output
    listed = run("list", "--json")
    assert listed.exit_code == 0, listed.output
    views = json.loads(listed.stdout)["views"]
    names = [f["name"] for v in views for f in v["features"]]
    assert names == feature_names(Source.TRANSACTION) + feature_names(Source.INTERACTION)
    assert run("list", "--source", "planet").exit_code == 2


@pytest.mark.parametrize("suffix", [".parquet", ".csv.gz"])
def test_export_gives_each_row_its_features_as_of_its_time(tmp_path: Path, suffix: str) -> None:
    source = _transactions(tmp_path / "tx.csv")
    out = tmp_path / f"features{suffix}"
    result = run("export", "--transactions", str(source), "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 4 and summary["features"] == len(feature_names(Source.TRANSACTION))
    got = (
        pd.read_parquet(out)
        if suffix == ".parquet"
        else pd.read_csv(out, dtype={"transaction_id": str})
    )
    assert list(got.columns[:6]) == [
        "transaction_id",
        "timestamp",
        "customer_id",
        "terminal_id",
        "amount",
        "is_fraud",
    ]
    assert got["transaction_id"].tolist() == ["t1", "t2", "t3", "t4"]
    # before each payment, not counting it
    assert got["customer_txn.txn_count_1h"].tolist() == [0, 1, 2, 0]
    assert got["customer_txn.amount_sum_1h"].tolist() == [0, 10.0, 12.5, 0]
    assert got["customer_txn.amount_mean_1h"].tolist() == [0, 10.0, 6.25, 0]
    # t1 is fraud, reported 7 days later (the default delay): known at t4
    assert got["merchant_txn.fraud_7d_delay7d_count"].tolist()[3] == 1
    assert got["merchant_txn.fraud_7d_delay7d_frauds"].tolist()[3] == 1


def test_export_counts_a_label_only_once_it_was_reported(tmp_path: Path) -> None:
    source = _transactions(tmp_path / "tx.csv")
    labels = tmp_path / "labels.csv"
    late = (DAY0 + timedelta(days=9)).isoformat()
    pd.DataFrame({"transaction_id": ["t1"], "reported_at": [late]}).to_csv(labels, index=False)
    out = tmp_path / "features.parquet"
    result = run(
        "export", "--transactions", str(source), "--labels", str(labels), "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(out)
    assert got["merchant_txn.fraud_7d_delay7d_count"].tolist()[3] == 1
    assert got["merchant_txn.fraud_7d_delay7d_frauds"].tolist()[3] == 0


def test_export_refuses_bad_requests_naming_the_option(tmp_path: Path) -> None:
    source = _transactions(tmp_path / "tx.csv")
    cases = [
        (["--transactions", str(source), "--out", str(tmp_path / "x.json")], "(out)"),
        (["--interactions", str(source), "--out", str(tmp_path / "x.csv")], "(event_id)"),
        (
            [
                "--interactions",
                str(source),
                "--labels",
                str(source),
                "--out",
                str(tmp_path / "x.csv"),
            ],
            "(labels)",
        ),
        (
            [
                "--transactions",
                str(source),
                "--as-of",
                "2026-01-01T00:00Z",
                "--out",
                str(tmp_path / "x.csv"),
            ],
            "(as_of)",
        ),
        (["--as-of", "2026-01-01", "--out", str(tmp_path / "x.csv")], "(as_of)"),
    ]
    for args, field in cases:
        result = run("export", *args)
        assert result.exit_code == 2, (args, result.output)
        assert field in result.output, (args, result.output)
    assert not any(p.name.startswith("x.") for p in tmp_path.iterdir())


END = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A demo store of 10 days ending at ``END`` (SQLite); the export's environment."""
    from training.demo.seed import SeedConfig, seed_store

    data = tmp_path_factory.mktemp("data")
    db = Database(f"sqlite:///{data / 'cartwise.db'}")
    db.migrate()
    seed_store(db, SeedConfig(seed=3, customers=60, products=20, merchants=4, days=10, end=END))
    db.dispose()
    return {"CARTWISE_DATA_DIR": str(data), "CARTWISE_DATABASE_URL": "", "CARTWISE_REDIS_URL": URL}


def test_export_replays_the_commerce_database_as_of_a_time(
    tmp_path: Path, seeded: dict[str, str]
) -> None:
    env = seeded
    full, half = tmp_path / "all.parquet", tmp_path / "half.parquet"
    as_of = (END - timedelta(days=5)).isoformat()
    assert run("export", "--out", str(full), env=env).exit_code == 0
    result = run("export", "--as-of", as_of, "--out", str(half), env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"] == "commerce-db"
    everything, earlier = pd.read_parquet(full), pd.read_parquet(half)
    assert 0 < len(earlier) < len(everything)
    assert (pd.to_datetime(earlier["timestamp"], utc=True) <= pd.Timestamp(as_of)).all()
    # the same payments have the same features: later history does not leak backwards
    cols = feature_names(Source.TRANSACTION)
    head = everything.set_index("transaction_id").loc[earlier["transaction_id"], cols]
    pd.testing.assert_frame_equal(
        head.reset_index(drop=True), earlier[cols].reset_index(drop=True), check_dtype=False
    )
    first = everything.sort_values("timestamp").groupby("customer_id").head(1)
    assert (first["customer_txn.txn_count_30d"] == 0).all()


def test_export_gives_the_databases_storefront_events_their_features(
    tmp_path: Path, seeded: dict[str, str]
) -> None:
    """``--storefront``: every storefront event and order line of the database with the
    interaction features, the same numbers as the same rows exported from a file."""
    from sqlalchemy import func, select

    from engine.commerce.schema import Interaction, OrderLine

    full, half = tmp_path / "all.parquet", tmp_path / "half.parquet"
    result = run("export", "--storefront", "--out", str(full), env=seeded)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["source"] == "commerce-db:storefront"
    everything = pd.read_parquet(full)
    db = Database(f"sqlite:///{Path(seeded['CARTWISE_DATA_DIR']) / 'cartwise.db'}")
    with db.transaction(readonly=True) as s:
        events = s.scalar(select(func.count()).select_from(Interaction))
        lines = s.scalar(select(func.count()).select_from(OrderLine))
    db.dispose()
    assert events > 0 and lines > 0
    assert len(everything) == summary["rows"] == events + lines
    assert everything["event_id"].str.startswith("order:").sum() == lines
    cols = feature_names(Source.INTERACTION)
    assert summary["features"] == len(cols) and set(cols) <= set(everything.columns)
    assert everything["sku_activity.views_1d"].max() > 0

    # the same rows from a file: the same features
    source = tmp_path / "events.csv"
    everything.drop(columns=cols).to_csv(source, index=False)
    again = tmp_path / "again.parquet"
    assert run("export", "--interactions", str(source), "--out", str(again)).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(again)[cols], everything[cols], check_dtype=False)

    # as of an earlier time: earlier rows only, with the features they had then
    as_of = (END - timedelta(days=5)).isoformat()
    result = run("export", "--storefront", "--as-of", as_of, "--out", str(half), env=seeded)
    assert result.exit_code == 0, result.output
    earlier = pd.read_parquet(half)
    assert 0 < len(earlier) < len(everything)
    assert (pd.to_datetime(earlier["timestamp"], utc=True) <= pd.Timestamp(as_of)).all()
    head = everything.set_index("event_id").loc[earlier["event_id"], cols]
    pd.testing.assert_frame_equal(
        head.reset_index(drop=True), earlier[cols].reset_index(drop=True), check_dtype=False
    )

    refused = run("export", "--storefront", "--interactions", str(source), "--out", str(half))
    assert refused.exit_code == 2 and "(storefront)" in refused.output
