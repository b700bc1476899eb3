"""Export a trained XGBoost fraud model to ONNX, checked equal to the booster, with its trees as
arrays for per-decision reasons (``engine.fraud.explain``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb
from onnxmltools import convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType

from engine.fraud.explain import TreeArrays
from engine.fraud.inputs import INPUTS
from engine.fraud.model import FraudModel

TOLERANCE = 1e-5


def export(
    model: xgb.XGBClassifier,
    directory: Path,
    *,
    check_rows: npt.NDArray[np.float32],
    meta: dict[str, Any] | None = None,
) -> FraudModel:
    """Write ``model.onnx`` and ``model.json`` into ``directory``; raise if ONNX Runtime's
    probabilities on ``check_rows`` differ from XGBoost's by more than ``TOLERANCE``."""
    directory.mkdir(parents=True, exist_ok=True)
    booster = model.get_booster()
    booster.feature_names = None  # the converter wants f0, f1, …
    onnx_model = convert_xgboost(
        model, initial_types=[("inputs", FloatTensorType([None, len(INPUTS)]))], target_opset=15
    )
    (directory / "model.onnx").write_bytes(onnx_model.SerializeToString())
    trees = TreeArrays.from_xgboost_json(booster.save_raw("json"))
    _check_trees(trees, model, check_rows[:50])
    trees.save(directory)
    version = meta.get("version") if meta else None
    info = {
        "version": version or time.strftime("%Y%m%d%H%M%S"),
        "inputs": list(INPUTS),
        "params": model.get_params(),
        **(meta or {}),
    }
    info["inputs"] = list(INPUTS)
    (directory / "model.json").write_text(json.dumps(info, indent=2, default=str))
    loaded = FraudModel.load(directory)
    expected = model.predict_proba(check_rows)[:, 1]
    got = loaded.probabilities(check_rows)
    worst = float(np.max(np.abs(expected - got))) if len(got) else 0.0
    if worst > TOLERANCE:
        raise ValueError(f"ONNX differs from XGBoost by {worst:.2e} (> {TOLERANCE:g})")
    info["onnx_max_abs_diff"] = worst
    (directory / "model.json").write_text(json.dumps(info, indent=2, default=str))
    return FraudModel.load(directory)


def _check_trees(
    trees: TreeArrays, model: xgb.XGBClassifier, rows: npt.NDArray[np.float32]
) -> None:
    """Reasons are only honest if the tree arrays reproduce the model: contributions plus bias
    must add up to the booster's margin."""
    margin = model.get_booster().predict(xgb.DMatrix(rows), output_margin=True)
    for row, expected in zip(rows, margin, strict=True):
        got = trees.contributions(row).sum() + trees.bias
        if abs(got - float(expected)) > 1e-3:
            raise ValueError(f"tree arrays give margin {got:.6f}, the booster {expected:.6f}")
