"""Alembic environment: runs on the engine the caller hands in (see Database.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import engine.crm.schema
import engine.experiments.schema
import engine.fraud.schema
import engine.pricing.schema
import engine.recommend.schema
import engine.rollout.schema  # noqa: F401  (registers the tables of every domain)
from engine.commerce.schema import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    engine = config.attributes.get("connection_engine")
    if engine is None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no engine given and no sqlalchemy.url set")
        engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
