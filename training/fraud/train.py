"""Train the fraud model on transactions, register it, and promote it only if it is better.

The windows follow the fraud-handbook protocol (``training.fraud.protocol``), laid at the end of
the data: the last ``test_days`` (whole UTC days, the last, partial day included) are the test
window, ``delay_days`` before them are skipped (their labels would not be known yet when the
model goes live), and the ``train_days`` before that are the training window.  ``label_days``
leaves out the newest days first: in the commerce database a fraud is labelled only once its
chargeback is filed (days to weeks later), so the newest payments look legitimate whatever
they are, and a test window on them would measure little.  Hyper-parameters are chosen by
prequential validation on earlier windows (``training.fraud.backtest.run``), so the data must
also hold ``delay_days + folds * test_days`` days before the training window; on short data
the training window comes first (one fold, then fewer training days).

The model is exported to ONNX (checked equal to XGBoost), its ROC and precision-recall curves
are drawn on the test window, and it is logged and registered as a new version with its
training report (``training.reporting.fraud``: curves, calibration, gain importance and score
distribution on the test window, beside the champion's) as the run's ``report.html``.  It
becomes the ``champion`` if there is none, if the champion cannot be loaded or was trained on
other inputs, or if on the same test rows, with the same inputs, its average precision is
strictly higher than the champion's (ONNX scores for both).  A tie keeps the champion.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engine.errors import ValidationError
from engine.fraud.model import FraudModel, ModelError
from training.fraud.backtest import FIXED, GRID, Params, Prepared, prepare, run
from training.fraud.distributed import fitting
from training.fraud.export import export
from training.fraud.protocol import Protocol, known_compromised_mask, metrics
from training.fraud.registry import ModelRegistry, RegistryError
from training.reporting import fraud_report, gain_importance
from training.reporting.fraud import pr_figure, roc_figure
from training.reporting.page import png
from training.snapshot import snapshot

Progress = Callable[[str], None]
DEFAULT_TRAIN_DAYS = 21
DEFAULT_FOLDS = 2
KEY_METRIC = "average_precision"


@dataclass
class TrainResult:
    version: str
    metrics: dict[str, float]
    params: Params
    protocol: Protocol
    folds: int
    champion_before: str | None
    champion_after: str | None
    promoted: bool
    reason: str
    champion_metrics: dict[str, float] | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "metrics": self.metrics,
            "params": self.params,
            "protocol": _protocol_dict(self.protocol),
            "folds": self.folds,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "champion_metrics": self.champion_metrics,
            "promoted": self.promoted,
            "reason": self.reason,
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class EvaluationSet:
    """The test rows (known-compromised cards removed) and what scoring them needs."""

    rows: npt.NDArray[np.bool_]
    ts: npt.NDArray[np.float64]
    card: npt.NDArray[np.object_]
    label: npt.NDArray[np.int_]
    inputs: npt.NDArray[np.float32]


def _protocol_dict(p: Protocol) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, date) else v for k, v in asdict(p).items()}


def _day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def windows(
    ts: npt.NDArray[np.float64],
    *,
    test_days: int,
    delay_days: int,
    train_days: int | None = None,
    folds: int | None = None,
    label_days: int = 0,
) -> tuple[Protocol, int]:
    """The protocol whose test window ends with the data's last day less ``label_days``, and
    the number of validation folds (``None``: 2 if the data has room for them beside the
    training window, else 1); raise ``ValidationError`` (field ``transactions``) if the data is
    too short."""
    for name, value, least in (
        ("test_days", test_days, 1),
        ("delay_days", delay_days, 0),
        ("label_days", label_days, 0),
        ("train_days", train_days, 1),
        ("folds", folds, 1),
    ):
        if value is not None and value < least:
            raise ValidationError(f"{name} must be at least {least}", field=name)
    if len(ts) == 0:
        raise ValidationError("no transactions to train on", field="transactions")
    first, last = _day(float(ts.min())), _day(float(ts.max()))
    last -= timedelta(days=label_days)
    span = (last - first).days + 1

    def room(n: int) -> int:  # days left for training beside test, delay and n folds
        return span - test_days - delay_days - (delay_days + n * test_days)

    if folds is None:
        folds = DEFAULT_FOLDS if room(DEFAULT_FOLDS) >= (train_days or DEFAULT_TRAIN_DAYS) else 1
    wanted = train_days if train_days is not None else min(DEFAULT_TRAIN_DAYS, room(folds))
    if wanted < 1 or wanted > room(folds):
        need = span - room(folds) + max(wanted, 1)
        dropped = f", leaving out the last {label_days}" if label_days else ""
        raise ValidationError(
            f"the transactions cover {span} days ({first} to {last}{dropped}); "
            f"test_days={test_days}, delay_days={delay_days}, train_days={train_days or 'auto'} "
            f"and folds={folds} need at least {need}: give more history, or shorter windows "
            "or fewer folds",
            field="transactions",
        )
    train_start = last + timedelta(days=1 - test_days - delay_days - wanted)
    return Protocol(train_start, wanted, delay_days, test_days), folds


def _check_labels(data: Prepared, protocol: Protocol, folds: int) -> None:
    shift = protocol.delay_days + protocol.test_days
    checks = [("training window", protocol)] + [
        (f"validation fold {i + 1}", protocol.shifted(shift + i * protocol.test_days))
        for i in range(folds)
    ]
    for what, p in checks:
        rows = p.train_mask(data.ts)
        frauds = int(data.label[rows].sum())
        if frauds == 0 or frauds == int(rows.sum()):
            start = p.train_start
            end = start + timedelta(days=p.train_days - 1)
            raise ValidationError(
                f"the {what} ({start} to {end}) has {int(rows.sum())} transactions of which "
                f"{frauds} are labelled fraud: a model needs both; give more history",
                field="transactions",
            )


def evaluation_set(data: Prepared, protocol: Protocol) -> EvaluationSet:
    """The protocol's test rows less the cards known compromised by then (what a model is
    scored on, and what ``training.compare`` scores two versions on); ``ValidationError``
    (field ``transactions``) when they do not hold both labels."""
    rows = protocol.test_mask(data.ts) & ~known_compromised_mask(
        data.ts, data.card, data.label, protocol
    )
    if not 0 < int(data.label[rows].sum()) < int(rows.sum()):
        end = protocol.train_start + timedelta(
            days=protocol.train_days + protocol.delay_days + protocol.test_days - 1
        )
        raise ValidationError(
            f"the test window (to {end}) has {int(rows.sum())} transactions of which "
            f"{int(data.label[rows].sum())} are labelled fraud: the model cannot be evaluated "
            "(chargebacks of recent payments may not be filed yet: leave out more days at the "
            "end with label_days)",
            field="transactions",
        )
    return EvaluationSet(rows, data.ts[rows], data.card[rows], data.label[rows], data.inputs[rows])


def _score(model: FraudModel, test: EvaluationSet, protocol: Protocol) -> dict[str, float]:
    score = model.probabilities(test.inputs)
    return metrics(test.ts, test.card, test.label, score, protocol)


def _curves(
    test: EvaluationSet, scores: Mapping[str, npt.NDArray[np.float64]], directory: Path
) -> dict[str, Path]:
    """ROC and precision-recall curves of each scored model on the test rows, as PNG."""
    paths = {"roc": directory / "roc.png", "pr": directory / "pr.png"}
    paths["roc"].write_bytes(png(roc_figure(test.label, scores)))
    paths["pr"].write_bytes(png(pr_figure(test.label, scores)))
    return paths


def _decide(
    registry: ModelRegistry,
    new: dict[str, float],
    test: EvaluationSet,
    protocol: Protocol,
    scores: dict[str, npt.NDArray[np.float64]],
    work: Path,
) -> tuple[str | None, bool, str, dict[str, float] | None]:
    """(champion before, better than it, why, the champion's metrics on this test window)."""
    current = registry.champion()
    if current is None:
        return None, True, "first model: there was no champion", None
    name = f"champion v{current.version}"
    try:
        champion = FraudModel.load(registry.fetch(current.version, work / "champion"))
    except (ModelError, RegistryError) as exc:  # other inputs, or files this release lacks
        return current.version, True, f"{name} cannot be loaded ({exc.message}): replaced", None
    scores[name] = champion.probabilities(test.inputs)
    old = metrics(test.ts, test.card, test.label, scores[name], protocol)
    a, b = new[KEY_METRIC], old[KEY_METRIC]
    if a > b:
        return current.version, True, f"average precision {a:.4f} > {name}'s {b:.4f}", old
    return current.version, False, f"average precision {a:.4f} <= {name}'s {b:.4f}: kept", old


def train(
    raw: pd.DataFrame,
    *,
    registry: ModelRegistry,
    test_days: int = 7,
    delay_days: int = 7,
    train_days: int | None = None,
    label_days: int = 0,
    folds: int | None = None,
    grid: Sequence[Params] = GRID,
    promote: bool = True,
    tags: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    ray_workers: int | None = None,
    ray_address: str | None = None,
) -> TrainResult:
    """Train on ``raw`` (the import format of ``features.offline``), register the model as a
    new version of ``registry`` and move ``champion`` to it if it is better (see the module
    docstring).  ``train_days`` defaults to as many days as the data has, up to 21; ``folds`` to
    2 if the data has room for them beside a full training window, else 1.  With
    ``ray_workers`` every fit (validation and final) runs data-parallel on that many Ray workers
    (``training.fraud.distributed``): on the cluster at ``ray_address``, or on a local Ray
    started and shut down here."""
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    if len(raw) == 0:
        raise ValidationError("no transactions to train on", field="transactions")
    if not grid:
        raise ValidationError("the parameter grid is empty", field="grid")
    say("computing features…")
    data = prepare(raw)
    protocol, folds = windows(
        data.ts,
        test_days=test_days,
        delay_days=delay_days,
        train_days=train_days,
        folds=folds,
        label_days=label_days,
    )
    _check_labels(data, protocol, folds)
    test = evaluation_set(data, protocol)
    say(f"validating {len(grid)} parameter sets on {folds} fold(s)…")
    with fitting(ray_workers, ray_address, progress=say) as (fitter, fitted_on):
        backtest = run(data, protocol, grid=grid, folds=folds, progress=say, fitter=fitter)
    assert backtest.model is not None
    with tempfile.TemporaryDirectory(prefix="cw-train-") as tmp:
        work = Path(tmp)
        say("exporting to ONNX…")
        exported = export(
            backtest.model,
            work / "model",
            check_rows=test.inputs,
            meta={"version": "unregistered", "protocol": _protocol_dict(protocol)},
        )
        scores = {"new model": exported.probabilities(test.inputs)}
        new = metrics(test.ts, test.card, test.label, scores["new model"], protocol)
        say("comparing with the champion…")
        before, better, reason, old = _decide(registry, new, test, protocol, scores, work)
        promoted = better and promote
        if better and not promote:
            reason = f"{reason}; kept as the challenger (promotion off)"
        train_rows = protocol.train_mask(data.ts)
        logged = {
            **new,
            "onnx_max_abs_diff": float(exported.meta["onnx_max_abs_diff"]),
            "train_transactions": float(train_rows.sum()),
            "train_frauds": float(data.label[train_rows].sum()),
            "test_transactions": float(test.rows.sum()),
            "test_frauds": float(test.label.sum()),
            "removed_known_compromised": float(backtest.removed_known_compromised),
            **{f"champion_{k}": v for k, v in (old or {}).items()},
        }
        logged = {k: v for k, v in logged.items() if math.isfinite(v)}
        _update_meta(work / "model", new)
        plots = _curves(test, scores, work)
        data_snapshot = snapshot(raw, "timestamp")
        params = {
            "xgboost": backtest.params,
            "fixed": FIXED,
            "fit": fitted_on,
            "protocol": _protocol_dict(protocol),
            "folds": folds,
            "grid_size": len(grid),
            "data_from": datetime.fromtimestamp(float(data.ts.min()), UTC).isoformat(),
            "data_to": datetime.fromtimestamp(float(data.ts.max()), UTC).isoformat(),
        }
        importance = gain_importance(backtest.model.get_booster())
        say("registering…")
        version = registry.log_and_register(
            work / "model",
            metrics=logged,
            params={**params, **data_snapshot},
            plots=plots,
            report=lambda v: fraud_report(
                test.label,
                scores,
                title=registry.name,
                version=v,
                importance=importance,
                metrics=logged,
                params=params,
                snapshot=data_snapshot,
            ),
            tags={
                **(tags or {}),
                "promoted": str(promoted).lower(),
                "reason": reason,
                "champion_before": before or "",
            },
        )
        if promoted:
            registry.set_champion(version)
        else:  # a candidate a data scientist can compare, shadow, canary or promote
            registry.set_challenger(version)
    return TrainResult(
        version=version,
        metrics=logged,
        params=backtest.params,
        protocol=protocol,
        folds=folds,
        champion_before=before,
        champion_after=version if promoted else before,
        promoted=promoted,
        reason=reason,
        champion_metrics=old,
        seconds=time.perf_counter() - started,
    )


def _update_meta(directory: Path, test_metrics: dict[str, float]) -> None:
    path = directory / "model.json"
    info = json.loads(path.read_text())
    info["metrics"] = test_metrics
    path.write_text(json.dumps(info, indent=2, default=str))
