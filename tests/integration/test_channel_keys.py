"""Channel keys on SQLite and PostgreSQL: made, listed and revoked; a secret key is kept only
as its digest (the database refuses it whole); checking a key costs no query but one small
count per refresh period; a key revoked by another process stops working within it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError

from engine.commerce.catalog import Catalog
from engine.commerce.db import Database
from engine.commerce.keys import ChannelKeys
from engine.commerce.schema import ChannelKey
from engine.errors import NotFound, ValidationError

pytestmark = pytest.mark.integration
REFRESH = 0.3


@pytest.fixture
def keys(db: Database, catalog: Catalog) -> ChannelKeys:
    for channel in ("web", "app"):
        catalog.create_channel(id=channel, name=channel, currency="EUR")
    return ChannelKeys(db, refresh_s=REFRESH)


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_keys_are_made_listed_and_revoked(keys: ChannelKeys) -> None:
    secret = keys.create("web", "secret")
    public = keys.create("web", "publishable")
    assert secret.key.startswith("cw_sk_") and public.key.startswith("cw_pk_")
    assert len(secret.key) == len(public.key) == 49  # the prefix and 256 random bits
    assert secret.key != keys.create("web", "secret").key
    listed = keys.for_channel("web")
    assert [k.kind for k in listed] == ["secret", "publishable", "secret"]  # newest first
    mine = next(k for k in listed if k.id == secret.info.id)
    assert (mine.key, mine.display) == (None, secret.key[:12])
    assert next(k for k in listed if k.id == public.info.id).key == public.key
    assert keys.for_channel("app") == []

    found = keys.find(secret.key)
    assert found is not None and (found.channel_id, found.kind) == ("web", "secret")
    assert keys.publishable("web") == public.key and keys.publishable("app") is None
    revoked = keys.revoke("web", secret.info.id)
    assert revoked.revoked_at is not None
    assert keys.find(secret.key) is None  # at once on the revoking process
    assert keys.revoke("web", secret.info.id).revoked_at == revoked.revoked_at
    assert keys.find(public.key) is not None


def test_bad_requests_name_the_field(keys: ChannelKeys) -> None:
    made = keys.create("web", "secret")
    with pytest.raises(NotFound) as err:
        keys.create("nowhere", "secret")
    assert (err.value.code, err.value.field) == ("channel_not_found", "channel_id")
    with pytest.raises(ValidationError) as bad:
        keys.create("web", "root")
    assert bad.value.field == "kind"
    with pytest.raises(NotFound) as other:
        keys.revoke("app", made.info.id)  # not this channel's key
    assert other.value.field == "key_id"
    for given in ("", "cw_sk_", made.key + "x", made.key[:-1], "Bearer " + made.key, "x" * 5000):
        assert keys.find(given) is None


def test_a_secret_key_is_kept_only_as_its_digest(db: Database, keys: ChannelKeys) -> None:
    made = keys.create("web", "secret")
    with db.transaction(readonly=True) as s:
        row = s.scalars(select(ChannelKey).where(ChannelKey.id == made.info.id)).one()
        dumped = " ".join(str(v) for v in s.execute(text("SELECT * FROM channel_keys")).all())
    assert row.token is None and row.digest == hashlib.sha256(made.key.encode()).hexdigest()
    assert made.key not in dumped and made.key[12:] not in dumped
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(text("UPDATE channel_keys SET token = 'cw_sk_x' WHERE kind = 'secret'"))


def test_checking_keys_costs_no_query_between_refreshes(db: Database, keys: ChannelKeys) -> None:
    made = keys.create("web", "publishable")
    keys.warm_up()
    time.sleep(REFRESH)
    keys.find(made.key)  # the one count of this period
    with counted(db) as statements:
        for i in range(2000):  # known keys and unknown ones alike
            keys.find(made.key if i % 2 else f"cw_sk_guess{i}")
    assert statements == []
    time.sleep(REFRESH)
    with counted(db) as statements:
        assert keys.find(made.key) is not None
    queries = [q for q in statements if q != "BEGIN"]  # SQLite's own BEGIN is no query
    assert len(queries) == 1 and "count" in queries[0].lower()  # nothing changed: no reload


def test_a_key_revoked_elsewhere_stops_within_the_refresh_period(
    db: Database, keys: ChannelKeys
) -> None:
    elsewhere = ChannelKeys(db, refresh_s=REFRESH)  # another replica, the CLI
    made = elsewhere.create("web", "secret")
    deadline = time.monotonic() + REFRESH + 0.2
    while keys.find(made.key) is None:  # made elsewhere: known within the period
        assert time.monotonic() < deadline
        time.sleep(0.02)
    elsewhere.revoke("web", made.info.id)
    revoked_at = time.monotonic()
    while keys.find(made.key) is not None:
        assert time.monotonic() - revoked_at < REFRESH + 0.2
        time.sleep(0.02)
