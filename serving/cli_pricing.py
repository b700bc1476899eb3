"""``cartwise pricing …``: fit elasticities, show them, reprice, and run the market simulator."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engine.errors import CartwiseError, ValidationError
from serving.cli_common import apply_yaml, aware_time, console, fail, settings_from_env

pricing_app = typer.Typer(
    help="Dynamic pricing: elasticities, repricing, simulation.", no_args_is_help=True
)
_SALES_HELP = (
    "CSV / Parquet of daily sales: sku, category, day, units, price "
    "(default: the commerce database's orders)."
)


def _utc(day: Any) -> datetime:
    """A day of the sales table (naive, UTC) as an aware datetime."""
    import pandas as pd

    return pd.Timestamp(day).to_pydatetime().replace(tzinfo=UTC)


def _number(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.2f}"


@pricing_app.command("fit-elasticity")
def fit_elasticity(
    sales: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help=_SALES_HELP)
    ] = None,
    since: Annotated[str | None, typer.Option(help="History from (ISO, with zone).")] = None,
    until: Annotated[str | None, typer.Option(help="History until (ISO, with zone).")] = None,
    min_days: Annotated[int, typer.Option(min=1, help="Days on sale for a SKU's own fit.")] = 28,
    min_units: Annotated[int, typer.Option(min=1, help="Units sold for a SKU's own fit.")] = 30,
    seasonality: Annotated[
        str, typer.Option(help="Calendar controls: dow, dow+week or dow+month.")
    ] = "dow+month",
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimates as JSON.")] = False,
) -> None:
    """Estimate price elasticity per category (and per SKU where the data allows) with a
    log-log Poisson model and seasonality controls; store the fit (the elasticity rule
    uses the newest) and show each estimate with its uncertainty."""
    from serving.bootstrap import bootstrap
    from training.pricing.elasticity import FitSettings, fit_elasticities
    from training.pricing.history import daily_sales, sales_from_file

    err = Console(stderr=True)
    if seasonality not in ("dow", "dow+week", "dow+month"):
        raise fail(err, ValidationError("dow, dow+week or dow+month", field="seasonality"))
    settings = settings_from_env()
    container = bootstrap(settings, load_models=False)
    try:
        frm, to = aware_time(since, "since"), aware_time(until, "until")
        with err.status("reading sales…"):
            table = (
                sales_from_file(sales) if sales else daily_sales(container.db, since=frm, until=to)
            )
        fit_settings = FitSettings(
            min_days=min_days,
            min_units=min_units,
            seasonality=seasonality,  # type: ignore[arg-type]
        )
        with err.status(f"fitting {table['sku'].nunique()} SKUs…"):
            estimates = fit_elasticities(table, fit_settings)
        fit_id = container.pricing.elasticities.save(
            estimates,
            source=str(sales) if sales else "commerce database",
            settings=asdict(fit_settings),
            history_from=_utc(table["day"].min()) if len(table) else None,
            history_to=_utc(table["day"].max()) if len(table) else None,
            rows=len(table),
        )
    except CartwiseError as exc:
        raise fail(err, exc) from None
    finally:
        container.close()
    if as_json:
        print(json.dumps({"fit_id": fit_id, "estimates": [e.public() for e in estimates]}))
        return
    _show(fit_id, [e.public() for e in estimates])


@pricing_app.command("elasticities")
def elasticities(
    level: Annotated[str | None, typer.Option(help="category or sku")] = None,
) -> None:
    """The estimates of the fit in use: the model registry's pricing champion, else the newest."""
    from serving.bootstrap import bootstrap
    from serving.lifecycle import lifecycle

    settings = settings_from_env()
    container = bootstrap(settings, load_models=False)
    try:
        # pin the registry's champion fit, as a serving replica does
        lifecycle(settings, container).followers["pricing"].refresh()
        fit = container.pricing.elasticities.latest()
    finally:
        container.close()
    if fit.id is None:
        console.print("no elasticity fit yet: run [bold]cartwise pricing fit-elasticity[/]")
        return
    _show(fit.id, [e.public() for e in fit.estimates if level is None or e.level == level])


def _show(fit_id: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"elasticities, fit {fit_id}")
    for column in ("level", "key", "elasticity", "95% CI", "std err", "obs", "units", "status"):
        table.add_column(column)
    for r in rows:
        nan = float("nan")
        e, lo, hi, se = (
            r[k] if r[k] is not None else nan
            for k in ("elasticity", "ci_low", "ci_high", "std_err")
        )
        table.add_row(
            r["level"],
            r["key"],
            _number(e),
            f"[{_number(lo)}, {_number(hi)}]",
            _number(se),
            str(r["n_obs"]),
            str(r["units"]),
            r["status"] + (f": {r['message']}" if r["message"] else ""),
        )
    console.print(table)


@pricing_app.command("reprice")
def reprice(
    sku: Annotated[list[str] | None, typer.Option(help="Only these SKUs (repeat).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Compute and report; change nothing.")] = False,
    actor: Annotated[str, typer.Option(help="Who the audit trail names.")] = "cli",
) -> None:
    """Run the pricing rules over the catalogue: apply ``auto`` rules, suggest ``suggest``
    rules, audit every change; print counts and durations as JSON."""
    from serving.bootstrap import bootstrap

    err = Console(stderr=True)
    container = bootstrap(settings_from_env(), load_models=False)
    try:
        result = container.pricing.reprice(sku or None, actor=actor, dry_run=dry_run)
    except CartwiseError as exc:
        raise fail(err, exc) from None
    finally:
        container.close()
    print(json.dumps(result.public(), default=str, indent=2))


@pricing_app.command("rules")
def rules(
    load: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="YAML {guardrails: {...}, rules: {name: rule}} to create or replace.",
        ),
    ] = None,
) -> None:
    """Print the default guardrails and the rules as YAML; with --load, apply a YAML file
    first (all or nothing; replicas pick it up within a second)."""
    import yaml

    from serving.bootstrap import bootstrap

    err = Console(stderr=True)
    container = bootstrap(settings_from_env(), load_models=False)
    try:
        config = container.pricing.config
        if load is not None:
            names = apply_yaml(load, config.put_file, err)
            err.print(f"applied: {', '.join(names) or 'guardrails'}")
        ruleset = config.rules()
        out = {
            "guardrails": ruleset.defaults.config(),
            "rules": {r.name: r.config() for r in sorted(ruleset.rules, key=lambda r: r.name)},
        }
    finally:
        container.close()
    print(yaml.safe_dump(out, sort_keys=False))


@pricing_app.command("simulate")
def simulate(
    skus: Annotated[int, typer.Option(min=10, help="SKUs in the simulated market.")] = 200,
    categories: Annotated[int, typer.Option(min=1)] = 10,
    explore_days: Annotated[int, typer.Option(min=28)] = 90,
    exploit_days: Annotated[int, typer.Option(min=1)] = 28,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """A market with known demand curves: list prices, then promotions to learn from, then
    the elasticity strategy (the engine's kernel, with guardrails) against the oracle."""
    from training.pricing.simulator import Strategy, engine_pricer, make_market, run

    market = make_market(skus, categories, seed)
    result = run(
        market,
        Strategy(pricer=engine_pricer()),
        days_explore=explore_days,
        days_exploit=exploit_days,
        seed=seed,
    )
    print(
        json.dumps(
            {
                "static_profit": round(result.static_profit, 2),
                "elasticity_profit": round(result.fitted_profit, 2),
                "oracle_profit": round(result.oracle_profit, 2),
                "share_of_oracle": round(result.share_of_oracle, 4),
                "categories": result.categories.round(3).to_dict(orient="records"),
            },
            indent=2,
        )
    )
