"""Fit price elasticities from the commerce database, store the fit, and register it.

A pricing "model" is one elasticity fit: the estimates are stored in the database (the
elasticity rule reads them from there) and the fit is logged as an MLflow run and registered as
a version of ``cartwise-pricing`` (``model.json`` names the fit, ``estimates.json`` holds the
estimates).  The registry's ``champion`` is the fit serving uses: replicas pin it as the registry
moves (``serving.lifecycle``).  The first version becomes the champion; later ones become the
``challenger`` until a data scientist promotes them (``cartwise models promote``): there is no
held-out window on which one fit can be judged better than another without running it.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import ValidationError
from engine.pricing.elasticity import Elasticities, Estimate
from training.fraud.registry import ModelRegistry
from training.pricing.elasticity import FitSettings, fit_elasticities, usable
from training.snapshot import snapshot

FILES = ("model.json", "estimates.json")
Progress = Callable[[str], None]
Report = Callable[..., str]


class PricingRegistry(ModelRegistry):
    """``ModelRegistry`` for elasticity fits."""

    files = FILES


@dataclass
class PricingTrainResult:
    fit_id: str
    version: str | None
    metrics: dict[str, float]
    champion_before: str | None
    promoted: bool
    reason: str
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 1)}


def fit_metrics(estimates: Sequence[Estimate]) -> dict[str, float]:
    """How much of the catalogue the fit covers, and how sure it is."""
    ok = [e for e in estimates if e.status == "ok"]
    good = [e for e in ok if usable(e)]
    out = {
        "estimates": float(len(estimates)),
        "categories_ok": float(sum(e.level == "category" for e in ok)),
        "skus_ok": float(sum(e.level == "sku" for e in ok)),
        "usable": float(len(good)),
    }
    if good:
        out["median_elasticity"] = float(np.median([e.elasticity for e in good]))
        out["median_std_err"] = float(np.median([e.std_err for e in good]))
    return {k: v for k, v in out.items() if math.isfinite(v)}


def train(
    table: pd.DataFrame,
    *,
    elasticities: Elasticities,
    registry: ModelRegistry,
    settings: FitSettings | None = None,
    source: str = "commerce database",
    promote: bool = False,
    tags: Mapping[str, str] | None = None,
    report: Report | None = None,
    progress: Progress | None = None,
) -> PricingTrainResult:
    """Fit ``table`` (``training.pricing.history.daily_sales``), store the fit, register it.
    ``promote`` makes it the champion at once; the first fit always is.  ``report`` builds
    the run's HTML report: ``report(estimates, title=, version=, metrics=, params=)``."""
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    if len(table) == 0:
        raise ValidationError("no sales to fit elasticities on", field="sales")
    settings = settings or FitSettings()
    say(f"fitting {table['sku'].nunique()} SKUs…")
    estimates = fit_elasticities(table, settings)
    frm, to = _utc(table["day"].min()), _utc(table["day"].max())
    fit_id = elasticities.save(
        estimates,
        source=source,
        settings=asdict(settings),
        history_from=frm,
        history_to=to,
        rows=len(table),
    )
    metrics = fit_metrics(estimates)
    params = {"fit": asdict(settings), **snapshot(table, "day", prefix="sales")}
    registry = PricingRegistry.of(registry)
    current = registry.champion()
    promoted = promote or current is None
    reason = (
        "first fit: there was no champion"
        if current is None
        else ("promoted on request" if promote else "kept as challenger: promote it to use it")
    )
    say("registering…")
    with tempfile.TemporaryDirectory(prefix="cw-pricing-") as tmp:
        directory = Path(tmp) / "model"
        directory.mkdir()
        (directory / "estimates.json").write_text(
            json.dumps([e.public() for e in estimates], default=str)
        )
        (directory / "model.json").write_text(
            json.dumps(
                {
                    "version": "unregistered",
                    "kind": "elasticity",
                    "fit_id": fit_id,
                    "settings": asdict(settings),
                    "history_from": frm.isoformat(),
                    "history_to": to.isoformat(),
                    "metrics": metrics,
                    "trained_at": datetime.now(UTC).isoformat(),
                },
                default=str,
            )
        )

        def html(version: str) -> str:
            assert report is not None
            title = f"{registry.name} v{version}: elasticity fit {fit_id}"
            return report(estimates, title=title, version=version, metrics=metrics, params=params)

        version = registry.log_and_register(
            directory,
            metrics=metrics,
            params=params,
            plots={},
            tags={**(tags or {}), "fit_id": fit_id, "promoted": str(promoted).lower()},
            report=html if report is not None else None,
        )
    if promoted:
        registry.set_champion(version)
    else:
        registry.set_challenger(version)
    return PricingTrainResult(
        fit_id=fit_id,
        version=version,
        metrics=metrics,
        champion_before=current.version if current else None,
        promoted=promoted,
        reason=reason,
        seconds=time.perf_counter() - started,
    )


def fit_of(directory: Path) -> str:
    """The fit id a registered pricing version names."""
    fit_id = json.loads((Path(directory) / "model.json").read_text()).get("fit_id")
    if not isinstance(fit_id, str):
        raise ValidationError(f"{directory} names no fit", field="model")
    return fit_id


def _utc(day: Any) -> datetime:
    return pd.Timestamp(day).to_pydatetime().replace(tzinfo=UTC)
