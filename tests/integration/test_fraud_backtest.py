"""`cartwise fraud backtest` on a slice of the public fraud benchmark (files, XGBoost)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.fraud.inputs import INPUTS
from engine.fraud.model import FraudModel, ModelError
from serving.cli import app
from tests.datasets import handbook_slice

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def slice_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every transaction of one customer in eight, June to mid-August 2018 (~30k rows)."""
    directory = tmp_path_factory.mktemp("fraud")
    return handbook_slice(directory, customers_every=8, start="2018-06-01", end="2018-08-15")


def test_backtest_learns_and_writes_one_score_per_test_transaction(
    slice_csv: Path, tmp_path: Path
) -> None:
    scores = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app,
        [
            "fraud",
            "backtest",
            "--transactions",
            str(slice_csv),
            "--train-start",
            "2018-07-25",
            "--train-days",
            "7",
            "--delay-days",
            "7",
            "--test-days",
            "7",
            "--folds",
            "2",
            "--scores-out",
            str(scores),
            "--model-out",
            str(tmp_path / "model"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # a floor that a broken pipeline (shuffled labels, leaking or missing features) fails
    assert report["roc_auc"] > 0.80
    assert report["average_precision"] > 0.35
    assert report["test_frauds"] > 10
    assert len(report["validation"]) >= 2
    written = pd.read_csv(scores)
    assert list(written.columns) == ["transaction_id", "score"]
    assert len(written) == report["test_transactions"]
    assert written.score.between(0, 1).all()
    test = pd.read_csv(slice_csv)
    test = test[(test.timestamp >= "2018-08-08") & (test.timestamp < "2018-08-15")]
    assert set(written.transaction_id) <= set(test.transaction_id)
    assert len(test) - len(written) == report["removed_known_compromised"]
    # the exported ONNX model gives XGBoost's probabilities (checked at export, and here again)
    assert report["model"]["onnx_max_abs_diff"] <= 1e-5
    model = FraudModel.load(tmp_path / "model")
    assert model.version == report["model"]["version"]
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["inputs"] == list(INPUTS)
    assert meta["metrics"]["roc_auc"] == pytest.approx(report["roc_auc"])


def test_a_model_trained_on_other_inputs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps({"version": "x", "inputs": ["amount"]}))
    with pytest.raises(ModelError):
        FraudModel.load(tmp_path)


def test_backtest_names_the_bad_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "transaction_id,timestamp,customer_id,terminal_id,amount\n"
        "1,2018-07-25T00:00:00,1,2,not-a-number\n"
    )
    result = CliRunner().invoke(
        app, ["fraud", "backtest", "--transactions", str(bad), "--train-start", "2018-07-25"]
    )
    assert result.exit_code == 2
    assert "amount" in result.output
