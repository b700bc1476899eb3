"""The one place that turns Settings into live objects (stores, engine services, the bus)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from engine.analytics.service import Analytics
from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.interactions import Interactions
from engine.commerce.keys import ChannelKeys
from engine.commerce.orders import Orders
from engine.crm.profiles import CustomerSegments
from engine.crm.service import CustomerSegmentation
from engine.events import MessageBus
from engine.experiments.hooks import PriceTrials, RecTrials
from engine.experiments.service import Experiments
from engine.fraud.config import FraudConfig
from engine.fraud.log import DecisionLog
from engine.fraud.service import FraudService
from engine.pricing.config import PricingConfig
from engine.pricing.service import PricingService
from engine.recommend import rollup
from engine.recommend.catalog import CatalogCache
from engine.recommend.log import RecommendationLog
from engine.recommend.service import Recommender
from engine.recommend.widgets import WidgetStore
from engine.rollout.log import ShadowLog
from features.backends import RedisBackend
from features.connection import connect
from features.fraud import TransactionFeatures
from features.ingest import FeatureIngestor
from features.pricing import PricingInputs
from features.shopper import ShopperReader
from features.store import FeatureStore
from features.telemetry import LatencyReader, LatencyRecorder
from serving.lifecycle import ModelLifecycle, lifecycle
from serving.metrics import BacklogMetrics, process_exited
from serving.models import load_rec_model
from serving.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    db: Database
    bus: MessageBus
    catalog: Catalog
    orders: Orders
    interactions: Interactions
    keys: ChannelKeys
    features: FeatureStore
    ingestor: FeatureIngestor
    fraud: FraudService
    recs: Recommender
    pricing: PricingService
    crm: CustomerSegmentation
    telemetry: LatencyRecorder
    latency: LatencyReader
    experiments: Experiments
    analytics: Analytics
    shadow: ShadowLog | None = None
    lifecycle: ModelLifecycle | None = None  # a replica: follows the model registry
    versions: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        if self.lifecycle is not None:
            self.lifecycle.stop()
        if self.shadow is not None:
            self.shadow.close()
        self.telemetry.close()
        self.fraud.decisions.close()
        self.recs.log.close()
        self.experiments.close()
        self.db.dispose()
        self.features.close()
        process_exited()  # its backlog gauge leaves /metrics with it


def bootstrap(
    settings: Settings | None = None, *, migrate: bool = True, load_models: bool = True
) -> Container:
    """``load_models=False`` skips the fraud model (CLI commands that do not score)."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if load_models:
        _one_thread_per_request()
    db = Database(settings.resolved_database_url())
    if migrate:
        db.migrate()
    bus = MessageBus()
    bulk_client = connect(settings.redis_url, timeout_ms=settings.redis_bulk_timeout_ms)
    features = FeatureStore(
        RedisBackend(connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms)),
        bulk=RedisBackend(bulk_client),
        backlog_capacity=settings.feature_backlog,
        backlog_observer=BacklogMetrics(),
    )
    ingestor = FeatureIngestor(features)
    ingestor.subscribe(bus)
    segments = CustomerSegments(db)  # shared: pricing discounts and widget audiences
    experiments = Experiments(db)  # A/B tests over widgets, the recommender and price rules
    widgets = WidgetStore(db)
    # events that name a recommendation count toward its widget's hourly stats
    interactions = Interactions(db, bus, within_insert=[rollup.recorded])
    decisions = DecisionLog(db)
    rec_log = RecommendationLog(db)
    shadow = ShadowLog(db)  # challengers' outputs beside the champions'

    container = Container(
        settings=settings,
        db=db,
        bus=bus,
        catalog=Catalog(db, bus),
        orders=Orders(db, bus),
        interactions=interactions,
        keys=ChannelKeys(db),
        features=features,
        ingestor=ingestor,
        fraud=FraudService(
            TransactionFeatures(features),
            FraudConfig(db),
            decisions,
            shadow_log=shadow,
            name=settings.fraud_model_name,
        ),
        recs=Recommender(
            ShopperReader(features),
            CatalogCache(db),
            widgets,
            rec_log,
            segments=segments,
            shadow_log=shadow,
            name=settings.recs_model_name,
            trials=RecTrials(
                experiments,
                widgets,
                (lambda spec: load_rec_model(settings, spec)) if load_models else None,
            ),
        ),
        pricing=PricingService(
            db,
            PricingConfig(db, base_currency=settings.base_currency),
            PricingInputs(features, bulk_client),
            quote_ttl_s=settings.quote_ttl_s,
            competitor_ttl_s=settings.competitor_ttl_s,
            segments=segments,
            trials=PriceTrials(experiments),
        ),
        crm=CustomerSegmentation(db, base_currency=settings.base_currency, profiles=segments),
        telemetry=LatencyRecorder(bulk_client),
        latency=LatencyReader(bulk_client),
        experiments=experiments,
        shadow=shadow,
        analytics=Analytics(  # reads what the decision and recommendation logs wrote behind
            db,
            interactions.channels,
            base_currency=settings.base_currency,
            flush=(decisions.flush, rec_log.flush),
        ),
    )
    if migrate:
        container.recs.widgets.seed_defaults()
        container.pricing.config.seed_defaults()
    if load_models:  # a replica: no request pays for compilation or a cold path
        container.lifecycle = lifecycle(settings, container)
        container.lifecycle.refresh()  # the models the registry names, before any request
        container.lifecycle.start()
        container.keys.warm_up()
        container.pricing.warm_up()
        container.recs.warm_up()
    container.versions = _versions()
    return container


def _one_thread_per_request() -> None:
    """A replica serves many requests at once on few cores: FAISS (OpenMP) and numpy's BLAS
    run one thread each, as ONNX Runtime does, instead of spinning threads that fight the
    request threads for the CPU."""
    from threadpoolctl import threadpool_limits

    from engine.recommend.index import single_thread

    single_thread()
    threadpool_limits(1)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("cartwise", "ray", "fastapi", "sqlalchemy", "redis"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out
