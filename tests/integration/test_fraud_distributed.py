"""`cartwise fraud train --ray-workers 2`: every fit runs data-parallel on two Ray workers of a
local Ray that the command starts and stops in its own process (so the test session's Ray, if
it runs one, is never touched), and the model is registered like any other.

Quality tolerance, measured on this slice's four siblings (customers ``% 4 == k``, the same
windows and parameters): two Ray workers against one process differed by 0.002-0.011 ROC AUC and
0.001-0.018 average precision, while one-process fits alone, over eight random seeds, spread by
0.007-0.012 (AUC) and 0.006-0.018 (AP) standard deviation.  The bounds below are about three of
those deviations.  That the workers trained one model, not one each, is checked at every fit
(``RayFitter`` compares their trees).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.errors import Unavailable, ValidationError
from engine.fraud.model import FraudModel
from features.offline import load_table
from serving.cli import app
from tests.datasets import handbook_slice
from training.fraud.distributed import ray_fitter
from training.fraud.registry import ModelRegistry
from training.fraud.train import TrainResult, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PARAMS = {"n_estimators": 100, "max_depth": 4, "learning_rate": 0.1}
WINDOWS = {"train_days": 14, "folds": 1}  # test 7 days, delay 7, one validation fold
AUC_TOLERANCE, AP_TOLERANCE = 0.03, 0.05


@pytest.fixture(scope="module")
def slice_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One customer in four, July to mid-August 2018 (~108k transactions, ~34k to train on)."""
    directory = tmp_path_factory.mktemp("fraud-ray")
    return handbook_slice(directory, customers_every=4, start="2018-07-01", end="2018-08-15")


@pytest.fixture(scope="module")
def in_one_process(slice_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    root = tmp_path_factory.mktemp("registry-local")
    registry = ModelRegistry(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", "local")
    return train(load_table(slice_csv), registry=registry, grid=[PARAMS], **WINDOWS)


def _cartwise(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CARTWISE_", "RAY_"))},
        "CARTWISE_DATA_DIR": str(data_dir),
        "CARTWISE_MLFLOW_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
    }
    cartwise = Path(sys.executable).with_name("cartwise")
    return subprocess.run(  # our own venv's CLI, fixed arguments
        [str(cartwise), *args],
        env=env,
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_training_on_two_ray_workers_registers_a_model_as_good_as_one_process(
    slice_csv: Path, in_one_process: TrainResult, tmp_path: Path
) -> None:
    args = ["fraud", "train", "--transactions", str(slice_csv), "--params", json.dumps(PARAMS)]
    args += ["--train-days", "14", "--folds", "1", "--ray-workers", "2"]
    done = _cartwise(args, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["version"] == "1" and summary["promoted"] is True
    assert summary["protocol"] == in_one_process.summary()["protocol"]

    registry = ModelRegistry(
        f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts", "cartwise-fraud"
    )
    champion = registry.champion()
    assert champion is not None and champion.version == "1"
    params = registry.client.get_run(champion.run_id).data.params
    assert (params["fit.backend"], params["fit.workers"]) == ("ray", "2")
    assert params["fit.ray_address"] == "local" and params["xgboost.max_depth"] == "4"
    assert FraudModel.load(registry.fetch("1", tmp_path / "models")).version == "1"

    ray, here = summary["metrics"], in_one_process.metrics
    assert ray["test_transactions"] == here["test_transactions"]  # the same test rows
    assert ray["onnx_max_abs_diff"] <= 1e-5
    assert abs(ray["roc_auc"] - here["roc_auc"]) <= AUC_TOLERANCE, (ray, here)
    assert abs(ray["average_precision"] - here["average_precision"]) <= AP_TOLERANCE, (ray, here)
    assert here["roc_auc"] > 0.75 and here["average_precision"] > 0.25  # the reference learnt


def test_a_ray_address_without_workers_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tx.csv").write_text("transaction_id,timestamp,amount\n1,2018-07-01,3.5\n")
    args = ["fraud", "train", "--transactions", str(tmp_path / "tx.csv")]
    result = CliRunner().invoke(app, [*args, "--ray-address", "10.0.0.1:6380"])
    assert result.exit_code == 2
    assert "--ray-address needs --ray-workers" in result.output


def test_an_unreachable_or_client_address_fails_before_ray_is_touched() -> None:
    """Raised before ``ray.init`` (and before this process's own Ray, if any, is looked at):
    Ray itself would retry an unreachable address for many minutes."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable) as err, ray_fitter(2, f"127.0.0.1:{port}"):
        pass
    assert err.value.field == "ray_address" and "cannot reach" in err.value.message
    with pytest.raises(ValidationError) as refused, ray_fitter(2, "ray://10.0.0.1:10001"):
        pass
    assert refused.value.field == "ray_address"
