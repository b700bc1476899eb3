"""``cartwise features …``: the catalogue, point-in-time exports for training, the online
store's rebuild and one entity's current values."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.errors import CartwiseError, ValidationError
from features.definitions import Source
from serving.cli_common import (
    aware_time,
    console,
    fail,
    settings_from_env,
    table_format,
    write_table,
)

if TYPE_CHECKING:
    import pandas as pd

    from engine.commerce.db import Database

features_app = typer.Typer(help="Online feature store.", no_args_is_help=True)


@features_app.command("list")
def features_list(
    source: Annotated[
        Source | None, typer.Option(help="Only the views of this event source.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
) -> None:
    """The feature catalogue: every view (entity, source, TTL) and its features (kind, window,
    meaning), derived from features/definitions.py."""
    from features.catalog import catalog

    found = catalog(source)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    for view in found["views"]:
        delay = view["label_delay_days"]
        title = (
            f"{view['name']}: {view['source']} events by {view['entity']}, "
            f"TTL {view['ttl_s'] // 86_400} d" + (f", labels {delay} d late" if delay else "")
        )
        table = Table(title=title, title_justify="left")
        table.add_column("feature")
        table.add_column("kind")
        table.add_column("meaning")
        for f in view["features"]:
            table.add_row(f["name"], f["kind"], f["description"])
        console.print(table)
    total = sum(len(v["features"]) for v in found["views"])
    console.print(
        f"{total} features in {len(found['views'])} views "
        f"(definitions version {found['definitions_version']})"
    )


def _check(
    transactions: Path | None,
    interactions: Path | None,
    labels: Path | None,
    as_of: str | None,
    storefront: bool,
) -> None:
    if transactions and interactions:
        raise ValidationError("give --transactions or --interactions, not both", field="source")
    if storefront and (transactions or interactions):
        raise ValidationError(
            "--storefront reads the commerce database; a file is given instead",
            field="storefront",
        )
    if labels and not transactions:
        raise ValidationError(
            "--labels go with --transactions (the database's labels are its chargebacks)",
            field="labels",
        )
    if as_of and (transactions or interactions):
        raise ValidationError("--as-of replays the commerce database only", field="as_of")


def _historical(
    transactions: Path | None,
    interactions: Path | None,
    labels: Path | None,
    as_of: str | None,
    storefront: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(input rows, their features, where they came from)."""
    from features.offline import interaction_features, load_table, transaction_features

    if interactions is not None:
        raw = load_table(interactions)
        return raw, interaction_features(raw), interactions.name
    if transactions is not None:
        raw = load_table(transactions)
        known = load_table(labels) if labels is not None else None
        return raw, transaction_features(raw, known), transactions.name
    from serving.bootstrap import bootstrap
    from training.fraud.dataset import transactions_from_db

    when = aware_time(as_of, "as_of")
    container = bootstrap(settings_from_env(), migrate=True, load_models=False)
    try:
        if storefront:
            raw = _storefront_from_db(container.db, when)
        else:
            raw = transactions_from_db(container.db, as_of=when)
    finally:
        container.close()
    if storefront:
        return raw, interaction_features(raw), "commerce-db:storefront"
    return raw, transaction_features(raw), "commerce-db"


def _storefront_from_db(db: Database, as_of: datetime | None) -> pd.DataFrame:
    """The storefront events and order lines made by ``as_of`` (default: now), as the feature
    events a rebuild gives the online store (``features.rebuild.feature_events``), in an
    interactions file's columns."""
    from engine.commerce.history import interactions, orders
    from features.offline import interaction_table
    from features.rebuild import feature_events

    cutoff = (as_of or datetime.now(UTC)).timestamp()
    history = itertools.chain(orders(db), interactions(db))
    return interaction_table(
        e for event in history for e in feature_events(event) if e.ts <= cutoff
    )


@features_app.command("export")
def features_export(
    out: Annotated[Path, typer.Option(help="Output file: .parquet, .csv or .csv.gz.")],
    transactions: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Transactions (CSV / Parquet; columns in docs/features.md). "
            "Default: the commerce database's payment attempts.",
        ),
    ] = None,
    interactions: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Storefront events (CSV / Parquet) instead."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Fraud labels (transaction_id, reported_at) for --transactions; default: "
            "is_fraud, reported at reported_at or 7 days after the transaction.",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Replay the database as it was then (ISO, with zone); default now."),
    ] = None,
    storefront: Annotated[
        bool,
        typer.Option(
            "--storefront",
            help="From the database: its storefront events and order lines (the interaction "
            "features) instead of its payments.",
        ),
    ] = False,
) -> None:
    """Point-in-time features for training: every input row with every feature as the online
    store would have served it at that row's time (labels only once reported).  Prints a JSON
    summary."""
    err = Console(stderr=True)
    started = time.perf_counter()
    try:
        _check(transactions, interactions, labels, as_of, storefront)
        table_format(out)  # refused before any work
        with err.status("computing point-in-time features…"):
            raw, values, origin = _historical(transactions, interactions, labels, as_of, storefront)
    except CartwiseError as exc:
        raise fail(err, exc) from None
    import pandas as pd

    table = pd.concat([raw, values], axis=1)
    write_table(table, out)
    summary = {
        "rows": len(table),
        "features": values.shape[1],
        "source": origin,
        "out": str(out),
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(summary))


@features_app.command("rebuild")
def features_rebuild() -> None:
    """Recompute the online store (Redis) from the commerce database's history."""
    from engine.commerce.history import history
    from features.rebuild import rebuild
    from serving.bootstrap import bootstrap

    container = bootstrap(settings_from_env(), migrate=True, load_models=False)
    try:
        with Progress(
            TextColumn("{task.description}"),
            TextColumn("{task.completed}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            tasks: dict[str, TaskID] = {}

            def report(kind: str, done: int) -> None:
                if kind not in tasks:
                    tasks[kind] = progress.add_task(kind, total=None)
                progress.update(tasks[kind], completed=done)

            summary = rebuild(container.features, history(container.db), report)
    finally:
        container.close()
    if summary.degraded:
        console.print("[red]Redis was unreachable during the rebuild; run it again[/]")
        raise typer.Exit(1)
    console.print(
        f"rebuilt in {summary.seconds:.1f}s (removed {summary.removed_keys} keys): "
        + ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    )


@features_app.command("inspect")
def features_inspect(entity: str, entity_id: str) -> None:
    """Print one entity's current feature values."""
    from features.definitions import Entity
    from serving.bootstrap import bootstrap

    try:
        kind = Entity(entity)
    except ValueError:
        console.print(f"[red]unknown entity {entity!r}; one of {[e.value for e in Entity]}[/]")
        raise typer.Exit(2) from None
    container = bootstrap(settings_from_env(), migrate=False, load_models=False)
    try:
        console.print_json(json.dumps(container.features.inspect(kind, entity_id), default=str))
    finally:
        container.close()
