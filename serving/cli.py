"""The ``cartwise`` command line."""

from __future__ import annotations

import dataclasses
import secrets
import signal
import subprocess  # nosec B404
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import SecretStr
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.errors import CartwiseError
from serving.cli_channels import DemoKeys, channels_app, demo_keys
from serving.cli_common import console, settings_from_env, write_private
from serving.cli_crm import customers_app, print_segments
from serving.cli_features import features_app
from serving.cli_fraud import fraud_app, train_demo_model
from serving.cli_models import models_app, train_command
from serving.cli_pricing import pricing_app
from serving.cli_recs import recs_app, train_demo_recommender
from serving.settings import Settings

if TYPE_CHECKING:
    from engine.commerce.db import Database
    from serving.bootstrap import Container
    from training.demo.seed import SeedConfig, SeedSummary

app = typer.Typer(help="cartwise: real-time decisions for online stores.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(features_app, name="features")
app.add_typer(fraud_app, name="fraud")
app.add_typer(recs_app, name="recs")
app.add_typer(pricing_app, name="pricing")
app.add_typer(customers_app, name="customers")
app.add_typer(channels_app, name="channels")
app.add_typer(models_app, name="models")
app.command("train")(train_command)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to the newest revision."""
    from serving.runtime import prepare_schema

    settings = settings_from_env()
    prepare_schema(settings)
    console.print(f"[green]schema up to date[/] at {settings.resolved_database_url()}")


def _rebuild_features(container: Container, skip: frozenset[str] = frozenset()) -> None:
    """``skip``: payment ids left out (``training.demo.scoring``: scored instead)."""
    from engine.commerce.history import history
    from features.rebuild import rebuild
    from training.demo.scoring import replayable

    summary = rebuild(container.features, replayable(history(container.db), skip))
    state = (
        "[red]Redis unreachable: run `cartwise features rebuild`[/]" if summary.degraded else "ok"
    )
    console.print(f"online features rebuilt in {summary.seconds:.1f}s: {state}")


@app.command()
def seed(
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same store.")] = 42,
    customers: Annotated[int, typer.Option(min=1)] = 2000,
    products: Annotated[int, typer.Option(min=1)] = 500,
    warehouses: Annotated[int, typer.Option(min=1)] = 4,
    merchants: Annotated[int, typer.Option(min=1)] = 20,
    days: Annotated[int, typer.Option(min=1, help="Days of history.")] = 60,
    fraud_rate: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.02,
) -> None:
    """Generate a reproducible demo store (catalogue, stock, customers, sessions, orders, fraud)."""
    from serving.bootstrap import bootstrap
    from training.demo.seed import SeedConfig, seed_store

    settings = settings_from_env()
    container = bootstrap(settings, migrate=True, load_models=False)
    config = SeedConfig(
        seed=seed,
        customers=customers,
        products=products,
        warehouses=warehouses,
        merchants=merchants,
        days=days,
        fraud_rate=fraud_rate,
    )
    try:
        summary = _run_seed(container.db, config, seed_store)
        _print_summary(summary)
        _rebuild_features(container)
    except CartwiseError as exc:
        console.print(f"[red]{exc.code}: {exc.message}[/]")
        raise typer.Exit(1) from None
    finally:
        container.close()


def _run_seed(
    db: Database, config: SeedConfig, seed_store: Callable[..., SeedSummary]
) -> SeedSummary:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        return seed_store(db, config, progress=report)


def _print_summary(summary: SeedSummary) -> None:
    table = Table(title="demo store")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in dataclasses.asdict(summary).items():
        table.add_row(str(key), str(value))
    console.print(table)


@app.command()
def serve(
    embedded_redis: Annotated[
        bool, typer.Option(help="Start a local Redis if none answers.")
    ] = False,
    plain: Annotated[
        bool,
        typer.Option(help="The same app under plain uvicorn, without Ray (for comparison)."),
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn processes (with --plain).")] = 1,
) -> None:
    """Serve the HTTP API on Ray Serve until Ctrl-C."""
    settings = settings_from_env()
    redis_proc = _embedded_redis(settings) if embedded_redis else None
    try:
        if plain:
            import os

            import uvicorn

            from serving import metrics
            from serving.runtime import prepare_schema

            prepare_schema(settings)
            if workers > 1 and not os.environ.get(metrics.ENV):  # the workers count together
                os.environ[metrics.ENV] = metrics.prepare(metrics.directory(settings.data_dir))
            uvicorn.run(
                "serving.asgi:create",
                factory=True,
                host=settings.http_host,
                port=settings.http_port,
                log_level="warning",
                access_log=False,
                workers=workers,
            )
        else:
            _serve_until_interrupted(settings)
    finally:
        _stop(redis_proc)


@app.command()
def demo(
    seed_value: Annotated[int, typer.Option("--seed")] = 42,
    customers: Annotated[int, typer.Option(min=1)] = 2000,
    products: Annotated[int, typer.Option(min=1)] = 500,
) -> None:
    """Everything `make run` does: Redis if needed, schema, demo data if empty, serve."""
    settings = _with_admin_token(settings_from_env())
    redis_proc = _embedded_redis(settings)
    try:
        prepare_demo(settings, seed=seed_value, customers=customers, products=products)
        keys = demo_keys(settings)
        if not settings.reprice_every_s:  # the demo reprices every 15 minutes
            settings = settings.model_copy(update={"reprice_every_s": 900})
        _serve_until_interrupted(settings, hints=True, keys=keys)
    finally:
        _stop(redis_proc)


def prepare_demo(settings: Settings, *, seed: int, customers: int, products: int) -> None:
    """Schema, the demo store if the database is empty, its models, and a first reprice."""
    from serving.bootstrap import bootstrap
    from training.demo.scoring import hold_back
    from training.demo.seed import SeedConfig, seed_store

    container = bootstrap(settings, migrate=True, load_models=False)
    held: frozenset[str] = frozenset()
    try:
        if not container.catalog.list_products(limit=1).items:
            console.print("[bold]seeding the demo store…[/]")
            config = SeedConfig(seed=seed, customers=customers, products=products)
            _print_summary(_run_seed(container.db, config, seed_store))
            held = hold_back(container.db)
            _rebuild_features(container, skip=held)
            _demo_experiment(container)
        train_demo_model(settings, container.db)
        if held:
            _score_held_back(settings, container, held)
        train_demo_recommender(settings, container.db)
        print_segments(container.crm.compute(), container.crm.summary())
        priced = container.pricing.reprice(actor="demo")
        console.print(
            f"repriced {priced.evaluated} SKUs: {priced.changed} changed, "
            f"{priced.suggested} suggested ({priced.duration_ms:.0f} ms)"
        )
    finally:
        container.close()


def _demo_experiment(container: Container) -> None:
    """An A/B test on the home widget for the demo store's shoppers: the widget as shipped
    against one item per category (its results fill in as /demo is browsed)."""
    exp = container.experiments.create(
        "home-diversity",
        "Home widget: one item per category",
        "widget",
        "home",
        [
            {"name": "control", "weight": 50, "config": {}},
            {"name": "diverse", "weight": 50, "config": {"overrides": {"max_per_category": 1}}},
        ],
        description="Does a more varied 'recommended for you' row convert better?",
    )
    container.experiments.start(exp.key)
    console.print(f"started the A/B test {exp.key} on the home widget")


def _score_held_back(settings: Settings, container: Container, held: frozenset[str]) -> None:
    """The newest day of seeded payments, scored by the fraud model just trained (the
    dashboard's fraud section then has real decisions; see training/demo/scoring.py)."""
    from serving.models import load_fraud_model
    from training.demo.scoring import score_held_back

    container.fraud.use_model(load_fraud_model(settings))
    outcomes = score_held_back(container.db, container.fraud, container.features, held)
    console.print(
        f"scored the newest day's {len(held)} payment attempts: "
        + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "no model, recorded only")
    )


def _with_admin_token(settings: Settings) -> Settings:
    """Keep the configured token, or generate one into the data dir (mode 600) and reuse it."""
    if settings.admin_token.get_secret_value():
        return settings
    token_file = settings.data_dir / "admin_token"
    if not token_file.exists():
        write_private(token_file, secrets.token_urlsafe(24))
    return settings.model_copy(update={"admin_token": SecretStr(token_file.read_text().strip())})


def _embedded_redis(settings: Settings) -> subprocess.Popen[bytes] | None:
    from serving.embedded import ensure_redis

    proc = ensure_redis(settings.redis_url, settings.data_dir / "logs")
    if proc is not None:
        console.print(f"started an embedded Redis (valkey) for {settings.redis_url}")
    return proc


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=10)


def _serve_until_interrupted(
    settings: Settings, *, hints: bool = False, keys: DemoKeys | None = None
) -> None:
    from serving.runtime import serve_app, shutdown

    stop = threading.Event()

    def on_term(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    try:
        t0 = time.monotonic()
        url = serve_app(settings)
        # again: ray.init installs a SIGTERM handler that aborts the process, which would skip
        # the shutdown below and leave Ray's agents and HAProxy running
        signal.signal(signal.SIGTERM, on_term)
        console.print(
            f"[green]cartwise is serving at {url}[/] (ready in {time.monotonic() - t0:.1f}s)"
        )
        if hints:
            _print_hints(url, settings, keys)
        while not stop.is_set():
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        shutdown(reap=True)


def _print_hints(url: str, settings: Settings, keys: DemoKeys | None) -> None:
    token = settings.admin_token.get_secret_value()
    sk, pk = (keys.secret, keys.publishable) if keys else ("cw_sk_…", "cw_pk_…")
    channel = (
        f"Channel {keys.channel}'s publishable key: {pk}\n"
        f"Channel {keys.channel}'s secret key:      {sk}"
        if keys
        else "No channel yet: POST /v1/channels, then cartwise channels keys create"
    )
    console.print(
        f"""
[bold]Open:[/]
  {url}/demo                       the demo storefront (its widgets are /static/widget.js)
  {url}/dashboard#token={token}   the operations dashboard
[bold]Try:[/]
  curl {url}/healthz
  curl '{url}/v1/products?limit=3' -H "Authorization: Bearer {sk}"
  curl {url}/v1/stock/SKU-00001 -H "Authorization: Bearer {sk}"
  curl -X POST {url}/v1/orders -H "Authorization: Bearer {sk}" \\
       -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' \\
       -d '{{"customer_id": "cus_000001", "currency": "EUR",
            "lines": [{{"sku": "SKU-00001", "qty": 1}}]}}'
  curl -X POST {url}/v1/fraud/score -H "Authorization: Bearer {sk}" \\
       -H 'Content-Type: application/json' \\
       -d '{{"transaction_id": "demo-tx-1", "customer_id": "cus_000001", "amount": 249.9,
            "currency": "EUR", "card": {{"fingerprint": "fp-demo", "country": "DE"}}}}'
  curl {url}/v1/fraud/rules -H "Authorization: Bearer {token}"
  curl '{url}/v1/recommendations/cus_000001?widget=home&k=5' -H "Authorization: Bearer {pk}"
  curl '{url}/v1/products/SKU-00001/similar?k=5' -H "Authorization: Bearer {pk}"
  curl '{url}/v1/features?source=transaction' -H "Authorization: Bearer {token}"
  curl {url}/metrics -H "Authorization: Bearer {token}"   (Prometheus)
  open {url}/docs   (OpenAPI at {url}/openapi.json)
Admin token (Authorization: Bearer …): {token}
{channel}
  (more: cartwise channels keys create|list|revoke; docs/security.md)
Ctrl-C stops everything this command started.
""",
        soft_wrap=True,  # URLs and commands stay whole, whatever the terminal's width
    )


if __name__ == "__main__":
    app()
