"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

import engine.fraud.schema  # noqa: F401  (the fraud tables share the metadata)
from engine.commerce.catalog import Catalog
from engine.commerce.db import MIGRATIONS, Database
from engine.commerce.schema import Base

pytestmark = pytest.mark.integration


def _diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


def test_migrated_schema_matches_the_models(db: Database) -> None:
    assert _diff(db) == []


def test_every_model_table_exists(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_migrating_twice_is_harmless_and_keeps_data(db: Database, catalog: Catalog) -> None:
    catalog.create_product(
        sku="KEEP", title="Keep", category="misc", list_price=Decimal("1.00"), currency="EUR"
    )
    db.migrate()
    db.migrate()
    with db.engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert versions == [_head()]
    assert catalog.get_product("KEEP").list_price == Decimal("1.00")


def _head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def test_the_fraud_migration_downgrades_and_upgrades_again(db: Database) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection_engine"] = db.engine
    command.downgrade(cfg, "0001")
    assert not {t for t in inspect(db.engine).get_table_names() if t.startswith("fraud_")}
    db.migrate()
    assert _diff(db) == []
    with db.engine.connect() as conn:
        rules = conn.execute(text("SELECT count(*) FROM fraud_rules")).scalar_one()
    assert rules == 10  # the default list rules
    assert _diff(db) == []


def test_the_database_itself_refuses_oversold_stock(db: Database, catalog: Catalog) -> None:
    """Defence in depth: the CHECK constraint holds even if application code went wrong."""
    catalog.create_warehouse(id="wh", name="W", country="DE")
    catalog.create_product(
        sku="S", title="S", category="misc", list_price=Decimal("1.00"), currency="EUR"
    )
    catalog.set_stock("wh", "S", 3)
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(text("UPDATE stock SET allocated = 4 WHERE sku = 'S'"))
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(text("UPDATE stock SET on_hand = -1, allocated = 0 WHERE sku = 'S'"))
    assert [lvl.on_hand for lvl in catalog.stock_levels("S")] == [3]
