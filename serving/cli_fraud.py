"""``cartwise fraud …``: backtests, training and the model registry, rules backtests."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from engine.errors import CartwiseError
from serving.cli_common import console, fail, settings_from_env
from serving.settings import Settings

if TYPE_CHECKING:
    from engine.commerce.db import Database
    from training.fraud.registry import ModelRegistry

fraud_app = typer.Typer(help="Fraud model: backtests, training, rules.", no_args_is_help=True)
rules_app = typer.Typer(help="Fraud rules.", no_args_is_help=True)
fraud_app.add_typer(rules_app, name="rules")


def _registry(settings: Settings) -> ModelRegistry:
    from serving.models import registry

    return registry(settings, "fraud")


@fraud_app.command("backtest")
def fraud_backtest(
    transactions: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="CSV / CSV.gz / Parquet transactions.")
    ],
    train_start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])],
    train_days: Annotated[int, typer.Option(min=1)] = 7,
    delay_days: Annotated[int, typer.Option(min=0)] = 7,
    test_days: Annotated[int, typer.Option(min=1)] = 7,
    folds: Annotated[int, typer.Option(min=1, help="Prequential validation windows.")] = 4,
    scores_out: Annotated[Path | None, typer.Option(dir_okay=False)] = None,
    model_out: Annotated[
        Path | None, typer.Option(file_okay=False, help="Export the model (ONNX) here.")
    ] = None,
) -> None:
    """Train on a window, skip the label delay, score the test window; print metrics as JSON.

    Hyper-parameters are chosen on earlier windows (prequential), never on the test window."""
    from features.offline import load_table
    from training.fraud.backtest import prepare, run
    from training.fraud.protocol import Protocol

    err = Console(stderr=True)
    protocol = Protocol(train_start.date(), train_days, delay_days, test_days)
    try:
        with err.status("reading transactions and computing features…"):
            data = prepare(load_table(transactions))
        with err.status("validating and training…") as status:
            result = run(data, protocol, folds=folds, progress=lambda m: status.update(m))
    except CartwiseError as exc:
        raise fail(err, exc) from None
    if scores_out is not None:
        result.scores.to_csv(scores_out, index=False)
    summary = result.summary()
    if model_out is not None and result.model is not None and result.check_rows is not None:
        from training.fraud.export import export

        exported = export(
            result.model,
            model_out,
            check_rows=result.check_rows,
            meta={"metrics": result.metrics, "protocol": str(protocol)},
        )
        summary["model"] = {
            "path": str(model_out),
            "version": exported.version,
            "onnx_max_abs_diff": exported.meta["onnx_max_abs_diff"],
        }
    print(json.dumps(summary, indent=2))


@fraud_app.command("train")
def fraud_train(
    transactions: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="CSV / CSV.gz / Parquet transactions (default: the commerce database).",
        ),
    ] = None,
    test_days: Annotated[int, typer.Option(min=1)] = 7,
    delay_days: Annotated[int, typer.Option(min=0)] = 7,
    train_days: Annotated[
        int | None, typer.Option(min=1, help="Default: as many as the data has, up to 21.")
    ] = None,
    label_days: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Newest days left out: their chargebacks may not be filed yet "
            "(default: 14 for the commerce database, 0 for a file).",
        ),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(min=1, help="Prequential validation windows (default: 2, 1 on short data)."),
    ] = None,
    params: Annotated[
        str | None,
        typer.Option(
            help='XGBoost parameter sets to validate, as JSON: {"max_depth": 4, …} or a list '
            "of them (default: the built-in grid of 8)."
        ),
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Move the `champion` alias to the new version if it is better.")
    ] = True,
    ray_workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Fit data-parallel on this many Ray workers (1 CPU each; default: no Ray, "
            "fit in this process).",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster (host:port of its head) for --ray-workers; default: "
            "CARTWISE_RAY_ADDRESS, whose default `local` starts a local Ray for this training.",
        ),
    ] = None,
) -> None:
    """Train on the commerce database (or a file), register the model in MLflow, and make it
    the champion if it beats the current one on the same test window; print a JSON summary.

    See docs/distributed-training.md for training on a Ray cluster."""
    from features.offline import load_table
    from training.fraud.train import train

    settings = settings_from_env()
    err = Console(stderr=True)
    if ray_address is not None and ray_workers is None:
        err.print("[red]invalid_request: --ray-address needs --ray-workers[/]")
        raise typer.Exit(2)
    registry = _registry(settings)
    try:
        grid = json.loads(params) if params else None
    except json.JSONDecodeError as exc:
        err.print(f"[red]invalid_request: --params is not JSON ({exc})[/]")
        raise typer.Exit(2) from None
    if isinstance(grid, dict):
        grid = [grid]
    if grid is not None and not (
        isinstance(grid, list) and grid and all(isinstance(g, dict) for g in grid)
    ):
        err.print("[red]invalid_request: --params must be an object or a list of objects[/]")
        raise typer.Exit(2)
    try:
        with err.status("reading transactions…"):
            if transactions is not None:
                raw, source = load_table(transactions), transactions.name
            else:
                from serving.bootstrap import bootstrap
                from training.fraud.dataset import transactions_from_db

                container = bootstrap(settings, migrate=True, load_models=False)
                try:
                    raw, source = transactions_from_db(container.db), "commerce-db"
                finally:
                    container.close()
        with err.status("training…") as status:
            result = train(
                raw,
                registry=registry,
                test_days=test_days,
                delay_days=delay_days,
                train_days=train_days,
                label_days=label_days if label_days is not None else (0 if transactions else 14),
                folds=folds,
                promote=promote,
                tags={"data": source},
                ray_workers=ray_workers,
                ray_address=_ray_address(ray_address or settings.ray_address),
                **({"grid": grid} if grid else {}),
                progress=lambda m: status.update(m),
            )
    except CartwiseError as exc:
        raise fail(err, exc) from None
    except (TypeError, ValueError) as exc:  # XGBoost refusing a --params value
        if grid is None:
            raise
        err.print(f"[red]invalid_request: --params: {exc}[/]")
        raise typer.Exit(2) from None
    summary = result.summary()
    print(
        json.dumps(
            {k: summary[k] for k in ("version", "metrics", "promoted", "reason")} | summary,
            indent=2,
        )
    )


def _ray_address(address: str) -> str | None:
    return None if address == "local" else address


@fraud_app.command("models", hidden=True)
def fraud_models() -> None:
    """The registered fraud model versions: ``cartwise models list fraud`` (kept as a
    shorthand; one table for both)."""
    from serving.cli_models import models_list

    models_list("fraud")


@rules_app.command("backtest")
def rules_backtest(
    rules: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="YAML / JSON rules.")],
    transactions: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="CSV / CSV.gz / Parquet transactions.")
    ],
    lists: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="YAML / JSON {list_name: [values]}."),
    ] = None,
) -> None:
    """Evaluate rules on labelled transactions (point-in-time features, no model): matches,
    precision and recall per rule and per deciding action, as JSON."""
    from features.offline import load_table
    from training.fraud.rules_backtest import backtest_rules, load_lists, load_rules

    err = Console(stderr=True)
    try:
        parsed = load_rules(rules)
        named = load_lists(lists) if lists else None
        with err.status("reading transactions and evaluating rules…"):
            report = backtest_rules(parsed, load_table(transactions), named)
    except CartwiseError as exc:
        raise fail(err, exc) from None
    print(json.dumps(report, indent=2, default=str))


DEMO_GRID: tuple[dict[str, Any], ...] = (
    {"n_estimators": 200, "max_depth": 4, "learning_rate": 0.1},
    {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.05},
)


def train_demo_model(settings: Settings, db: Database) -> None:
    """First run of ``cartwise demo``: train the fraud model on the demo store and make it the
    champion, so scoring works at once.  A store too small to train on is reported, not fatal."""
    from training.fraud.dataset import transactions_from_db
    from training.fraud.train import train

    registry = _registry(settings)
    if registry.champion() is not None:
        return
    try:
        with console.status("training the fraud model on the demo store…"):
            result = train(
                transactions_from_db(db),
                registry=registry,
                label_days=14,
                folds=1,
                grid=DEMO_GRID,
                tags={"data": "demo-store"},
            )
    except CartwiseError as exc:
        console.print(f"[yellow]no fraud model yet ({exc.message}); scoring answers 503[/]")
        return
    m = result.metrics
    console.print(
        f"fraud model v{result.version} is champion: "
        f"AUC {m['roc_auc']:.3f}, AP {m['average_precision']:.3f} on its test window"
    )
