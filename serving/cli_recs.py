"""``cartwise recs …``: evaluate and train the recommender (implicit ALS vs popularity)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from engine.errors import CartwiseError, ValidationError
from serving.cli_common import (
    apply_yaml,
    console,
    fail,
    settings_from_env,
    table_format,
    write_table,
)
from serving.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from engine.commerce.db import Database
    from training.recommend.als import AlsParams

recs_app = typer.Typer(help="Recommendations: evaluation and training.", no_args_is_help=True)

_FILE = {"exists": True, "dir_okay": False}
_FILE_HELP = (
    "CSV / CSV.gz / Parquet: user_id, item_id, timestamp; optional event_type or weight, order_id."
)


class Split(StrEnum):
    stratified = "stratified"
    time = "time"


def _params(text: str | None) -> AlsParams | list[AlsParams] | None:
    """``--params``: one JSON object (used as is) or a list of them (validated)."""
    from training.recommend.als import AlsParams

    if not text:
        return None
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            return AlsParams(**value)
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return [AlsParams(**v) for v in value]
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValidationError(f"--params: {exc}", field="params") from None
    raise ValidationError("--params must be an object or a list of objects", field="params")


def _load(path: Path) -> pd.DataFrame:
    from training.recommend.data import load_interactions

    return load_interactions(path)


ParamsOption = Annotated[
    str | None,
    typer.Option(
        help='ALS parameters as JSON: {"factors": 32, "regularization": 1.0, "alpha": 10, '
        '"iterations": 15, "weighting": "none|bm25|tfidf"}, or a list of them to validate '
        "(default: coordinate search on a validation split of the training data)."
    ),
]
SplitOption = Annotated[Split, typer.Option(help="Per user: random items or their last items.")]
FractionOption = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Share of each user's items to test.")
]


@recs_app.command("evaluate")
def recs_evaluate(
    interactions: Annotated[Path | None, typer.Option(**_FILE, help=_FILE_HELP)] = None,
    split: SplitOption = Split.time,
    test_fraction: FractionOption = 0.25,
    k: Annotated[int, typer.Option(min=1)] = 10,
    seed: Annotated[int, typer.Option()] = 42,
    train: Annotated[
        Path | None, typer.Option(**_FILE, help="Training interactions (with --test).")
    ] = None,
    test: Annotated[
        Path | None, typer.Option(**_FILE, help="Test interactions (with --train).")
    ] = None,
    params: ParamsOption = None,
    recs_out: Annotated[
        Path | None,
        typer.Option(dir_okay=False, help="Write each test user's top k: user_id,item_id,rank."),
    ] = None,
) -> None:
    """ALS versus popularity on a test split: precision, recall, NDCG and MAP at k and
    catalogue coverage, as JSON.  Items a user had in training are never recommended to them."""
    from training.recommend.train import evaluate

    err = Console(stderr=True)
    try:
        if (train is None) != (test is None):
            raise ValidationError("--train and --test go together", field="train")
        if (interactions is None) == (train is None):
            raise ValidationError(
                "give --interactions, or --train and --test", field="interactions"
            )
        with err.status("reading interactions…"):
            if train is not None and test is not None:
                events, test_events = _load(train), _load(test)
            else:
                assert interactions is not None
                events, test_events = _load(interactions), None
        with err.status("evaluating…") as status:
            result = evaluate(
                events,
                test_events=test_events,
                split=split.value,
                test_fraction=test_fraction,
                k=k,
                seed=seed,
                params=_params(params),
                progress=lambda m: status.update(m),
            )
    except CartwiseError as exc:
        raise fail(err, exc) from None
    if recs_out is not None:
        result.recommendations_frame().to_csv(recs_out, index=False)
    print(json.dumps(result.summary(), indent=2))


@recs_app.command("train")
def recs_train(
    interactions: Annotated[
        Path | None,
        typer.Option(**_FILE, help=f"{_FILE_HELP} Default: the commerce database."),
    ] = None,
    split: SplitOption = Split.time,
    test_fraction: FractionOption = 0.25,
    seed: Annotated[int, typer.Option()] = 42,
    params: ParamsOption = None,
    refit: Annotated[
        bool,
        typer.Option(help="Ship a model fitted on all interactions (else: on the train split)."),
    ] = True,
    promote: Annotated[
        bool, typer.Option(help="Move the `champion` alias to the new version if it is better.")
    ] = True,
    out: Annotated[
        Path | None, typer.Option(file_okay=False, help="Also keep the artifact here.")
    ] = None,
) -> None:
    """Train on the commerce database (or a file), register the artifact in MLflow, and make
    it the champion if its test NDCG@10 beats the champion's; print a JSON summary."""
    from serving.models import registry as registry_of
    from training.recommend.train import train as run_training

    settings = settings_from_env()
    err = Console(stderr=True)
    registry = registry_of(settings, "recs")  # CARTWISE_RECS_MODEL_NAME, as serving follows
    try:
        chosen = _params(params)
        with err.status("reading interactions…"):
            if interactions is not None:
                events, source = _load(interactions), interactions.name
            else:
                events, source = _from_db(settings), "commerce-db"
        with err.status("training…") as status:
            result = run_training(
                events,
                registry=registry,
                split=split.value,
                test_fraction=test_fraction,
                seed=seed,
                params=chosen,
                refit=refit,
                out_dir=out,
                promote=promote,
                tags={"data": source},
                progress=lambda m: status.update(m),
            )
    except CartwiseError as exc:
        raise fail(err, exc) from None
    print(json.dumps(result.summary(), indent=2))


def _from_db(settings: Any) -> pd.DataFrame:
    from serving.bootstrap import bootstrap
    from training.recommend.data import interactions_from_db

    container = bootstrap(settings, migrate=True, load_models=False)
    try:
        return interactions_from_db(container.db)
    finally:
        container.close()


def train_demo_recommender(settings: Settings, db: Database) -> None:
    """First run of ``cartwise demo``: train the recommender on the demo store and make it the
    champion, so widgets are personalized at once.  A failure is reported, not fatal."""
    from serving.models import registry as registry_of
    from training.recommend.data import interactions_from_db
    from training.recommend.train import train

    registry = registry_of(settings, "recs")
    if registry.champion() is not None:
        return
    try:
        with console.status("training the recommender on the demo store…"):
            result = train(interactions_from_db(db), registry=registry, tags={"data": "demo-store"})
    except (CartwiseError, ValueError) as exc:
        console.print(f"[yellow]no recommender yet ({exc}); widgets show trending items[/]")
        return
    als, pop = result.evaluation.als, result.evaluation.popularity
    console.print(
        f"recommender v{result.version} is champion: NDCG@10 {als['ndcg@10']:.3f} "
        f"(popularity {pop['ndcg@10']:.3f})"
    )


@recs_app.command("widgets")
def recs_widgets(
    load: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="YAML {name: settings} to create or replace."
        ),
    ] = None,
) -> None:
    """Print the widget configs as YAML; with --load, apply a YAML file first (all or nothing;
    replicas pick the change up within a second)."""
    import yaml

    from engine.commerce.db import Database
    from engine.recommend.widgets import WidgetStore

    settings = settings_from_env()
    err = Console(stderr=True)
    db = Database(settings.resolved_database_url())
    try:
        db.migrate()
        store = WidgetStore(db)
        store.seed_defaults()
        if load is not None:
            names = apply_yaml(load, store.put_many, err)
            err.print(f"applied: {', '.join(names)}")
        print(
            yaml.safe_dump({n: w.config() for n, w in sorted(store.all().items())}, sort_keys=False)
        )
    finally:
        db.dispose()


def _customers(path: Path | None, container: Any) -> list[str]:
    """The ids of a file's ``customer_id`` column (in order, once each), or every customer."""
    if path is None:
        return list(container.catalog.customer_ids())
    from features.offline import load_table

    frame = load_table(path)
    if "customer_id" not in frame.columns:
        raise ValidationError(f"{path.name} has no customer_id column", field="customers")
    ids = frame["customer_id"].dropna().astype(str).str.strip()
    return list(dict.fromkeys(i for i in ids if i))


@recs_app.command("export")
def recs_export(
    out: Annotated[Path, typer.Option(help="Output file: .parquet, .csv or .csv.gz.")],
    customers: Annotated[
        Path | None,
        typer.Option(
            **_FILE,
            help="CSV / Parquet with a customer_id column; default: every customer.",
        ),
    ] = None,
    widget: Annotated[str, typer.Option(help="The widget whose rules apply.")] = "home",
    k: Annotated[
        int | None, typer.Option(help="Items per customer (default: the widget's).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Registry alias, version or directory (default: CARTWISE_RECS_MODEL)."),
    ] = None,
) -> None:
    """Batch recommendations for e-mails and campaigns: each customer's top items as the widget
    would answer now (stock, boosts, exclusions), one row per item, without logging them as
    shown.  Prints a JSON summary."""
    import time

    import pandas as pd

    from engine.rollout import Rollout
    from serving.bootstrap import bootstrap
    from serving.models import load_rec_model

    settings = settings_from_env()
    err = Console(stderr=True)
    started = time.perf_counter()
    try:
        table_format(out)  # refused before any work
        container = bootstrap(settings, migrate=True, load_models=False)  # widgets seeded
        try:
            chosen = container.recs.widgets.get(widget)
            found = load_rec_model(settings, model)
            if found is None:
                raise ValidationError(
                    "no recommender to export from: train one (cartwise recs train)",
                    field="model",
                    code="no_model",
                )
            container.recs.use_rollout(Rollout(settings.recs_model_name, champion=found))
            rows: list[tuple[Any, ...]] = []
            ids = _customers(customers, container)
            with err.status(f"recommending for {len(ids)} customers…"):
                for customer in ids:
                    rec = container.recs.recommend(
                        customer_id=customer, widget=chosen, k=k, log=False
                    )
                    rows += [
                        (customer, rank, item.sku, item.score, item.reason)
                        for rank, item in enumerate(rec.items, 1)
                    ]
        finally:
            container.close()
    except CartwiseError as exc:
        raise fail(err, exc) from None
    frame = pd.DataFrame(rows, columns=["customer_id", "rank", "sku", "score", "reason"])
    frame["widget"], frame["model_version"] = widget, found.version
    write_table(frame, out)
    summary = {
        "customers": len(ids),
        "rows": len(frame),
        "widget": widget,
        "model_version": found.version,
        "out": str(out),
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(summary))
