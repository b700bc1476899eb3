"""The one place that turns Settings into live objects (stores, engine services, the bus)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.orders import Orders
from engine.events import MessageBus
from features.connection import RedisClient, connect
from serving.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    db: Database
    bus: MessageBus
    catalog: Catalog
    orders: Orders
    redis: RedisClient
    versions: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        self.db.dispose()
        self.redis.close()


def bootstrap(settings: Settings | None = None, *, migrate: bool = True) -> Container:
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url())
    if migrate:
        db.migrate()
    bus = MessageBus()
    container = Container(
        settings=settings,
        db=db,
        bus=bus,
        catalog=Catalog(db, bus),
        orders=Orders(db, bus),
        redis=connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms),
    )
    container.versions = _versions()
    return container


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("cartwise", "ray", "fastapi", "sqlalchemy", "redis"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out
