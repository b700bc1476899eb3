"""``cartwise train`` and ``cartwise models …``: retrain from the commerce database, read the
registry, promote, roll back, roll a challenger out (shadow, canary) and compare it.

A model is named by its kind (``fraud``, ``recs``, ``pricing``) or its registered name.
Serving follows every change here within ``CARTWISE_MODEL_POLL_S`` seconds, without a restart.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.errors import CartwiseError, ValidationError
from serving.cli_common import console, fail, settings_from_env
from serving.models import model_dir, registry_for
from serving.settings import Settings

if TYPE_CHECKING:
    from serving.bootstrap import Container
    from training.fraud.registry import ModelRegistry

models_app = typer.Typer(
    help="Model registry: list, show, promote, roll back, roll out, compare.", no_args_is_help=True
)
KINDS = ("fraud", "recs", "pricing")
KEY_METRICS = {
    "fraud": ("average_precision", "roc_auc", "card_precision_at_100"),
    "recs": ("ndcg_at_10", "precision_at_10", "recall_at_10", "popularity_ndcg_at_10"),
    "pricing": ("usable", "categories_ok", "skus_ok", "median_elasticity"),
}


class Kind(StrEnum):
    fraud = "fraud"
    recs = "recs"
    pricing = "pricing"
    all = "all"


class Promote(StrEnum):
    never = "never"  # the new version is the challenger (the champion if there is none)
    if_better = "if-better"  # the champion if it beats the champion on its test window
    always = "always"


# --- train ----------------------------------------------------------------------------------


def train_command(
    kind: Annotated[Kind, typer.Argument(help="Which model to retrain.")] = Kind.all,
    promote: Annotated[
        Promote,
        typer.Option(
            help="never: the new version becomes the challenger (the champion only if there is "
            "none); if-better: the champion if it beats it on the same test window; always."
        ),
    ] = Promote.never,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    ray_workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Fit the fraud model data-parallel on this many Ray workers "
            "(docs/distributed-training.md).",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster for --ray-workers (default: CARTWISE_RAY_ADDRESS)."),
    ] = None,
) -> None:
    """Retrain from the commerce database: each model is logged to MLflow (parameters, metrics,
    data snapshot, HTML report) and registered as a new version."""
    from serving.bootstrap import bootstrap

    settings = settings_from_env()
    err = Console(stderr=True)
    if ray_address is not None and ray_workers is None:
        raise fail(err, ValidationError("--ray-address needs --ray-workers", field="ray_address"))
    address = ray_address or settings.ray_address
    ray = {"ray_workers": ray_workers, "ray_address": None if address == "local" else address}
    kinds = list(KINDS) if kind is Kind.all else [kind.value]
    container = bootstrap(settings, migrate=True, load_models=False)
    results: list[dict[str, Any]] = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, transient=not err.is_terminal) as bar:
            overall = bar.add_task("retraining", total=len(kinds))
            for name in kinds:
                step = bar.add_task(f"{name}: reading the commerce database…", total=None)

                def say(message: str, name: str = name, step: Any = step) -> None:
                    bar.update(step, description=f"{name}: {message}")

                results.append(_train_one(settings, container, name, promote, say, ray))
                bar.update(step, description=f"{name}: done", total=1, completed=1)
                bar.advance(overall)
    except CartwiseError as exc:
        raise fail(err, exc) from None
    finally:
        container.close()
    if as_json:
        print(json.dumps(results, indent=2, default=str))
        return
    table = Table(title="retrained from the commerce database")
    for column in ("model", "version", "now", "key metric", "why", "seconds"):
        table.add_column(column)
    for r in results:
        metric = KEY_METRICS[r["kind"]][0]
        value = r["metrics"].get(metric)
        table.add_row(
            r["name"],
            str(r["version"]),
            r["role"],
            f"{metric} {value:.4f}" if isinstance(value, float) else "",
            r["reason"],
            f"{r['seconds']:.1f}",
        )
    console.print(table)
    console.print("read a run's report: cartwise models report NAME VERSION")


def _train_one(
    settings: Settings,
    container: Container,
    kind: str,
    promote: Promote,
    say: Callable[[str], None],
    ray: dict[str, Any],
) -> dict[str, Any]:
    started = time.perf_counter()
    _, registry = registry_for(settings, kind)
    had_champion = registry.champion() is not None
    if kind == "fraud":
        from training.fraud.dataset import transactions_from_db
        from training.fraud.train import train as train_fraud

        result = train_fraud(
            transactions_from_db(container.db),
            registry=registry,
            label_days=14,
            promote=promote is Promote.if_better or not had_champion,
            tags={"data": "commerce-db"},
            progress=say,
            **ray,
        )
        version, metrics, reason = result.version, result.metrics, result.reason
    elif kind == "recs":
        from training.recommend.data import interactions_from_db
        from training.recommend.train import train as train_recs

        recs = train_recs(
            interactions_from_db(container.db),
            registry=registry,
            promote=promote is Promote.if_better or not had_champion,
            tags={"data": "commerce-db"},
            progress=say,
        )
        assert recs.version is not None
        version, metrics, reason = recs.version, recs.metrics, recs.reason
    else:
        from training.pricing.history import daily_sales
        from training.pricing.train import train as train_pricing
        from training.reporting import pricing_report

        fit = train_pricing(
            daily_sales(container.db),
            elasticities=container.pricing.elasticities,
            registry=registry,
            promote=not had_champion,
            tags={"data": "commerce-db"},
            report=pricing_report,
            progress=say,
        )
        assert fit.version is not None
        version, metrics, reason = fit.version, fit.metrics, fit.reason
    if promote is Promote.always:
        registry.set_champion(version)
        reason = f"{reason}; promoted (--promote always)"
    state = registry.state()
    role = "champion" if state.champion == version else "challenger"
    return {
        "kind": kind,
        "name": registry.name,
        "version": version,
        "role": role,
        "metrics": metrics,
        "reason": reason,
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- the registry ---------------------------------------------------------------------------
NameArg = Annotated[str, typer.Argument(help="fraud, recs or pricing (or a registered name).")]
VersionArg = Annotated[str, typer.Argument(help="A version or an alias.")]


@contextlib.contextmanager
def _model(name: str) -> Iterator[tuple[Settings, str, ModelRegistry]]:
    """(settings, kind, registry) of ``name``; a refused step prints its error and exits 2."""
    settings = settings_from_env()
    try:
        kind, registry = registry_for(settings, name)
        yield settings, kind, registry
    except CartwiseError as exc:
        raise fail(Console(stderr=True), exc) from None


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@models_app.command("list")
def models_list(
    name: Annotated[
        str | None, typer.Argument(help="fraud, recs or pricing (default: all).")
    ] = None,
) -> None:
    """Every registered version, newest first, with its aliases and key metrics."""
    settings = settings_from_env()
    err = Console(stderr=True)
    try:
        for kind in [name] if name else list(KINDS):
            kind_name, registry = registry_for(settings, kind)
            state = registry.state()
            rollout = f"{state.mode}" + (f" {state.share:.0%}" if state.mode == "canary" else "")
            table = Table(title=f"{registry.name}  (challenger rollout: {rollout})")
            metrics = KEY_METRICS[kind_name]
            for column in ("version", "created", "aliases", *metrics, "tags"):
                table.add_column(column)
            for v in registry.versions():
                tags = {k: t for k, t in v["tags"].items() if k in ("data", "rolled_back")}
                table.add_row(
                    v["version"],
                    v["created_at"],
                    ", ".join(v["aliases"]),
                    *(_fmt(v["metrics"].get(m, "")) for m in metrics),
                    ", ".join(f"{k}={t}" for k, t in tags.items()),
                )
            console.print(table)
    except CartwiseError as exc:
        raise fail(err, exc) from None


@models_app.command("show")
def models_show(name: NameArg, version: VersionArg = "champion") -> None:
    """A version's aliases, parameters (with its data snapshot), metrics and tags, as JSON."""
    with _model(name) as (_, _, registry):
        print(json.dumps(registry.show(version), indent=2, default=str))


@models_app.command("report")
def models_report(name: NameArg, version: VersionArg = "champion") -> None:
    """Download a version's HTML training report and print where it is."""
    with _model(name) as (settings, _, registry):
        path = registry.report(version, settings.data_dir / "reports")
    print(path.resolve())


@models_app.command("promote")
def models_promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="The version to make the champion.")],
) -> None:
    """Make a version the champion; serving switches within the poll interval."""
    with _model(name) as (settings, _, registry):
        before = registry.state().champion
        registry.set_champion(registry.resolve(version))
    console.print(
        f"{registry.name}: champion v{before or '-'} -> v{registry.state().champion}; "
        f"replicas switch within {settings.model_poll_s:g} s"
    )


@models_app.command("rollback")
def models_rollback(name: NameArg) -> None:
    """Make the previous champion the champion again."""
    with _model(name) as (_, _, registry):
        was, now = registry.rollback()
    console.print(f"{registry.name}: champion v{was} -> v{now} (rolled back)")


@models_app.command("challenge")
def models_challenge(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="The version to name challenger.")],
) -> None:
    """Name a version the challenger (training names each new version that did not become
    champion)."""
    with _model(name) as (_, _, registry):
        registry.set_challenger(registry.resolve(version))
    console.print(f"{registry.name}: challenger v{registry.state().challenger}")


@models_app.command("rollout")
def models_rollout(
    name: NameArg,
    mode: Annotated[str, typer.Argument(help="off, shadow or canary.")],
    share: Annotated[
        float, typer.Option(help="Under canary: the challenger's share of customers, 0-1.")
    ] = 0.1,
) -> None:
    """Roll the challenger out: ``shadow`` scores every request beside the champion and logs
    it; ``canary`` lets it answer a share of customers (each customer always on one side)."""
    with _model(name) as (_, kind, registry):
        if kind == "pricing" and mode != "off":
            raise ValidationError(
                "an elasticity fit is used by the batch reprice, not per request: compare it "
                "offline and promote it",
                field="mode",
            )
        registry.set_rollout(mode, share if mode == "canary" else 0.0)
        state = registry.state()
    extra = f" {state.share:.0%} of customers" if state.mode == "canary" else ""
    console.print(
        f"{registry.name}: challenger v{state.challenger or '-'} rollout {state.mode}{extra}"
        + ("" if state.challenger else " (no challenger yet: train one)")
    )


@models_app.command("compare")
def models_compare(
    name: Annotated[str, typer.Argument(help="fraud, recs or pricing.")],
    against: Annotated[
        str | None, typer.Option(help="Compare this version (default: the challenger).")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Online logs of the last N days.")] = 7,
) -> None:
    """Champion against challenger: offline on the same evaluation window (fraud), the
    metrics each was registered with, and online from the shadow and canary logs; as JSON."""
    from serving.bootstrap import bootstrap

    with _model(name) as (settings, kind, registry):
        state = registry.state()
        champion, challenger = state.champion, against or state.challenger
        if champion is None or challenger is None:
            raise ValidationError(
                f"{registry.name} needs a champion and a challenger (champion: "
                f"{champion or 'none'}, challenger: {challenger or 'none'})",
                field="name",
            )
        challenger = registry.resolve(challenger)
        container = bootstrap(settings, migrate=False, load_models=False)
        try:
            with Console(stderr=True).status("comparing…"):
                out = _compare(settings, container, kind, registry, champion, challenger, days)
        finally:
            container.close()
    print(json.dumps(out, indent=2, default=str))


def _compare(
    settings: Settings,
    container: Container,
    kind: str,
    registry: ModelRegistry,
    champion: str,
    challenger: str,
    days: int,
) -> dict[str, Any]:
    from training import compare

    since = datetime.now(UTC) - timedelta(days=days)
    shown = {v: registry.show(v) for v in (champion, challenger)}
    out: dict[str, Any] = {
        "model": registry.name,
        "champion": champion,
        "challenger": challenger,
        "registered_metrics": {
            f"{role} v{v}": {m: shown[v]["metrics"].get(m) for m in KEY_METRICS[kind]}
            for role, v in (("champion", champion), ("challenger", challenger))
        },
    }
    assert container.shadow is not None
    if kind == "fraud":
        from engine.fraud.model import FraudModel

        dest = model_dir(settings, registry)
        models = {
            f"{role} v{v}": FraudModel.load(registry.fetch(v, dest))
            for role, v in (("champion", champion), ("challenger", challenger))
        }
        try:
            out["offline"] = compare.fraud_offline(container.db, models)
        except ValidationError as exc:
            out["offline"] = {"error": exc.message}
        out["shadow"] = compare.fraud_shadow(container.db, container.shadow, registry.name, since)
        out["canary"] = compare.fraud_canary(container.db, [champion, challenger], since)
    elif kind == "recs":
        from engine.recommend.artifact import RecModel

        dest = model_dir(settings, registry)
        out["offline"] = compare.recs_offline(
            container.db,
            {
                f"{role} v{v}": RecModel.load(registry.fetch(v, dest))
                for role, v in (("champion", champion), ("challenger", challenger))
            },
        )
        out["shadow"] = compare.recs_shadow(container.db, container.shadow, registry.name, since)
        out["canary"] = compare.recs_canary(container.db, [champion, challenger], since)
    else:
        out["estimates"] = _fit_difference(
            registry, champion, challenger, model_dir(settings, registry)
        )
    return out


def _fit_difference(registry: ModelRegistry, a: str, b: str, dest: Path) -> dict[str, Any]:
    fits = []
    for v in (a, b):
        rows = json.loads((registry.fetch(v, dest) / "estimates.json").read_text())
        fits.append({r["key"]: r["elasticity"] for r in rows if r.get("elasticity") is not None})
    common = sorted(set(fits[0]) & set(fits[1]))
    diffs = [abs(fits[0][k] - fits[1][k]) for k in common]
    return {
        "keys_in_both": len(common),
        "mean_abs_elasticity_change": sum(diffs) / len(diffs) if diffs else None,
        "largest_changes": sorted(
            ({"key": k, "champion": fits[0][k], "challenger": fits[1][k]} for k in common),
            key=lambda r: -abs(r["champion"] - r["challenger"]),
        )[:10],
    }
