"""``cartwise channels keys …``: make, list and revoke the API keys of a sales channel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from engine.commerce.keys import REFRESH_S, ChannelKeys, KeyInfo
from engine.errors import CartwiseError
from serving.cli_common import console, fail, settings_from_env, write_private

if TYPE_CHECKING:
    from serving.settings import Settings

channels_app = typer.Typer(help="Sales channels: their API keys.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys: publishable (cw_pk_, for shop pages) and secret (cw_sk_, for shop servers).",
    no_args_is_help=True,
)
channels_app.add_typer(keys_app, name="keys")
Channel = Annotated[str, typer.Argument(help="The channel's id (e.g. web-de).")]


@contextmanager
def _keys() -> Iterator[ChannelKeys]:
    from engine.commerce.db import Database

    err = Console(stderr=True)
    db = Database(settings_from_env().resolved_database_url())
    try:
        db.migrate()
        yield ChannelKeys(db)
    except CartwiseError as exc:
        raise fail(err, exc) from None
    finally:
        db.dispose()


@keys_app.command("create")
def create(
    channel: Channel,
    kind: Annotated[
        str, typer.Option(help="publishable (shop pages) or secret (shop servers).")
    ] = "secret",
) -> None:
    """Make a key for the channel and print it. A secret key is printed this once and never
    again (only its digest is kept): put it in the shop's server configuration."""
    with _keys() as keys:
        made = keys.create(channel, kind)
    console.print(f"{made.info.kind} key {made.info.id} for channel {channel}:")
    console.print(made.key, highlight=False, soft_wrap=True)
    if made.info.kind == "secret":
        console.print("[yellow]It is shown only now: keep it on the shop's servers.[/]")


@keys_app.command("list")
def list_keys(channel: Channel) -> None:
    """The channel's keys, newest first: publishable keys whole, secret keys by their first
    characters."""
    with _keys() as keys:
        found = keys.for_channel(channel)
    console.print(_table(channel, found))


@keys_app.command("revoke")
def revoke(channel: Channel, key_id: Annotated[str, typer.Argument(help="key_…")]) -> None:
    """Revoke a key: every replica refuses it within a second or so."""
    with _keys() as keys:
        info = keys.revoke(channel, key_id)
    console.print(
        f"revoked {info.kind} key {info.id} ({info.display}…) of channel {channel}; "
        f"serving replicas refuse it within {REFRESH_S:g} s"
    )


def _table(channel: str, keys: list[KeyInfo]) -> Table:
    table = Table(title=f"keys of channel {channel}")
    for name in ("id", "kind", "key", "created", "revoked"):
        table.add_column(name, no_wrap=name in ("id", "key"))
    for k in keys:
        table.add_row(
            k.id,
            k.kind,
            k.key or f"{k.display}…",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    return table


@dataclass(frozen=True)
class DemoKeys:
    channel: str
    publishable: str
    secret: str


def demo_keys(settings: Settings) -> DemoKeys | None:
    """A publishable key for each channel that has none, and a secret key for the first
    channel, kept in the data dir (mode 600, like the admin token) and made again only once
    revoked, so every ``make run`` prints the same two. None: the store has no channel."""
    from engine.commerce.catalog import Catalog
    from engine.events import MessageBus

    with _keys() as keys:
        channels = [c.id for c in Catalog(keys.db, MessageBus()).list_channels()]
        if not channels:
            return None
        for channel in channels:
            if keys.publishable(channel) is None:
                keys.create(channel, "publishable")
        saved = settings.data_dir / "demo_secret_key"
        secret = saved.read_text().strip() if saved.exists() else ""
        found = keys.find(secret)
        if found is None or found.kind != "secret":
            secret = keys.create(channels[0], "secret").key
            write_private(saved, secret)
            found = keys.find(secret)
        assert found is not None
        publishable = keys.publishable(found.channel_id)
        assert publishable is not None
        return DemoKeys(found.channel_id, publishable, secret)
