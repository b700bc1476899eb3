"""The price-elasticity fit's report: a forest plot per level (categories, SKUs) of each
estimate with its 95% confidence interval, sorted by elasticity, and a table of every
estimate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Unpack

import numpy as np

from engine.pricing.elasticity import Estimate
from training.reporting.page import (
    Header,
    Section,
    figure,
    new_figure,
    note,
    paragraph,
    render,
    table,
)

MAX_PLOTTED = 60  # rows of one forest plot; the rest are in the table
LEVELS = (("category", "Category elasticities"), ("sku", "SKU elasticities"))
_COLUMNS = (
    "level",
    "key",
    "category",
    "elasticity",
    "std err",
    "95% CI low",
    "95% CI high",
    "rows",
    "units",
    "price variation",
    "fit quality",
    "status",
    "usable",
    "message",
)


def _has_interval(e: Estimate) -> bool:
    return math.isfinite(e.ci_low) and math.isfinite(e.ci_high)


def _errors(estimates: Sequence[Estimate]) -> list[list[float]]:
    """Error-bar lengths below and above each elasticity (0 where there is no interval)."""
    return [
        [e.elasticity - e.ci_low if _has_interval(e) else 0.0 for e in estimates],
        [e.ci_high - e.elasticity if _has_interval(e) else 0.0 for e in estimates],
    ]


def _forest(title: str, estimates: Sequence[Estimate], max_std_err: float) -> str:
    """Estimates (finite elasticity) sorted by elasticity, the most elastic at the top."""
    rows = sorted(estimates, key=lambda e: e.elasticity, reverse=True)
    fig = new_figure(7, 0.28 * len(rows) + 1.5)
    ax = fig.subplots()
    y = np.arange(len(rows))
    for usable, color, what in ((True, "#2a7a2a", "usable"), (False, "#b05a00", "not usable")):
        pick = [i for i, e in enumerate(rows) if e.usable(max_std_err) == usable]
        if not pick:
            continue
        chosen = [rows[i] for i in pick]
        ax.errorbar(
            [e.elasticity for e in chosen],
            y[pick],
            xerr=_errors(chosen),
            fmt="o",
            color=color,
            capsize=3,
            label=what,
        )
    ax.axvline(-1.0, linestyle=":", color="grey", label="unit elastic (-1)")
    ax.axvline(0.0, linestyle="-", color="lightgrey")
    ax.set_yticks(y, [e.key for e in rows])
    ax.set(xlabel="elasticity (95% CI)", title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="x")
    return figure(fig, f"{title}: estimates and 95% confidence intervals")


def _level(
    level: str, title: str, estimates: Sequence[Estimate], max_std_err: float
) -> Section | None:
    mine = [e for e in estimates if e.level == level]
    if not mine:
        return None
    section = Section(title)
    drawn = [e for e in mine if math.isfinite(e.elasticity)]
    if len(drawn) > MAX_PLOTTED:
        drawn = sorted(drawn, key=lambda e: e.units, reverse=True)[:MAX_PLOTTED]
        section.add(note(f"{len(mine)} estimates: the {MAX_PLOTTED} with most units are drawn."))
    if drawn:
        section.add(_forest(title, drawn, max_std_err))
    no_value = [e.key for e in mine if not math.isfinite(e.elasticity)]
    if no_value:
        section.add(note(f"No estimate for: {', '.join(no_value)} (see the table's status)."))
    no_interval = [e.key for e in drawn if not _has_interval(e)]
    if no_interval:
        section.add(note(f"No confidence interval for: {', '.join(no_interval)} (point only)."))
    return section


def _row(e: Estimate, max_std_err: float) -> tuple[Any, ...]:
    return (
        e.level,
        e.key,
        e.category,
        e.elasticity,
        e.std_err,
        e.ci_low,
        e.ci_high,
        e.n_obs,
        e.units,
        e.price_variation,
        e.fit_quality,
        e.status,
        e.usable(max_std_err),
        e.message,
    )


def pricing_report(
    estimates: Sequence[Estimate],
    *,
    max_std_err: float = 0.5,
    **header: Unpack[Header],
) -> str:
    """The report's HTML for ``estimates`` (``training.pricing.elasticity.fit_elasticities``).

    Keyword arguments, all optional: ``max_std_err`` (the bound of ``Estimate.usable``, for
    the usable / not usable colouring) and the header's (``page.Header``): ``title`` (default
    "Price elasticities"; e.g. the registered model's name), ``version`` (the registered
    version), ``metrics`` and ``params`` (name -> value; nested mappings shown with dotted
    names), ``snapshot`` (what the fit was trained on, e.g. ``training.snapshot.snapshot``) and
    ``created`` (default now), as in ``pricing_report(estimates, title=..., version=...,
    metrics=..., params=...)``.  An estimate without an
    elasticity or interval is named in a note and listed in the table; no estimates at all
    gives a page that says so."""
    sections = [s for level, name in LEVELS if (s := _level(level, name, estimates, max_std_err))]
    everything = Section("All estimates")
    if estimates:
        everything.add(
            paragraph(
                f"Usable: the fit succeeded, std err <= {max_std_err:g} and elasticity < -1 "
                "(what repricing acts on)."
            ),
            table(_COLUMNS, (_row(e, max_std_err) for e in estimates)),
        )
    else:
        everything.add(note("No estimates: nothing was fitted."))
    return render([*sections, everything], header, default_title="Price elasticities")
