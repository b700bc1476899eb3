"""API keys of the sales channels, publishable and secret (the way Stripe has them).

A publishable key (``cw_pk_…``) goes into a shop's pages: it may read the storefront and send
its events. It is public by design and kept whole, so it can be shown again. A secret key
(``cw_sk_…``) stays on the shop's servers: it may also score payments and place and move
orders. It is shown once, when made, and kept only as its SHA-256 digest with its first
characters to recognise it by. Both are 256 random bits (``secrets.token_urlsafe``), so a plain
digest is enough: there is nothing to guess that a slow hash would protect.

Every process keeps the active keys in memory by digest, so checking a key costs no query. At
most every ``refresh_s`` seconds one count query tells whether keys were made or revoked since
(and only then are they read again): a key made or revoked elsewhere is seen within
``refresh_s``, and at once by the process that made or revoked it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.commerce.ids import new_id
from engine.commerce.schema import Channel, ChannelKey, utcnow
from engine.errors import CartwiseError, NotFound, ValidationError
from engine.reloading import Reloading

log = logging.getLogger(__name__)
Kind = Literal["publishable", "secret"]
PK, SK = "cw_pk_", "cw_sk_"  # what a publishable and a secret key start with
PREFIX: dict[str, str] = {"publishable": PK, "secret": SK}
SHOWN = 12  # characters a secret key is listed by: its prefix and six more
REFRESH_S = 1.0
MAX_KEY = 100  # longer is no key of ours (made keys are 49 characters)


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """What a valid key grants: its channel, and publishable or secret."""

    id: str
    channel_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as listed: a publishable key whole, a secret key by its first characters."""

    id: str
    channel_id: str
    kind: str
    display: str
    key: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ChannelKey) -> KeyInfo:
        return cls(
            row.id, row.channel_id, row.kind, row.display, row.token, row.created_at, row.revoked_at
        )


@dataclass(frozen=True, slots=True)
class NewKey:
    info: KeyInfo
    key: str  # the whole key: the only time a secret key is seen


@dataclass(frozen=True, slots=True)
class Active:
    by_digest: Mapping[str, ActiveKey]
    publishable: Mapping[str, str]  # channel -> its newest publishable key


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _stamp(s: Session) -> tuple[int, int]:
    """Keys are never deleted and a revocation is never undone: the two counts change
    whenever the active set does."""
    made, revoked = s.execute(select(func.count(), func.count(ChannelKey.revoked_at))).one()
    return int(made), int(revoked)


def _load(s: Session, _stamp: object) -> Active:
    rows = s.scalars(
        select(ChannelKey).where(ChannelKey.revoked_at.is_(None)).order_by(ChannelKey.created_at)
    )
    by_digest, publishable = {}, {}
    for row in rows:
        by_digest[row.digest] = ActiveKey(row.id, row.channel_id, row.kind)
        if row.token is not None:
            publishable[row.channel_id] = row.token
    return Active(by_digest, publishable)


class ChannelKeys:
    def __init__(
        self,
        db: Database,
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.clock = clock
        self._active = Reloading(db, _stamp, _load, poll_s=refresh_s)

    def warm_up(self) -> None:
        """Read the active keys before the first request needs them."""
        try:
            self._active.get()
        except CartwiseError as exc:  # the database is not there yet: the first request reads
            log.warning("channel keys not read at start: %s", exc.message)

    def create(self, channel_id: str, kind: str) -> NewKey:
        if kind not in PREFIX:
            raise ValidationError("kind must be publishable or secret", field="kind")
        key = PREFIX[kind] + secrets.token_urlsafe(32)
        row = ChannelKey(
            id=new_id("key"),
            channel_id=channel_id,
            kind=kind,
            digest=digest(key),
            display=key[:SHOWN],
            token=key if kind == "publishable" else None,
            created_at=self.clock(),
        )
        with self.db.transaction() as s:
            self._channel(s, channel_id)
            s.add(row)
        self._active.invalidate()
        return NewKey(KeyInfo.of(row), key)

    def for_channel(self, channel_id: str) -> list[KeyInfo]:
        """The channel's keys, newest first, revoked ones included."""
        with self.db.transaction(readonly=True) as s:
            self._channel(s, channel_id)
            rows = s.scalars(
                select(ChannelKey)
                .where(ChannelKey.channel_id == channel_id)
                .order_by(ChannelKey.created_at.desc(), ChannelKey.id.desc())
            )
            return [KeyInfo.of(row) for row in rows]

    def revoke(self, channel_id: str, key_id: str) -> KeyInfo:
        """Revoke a key of the channel (revoking it again changes nothing)."""
        with self.db.transaction() as s:
            row = s.get(ChannelKey, key_id, with_for_update=True)
            if row is None or row.channel_id != channel_id:
                raise NotFound(f"channel {channel_id} has no key {key_id}", field="key_id")
            if row.revoked_at is None:
                row.revoked_at = self.clock()
            info = KeyInfo.of(row)
        self._active.invalidate()
        return info

    def find(self, key: str) -> ActiveKey | None:
        """The active key this is, or None: one digest and a dictionary look-up (the digest,
        not the key, is what the look-up's timing could tell about)."""
        if len(key) > MAX_KEY or not key.startswith((PK, SK)):
            return None
        return self._active.get().by_digest.get(digest(key))

    def publishable(self, channel_id: str) -> str | None:
        """The channel's newest active publishable key (what a shop page embeds)."""
        return self._active.get().publishable.get(channel_id)

    @staticmethod
    def _channel(s: Session, channel_id: str) -> None:
        if s.get(Channel, channel_id) is None:
            raise NotFound(f"no channel {channel_id}", field="channel_id", code="channel_not_found")
