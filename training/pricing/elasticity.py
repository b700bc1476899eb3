"""Price elasticity of demand per category and per SKU, from daily sales.

Model (one per category, and one per batch of well-observed SKUs)::

    log E[units] = SKU fixed effect + e · log(price) + day-of-week + seasonality

estimated by Poisson pseudo-maximum likelihood (statsmodels GLM, Poisson family, log link).
PPML keeps the zero-sale days a log-linear OLS would have to drop (dropping them biases ``e``
towards zero for slow movers) and stays consistent when the counts are over-dispersed, as long
as the mean is right; the standard errors are therefore the HC1 sandwich, not the Poisson ones.
SKU fixed effects make ``e`` a *within*-SKU effect: a dear SKU that sells little says nothing
about elasticity, only a SKU whose own price moved does.

Seasonality: day-of-week dummies always (a weekly cycle is as strong as a promotion in most
stores), plus by default one dummy per *calendar month* (``"dow+month"``).  On 60-365 days of
history a month effect is always identified (2-13 levels) and absorbs slow seasonality and
trend without eating the promotions that identify ``e``: those last days to a couple of weeks,
so most of their variation is within a month.  ``"dow+week"`` (one dummy per calendar week)
controls faster demand swings but absorbs any week-long, category-wide promotion: use it only
with many SKUs whose prices move out of step.  Both are calendar *periods* (year and month/week),
so a year-long history gets a trend, not a month-of-year effect pooled across two Decembers.

A SKU gets its own estimate only with ``min_days`` days on sale, ``min_units`` units and a
standard deviation of log price of at least ``min_log_price_std``; its model has its own fixed
effect and slope but shares the calendar effects with up to ``SKU_BATCH`` - 1 other such SKUs of
its category (one fit per batch instead of one per SKU: faster, and the calendar effects are
estimated from more data).  Every other SKU falls back to its category (``resolve``).

Zero-unit SKUs are left out of a fit: with a fixed effect they add nothing to the likelihood
and their effect would diverge to minus infinity.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import statsmodels.api as sm
from threadpoolctl import threadpool_limits

from engine.errors import ValidationError
from engine.pricing.elasticity import Estimate, Fit

SALES_COLUMNS = ("sku", "category", "day", "units", "price")
Level = Literal["category", "sku"]
Seasonality = Literal["dow", "dow+week", "dow+month"]
Z95 = 1.959963984540054
SKU_BATCH = 16  # SKUs sharing one fit: cost per SKU grows with the batch squared
MIN_IDENTIFYING_STD = 1e-3  # log-price std below this is rounding noise, not a price change
MONDAY = np.datetime64("1970-01-05", "D")

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FitSettings:
    """When a SKU is trusted with its own estimate, and which calendar controls to use."""

    min_days: int = 28
    min_units: int = 30
    min_log_price_std: float = 0.02
    seasonality: Seasonality = "dow+month"


ElasticityEstimate = Estimate  # the stored form, engine/pricing/elasticity.py


def fit_elasticities(
    sales: pd.DataFrame, settings: FitSettings = FitSettings()
) -> list[ElasticityEstimate]:
    """Category estimates (sorted by category), then SKU estimates (by category, SKU).

    Raises ``ValidationError`` on malformed input (missing column, negative units, non-positive
    price, duplicate SKU-days); degenerate but valid data gets a status instead.
    """
    frame = prepare_sales(sales, settings.seasonality)
    categories: list[ElasticityEstimate] = []
    skus: list[ElasticityEstimate] = []
    # many small dense problems: BLAS threads only contend (several times slower on 2 cores)
    with threadpool_limits(1):
        for name, rows in frame.groupby("category", sort=True):
            categories.append(_fit_category(str(name), rows, settings))
            skus.extend(_fit_skus(str(name), rows, settings))
    return categories + skus


def usable(estimate: ElasticityEstimate, max_std_err: float = 0.5) -> bool:
    """Whether a pricing strategy may act on ``estimate`` (``Estimate.usable``)."""
    return estimate.usable(max_std_err)


def resolve(
    estimates: Iterable[ElasticityEstimate],
    sku_category: Mapping[str, str],
    *,
    max_std_err: float = 0.5,
) -> dict[str, float]:
    """Elasticity per SKU of ``sku_category``: its own usable estimate, else its category's,
    else the SKU is absent (the caller keeps its list price) — as repricing resolves it."""
    skus = list(sku_category)
    values = Fit(None, None, tuple(estimates)).resolve(
        skus, [sku_category[s] for s in skus], max_std_err
    )
    return {sku: v for sku, v in zip(skus, values, strict=True) if not math.isnan(v)}


def estimates_frame(estimates: Iterable[ElasticityEstimate]) -> pd.DataFrame:
    """The estimates as a table, one row each (for reports and notebooks)."""
    fields = list(ElasticityEstimate.__dataclass_fields__)
    return pd.DataFrame([asdict(e) for e in estimates], columns=fields)


# --- input ------------------------------------------------------------------------------------


def prepare_sales(sales: pd.DataFrame, seasonality: Seasonality = "dow+month") -> pd.DataFrame:
    """Validated copy of ``sales`` with ``day`` a naive UTC midnight, plus the model's
    ``logp``, ``dow`` and ``period`` columns, sorted by category, SKU and day."""
    missing = [c for c in SALES_COLUMNS if c not in sales.columns]
    if missing:
        raise ValidationError(
            f"sales data has no column {', '.join(map(repr, missing))}; "
            f"expected {', '.join(SALES_COLUMNS)}",
            field=missing[0],
            items=[{"field": c, "problem": "missing column"} for c in missing],
        )
    frame = sales.loc[:, list(SALES_COLUMNS)].copy()
    problems: list[dict[str, Any]] = []

    def bad(column: str, mask: pd.Series[bool] | npt.NDArray[np.bool_], problem: str) -> None:
        n = int(np.count_nonzero(mask))
        if n:
            problems.append({"field": column, "problem": problem, "rows": n})

    for column in ("sku", "category"):
        bad(column, frame[column].isna(), "missing value")
    day = pd.to_datetime(frame["day"], errors="coerce", utc=True)
    bad("day", day.isna(), "not a date")
    units = pd.to_numeric(frame["units"], errors="coerce")
    bad("units", ~np.isfinite(units) | (units < 0) | (units != np.round(units)), "not a count")
    price = pd.to_numeric(frame["price"], errors="coerce")
    bad("price", ~np.isfinite(price) | (price <= 0), "not a positive price")
    if not problems:
        frame["sku"] = frame["sku"].astype(str)
        frame["category"] = frame["category"].astype(str)
        frame["day"] = day.dt.tz_localize(None).dt.normalize()
        bad("day", frame.duplicated(["sku", "day"]), "duplicate SKU and day")
        bad(
            "category",
            frame.groupby("sku")["category"].transform("nunique") > 1,
            "naming 2+ categories for one SKU",
        )
    if problems:
        text = "; ".join(f"{p['rows']} row(s) with {p['field']} {p['problem']}" for p in problems)
        raise ValidationError(
            f"invalid sales data: {text}", field=problems[0]["field"], items=problems
        )
    frame["units"] = units.astype(np.int64)
    frame["price"] = price.astype(np.float64)
    frame["logp"] = np.log(frame["price"])
    days = frame["day"].to_numpy().astype("datetime64[D]")
    frame["dow"] = ((days - MONDAY).astype(np.int64) % 7).astype(np.int64)
    if seasonality == "dow+month":
        frame["period"] = frame["day"].dt.year * 12 + frame["day"].dt.month
    elif seasonality == "dow+week":
        frame["period"] = (days - MONDAY).astype(np.int64) // 7
    else:
        frame["period"] = 0
    return frame.sort_values(["category", "sku", "day"], kind="stable").reset_index(drop=True)


# --- fitting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fit:
    params: Array
    bse: Array
    mu: Array
    warning: str


def _onehot(codes: npt.NDArray[Any], *, drop_first: bool) -> Array:
    levels, inverse = np.unique(codes, return_inverse=True)
    out = np.zeros((len(codes), len(levels)))
    out[np.arange(len(codes)), inverse] = 1.0
    return out[:, 1:] if drop_first else out


def _controls(rows: pd.DataFrame) -> Array:
    """SKU fixed effects, then day-of-week and period dummies (first level dropped)."""
    return np.hstack(
        [
            _onehot(rows["sku"].to_numpy(), drop_first=False),
            _onehot(rows["dow"].to_numpy(), drop_first=True),
            _onehot(rows["period"].to_numpy(), drop_first=True),
        ]
    )


def _identifying_std(controls: Array, columns: Array, counts: npt.NDArray[np.intp]) -> Array:
    """Per price column, the root mean square (over its ``counts`` rows) of what is left of it
    after projecting out the controls *and the other price columns*: the variation that
    identifies its slope.  Zero when prices move only between SKUs or with the calendar, also
    jointly (all SKUs of a batch repriced together each month under month effects)."""
    resid = columns - controls @ np.linalg.lstsq(controls, columns, rcond=None)[0]
    values, vectors = np.linalg.eigh(resid.T @ resid)
    # residual SS of column j on the others = 1 / (G⁻¹)_jj; null directions drive it to 0
    inverse_diag = (vectors**2 / np.maximum(values, 1e-300)).sum(axis=1)
    return np.asarray(np.sqrt(1.0 / inverse_diag / counts))


def _glm(y: Array, x: Array) -> _Fit:
    """Poisson PPML with HC1 errors; warnings go to the estimate's message."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sm.GLM(y, x, family=sm.families.Poisson()).fit(cov_type="HC1")
    if not getattr(result, "converged", True):
        raise RuntimeError("IRLS did not converge")
    texts = sorted({str(w.message).splitlines()[0] for w in caught})
    return _Fit(
        np.asarray(result.params, dtype=np.float64),
        np.asarray(result.bse, dtype=np.float64),
        np.asarray(result.mu, dtype=np.float64),
        "; ".join(texts)[:300],
    )


def _deviance(y: Array, mu: Array) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
    return float(2.0 * np.sum(term - (y - mu)))


def _within_explained(y: Array, mu: Array, sku_codes: npt.NDArray[np.intp]) -> float:
    """1 - deviance / deviance of the SKU-means model."""
    sums = np.bincount(sku_codes, weights=y)
    counts = np.bincount(sku_codes)
    base = _deviance(y, (sums / counts)[sku_codes])
    return 1.0 - _deviance(y, mu) / base if base > 0 else math.nan


def _estimate(
    level: Level,
    key: str,
    category: str,
    rows: pd.DataFrame,
    variation: float,
    status: str,
    message: str = "",
    *,
    e: float = math.nan,
    se: float = math.nan,
    quality: float = math.nan,
    n_obs: int | None = None,
) -> ElasticityEstimate:
    if status == "ok" and not (math.isfinite(e) and math.isfinite(se)):
        status, message, e, se = "failed", "non-finite estimate", math.nan, math.nan
    return ElasticityEstimate(
        level=level,
        key=key,
        category=category,
        elasticity=e,
        std_err=se,
        ci_low=e - Z95 * se,
        ci_high=e + Z95 * se,
        n_obs=len(rows) if n_obs is None else n_obs,
        units=int(rows["units"].sum()),
        price_variation=variation,
        fit_quality=quality,
        status=status,
        message=message,
    )


def _fit_category(name: str, rows: pd.DataFrame, settings: FitSettings) -> ElasticityEstimate:
    """One elasticity shared by the category's SKUs, with SKU fixed effects."""
    within = rows["logp"] - rows.groupby("sku")["logp"].transform("mean")
    variation = float(np.std(within))
    units, days = int(rows["units"].sum()), rows["day"].nunique()
    if units < settings.min_units or days < settings.min_days:
        msg = f"{units} units over {days} days (need {settings.min_units} and {settings.min_days})"
        return _estimate("category", name, name, rows, variation, "insufficient_data", msg)
    fit_rows = rows[rows.groupby("sku")["units"].transform("sum") > 0]
    y = fit_rows["units"].to_numpy(dtype=np.float64)
    logp = fit_rows["logp"].to_numpy()[:, None]
    try:
        controls = _controls(fit_rows)
        identifying = _identifying_std(controls, logp, np.array([len(logp)]))[0]
        if variation < MIN_IDENTIFYING_STD or identifying < MIN_IDENTIFYING_STD:
            msg = "prices move only between SKUs or with the calendar controls, never within them"
            return _estimate("category", name, name, rows, variation, "no_price_variation", msg)
        fit = _glm(y, np.hstack([logp, controls]))
    except Exception as exc:  # degenerate data must not stop the other categories
        return _estimate("category", name, name, rows, variation, "failed", str(exc)[:300])
    codes = pd.factorize(fit_rows["sku"])[0]
    return _estimate(
        "category",
        name,
        name,
        rows,
        variation,
        "ok",
        fit.warning,
        e=float(fit.params[0]),
        se=float(fit.bse[0]),
        quality=_within_explained(y, fit.mu, codes),
        n_obs=len(fit_rows),
    )


def _fit_skus(category: str, rows: pd.DataFrame, settings: FitSettings) -> list[ElasticityEstimate]:
    """Own estimates for the SKUs that qualify, fitted in batches; fallbacks for the rest."""
    stats = rows.groupby("sku").agg(
        days=("day", "size"), units=("units", "sum"), std=("logp", lambda s: float(np.std(s)))
    )
    out: dict[str, ElasticityEstimate] = {}
    eligible: list[str] = []
    for sku, sku_rows in rows.groupby("sku", sort=True):
        days, units, std = (
            int(stats.at[sku, "days"]),
            int(stats.at[sku, "units"]),
            float(stats.at[sku, "std"]),
        )
        if days < settings.min_days or units < max(settings.min_units, 1):
            msg = (
                f"{units} units over {days} days (need {settings.min_units} and "
                f"{settings.min_days}): uses its category's estimate"
            )
            out[str(sku)] = _estimate(
                "sku", str(sku), category, sku_rows, std, "insufficient_data", msg
            )
        elif std < settings.min_log_price_std:
            msg = (
                f"log-price std {std:.4f} < {settings.min_log_price_std}: "
                "uses its category's estimate"
            )
            out[str(sku)] = _estimate(
                "sku", str(sku), category, sku_rows, std, "no_price_variation", msg
            )
        else:
            eligible.append(str(sku))
    n_batches = max(1, math.ceil(len(eligible) / SKU_BATCH))
    for batch in np.array_split(np.array(eligible, dtype=object), n_batches):
        if len(batch):
            batch_rows = rows[rows["sku"].isin(batch)]
            out.update(_fit_sku_batch(category, batch_rows, stats["std"]))
    return [out[sku] for sku in sorted(out)]


def _fit_sku_batch(
    category: str, rows: pd.DataFrame, std: pd.Series[float]
) -> dict[str, ElasticityEstimate]:
    """Own slope and fixed effect per SKU, shared calendar effects; SKUs whose slope is not
    identified are reported and the rest refitted without them."""
    codes, skus = pd.factorize(rows["sku"], sort=True)
    groups = [np.flatnonzero(codes == k) for k in range(len(skus))]
    y = rows["units"].to_numpy(dtype=np.float64)
    mu = np.full(len(rows), math.nan)  # the fitted means, once there are any
    own = np.zeros(len(rows), dtype=np.intp)  # one group: the SKU's own mean

    def one(
        k: int, status: str, message: str, e: float = math.nan, se: float = math.nan
    ) -> ElasticityEstimate:
        sku, g = str(skus[k]), groups[k]
        quality = math.nan if status != "ok" else _within_explained(y[g], mu[g], own[: len(g)])
        return _estimate(
            "sku",
            sku,
            category,
            rows.iloc[g],
            float(std[sku]),
            status,
            message,
            e=e,
            se=se,
            quality=quality,
        )

    try:
        slopes = np.zeros((len(rows), len(skus)))
        slopes[np.arange(len(rows)), codes] = rows["logp"].to_numpy()
        controls = _controls(rows)
        counts = np.bincount(codes, minlength=len(skus))
        identified = _identifying_std(controls, slopes, counts) >= MIN_IDENTIFYING_STD
        if not identified.all():
            msg = (
                "its price moves only with the calendar (alone or with other SKUs' prices): "
                "uses its category's estimate"
            )
            missing = np.flatnonzero(~identified).tolist()
            out = {str(skus[k]): one(k, "no_price_variation", msg) for k in missing}
            kept = rows[~rows["sku"].isin(list(out))]
            return out | (_fit_sku_batch(category, kept, std) if len(kept) else {})
        fit = _glm(y, np.hstack([slopes, controls]))
    except Exception as exc:  # one bad batch must not stop the others
        return {str(skus[k]): one(k, "failed", str(exc)[:300]) for k in range(len(skus))}
    mu = fit.mu
    return {
        str(skus[k]): one(k, "ok", fit.warning, float(fit.params[k]), float(fit.bse[k]))
        for k in range(len(skus))
    }
