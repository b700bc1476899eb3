"""FastAPI dependencies: the container, and who is calling.

Three kinds of route (docs/security.md): admin routes take the admin token; storefront routes
(what a shop's pages call: recommendations, product cards, quotes, events) take a channel's
publishable or secret key; checkout routes (what a shop's servers call: fraud scores, orders,
payments, customers) take its secret key. The admin token is accepted everywhere. A key speaks
for one channel: a request naming another channel (a ``channel`` query parameter or body
field, or an order placed on another channel) is refused with ``channel_mismatch``.
Credentials travel as ``Authorization: Bearer …`` and are compared in constant time (the admin
token) or looked up by digest (keys); no message or log line ever carries them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from engine.errors import Forbidden, Unauthorized
from serving.bootstrap import Container


def container(request: Request) -> Container:
    return request.app.state.container


# The dependencies are coroutines, though nothing in them waits: FastAPI runs a plain ``def``
# dependency in its thread pool, so every route taking one (the event-loop routes too:
# recommendations, similar items) first waited for one of the pool's 40 threads.  When the
# SQL-writing routes held them all (each waiting its turn for SQLite's write lock), reads that
# never touch the database queued behind them, with the CPU half idle (docs/benchmarks.md).
async def _container(request: Request) -> Container:
    return container(request)


Box = Annotated[Container, Depends(_container)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: the admin, a channel's key, or anyone (keys off)."""

    kind: Literal["admin", "secret", "publishable", "open"]
    channel: str | None = None  # the channel a key speaks for; None: any channel

    def check_channel(self, channel: str | None, field: str = "channel") -> None:
        if self.channel is not None and channel is not None and channel != self.channel:
            raise Forbidden(
                f"this key is for channel {self.channel}; {field} names another",
                field=field,
                code="channel_mismatch",
            )

    def check_order(self, box: Container, order_id: str) -> None:
        """A key may act only on its own channel's orders."""
        if self.channel is not None and box.orders.channel_of(order_id) != self.channel:
            raise Forbidden(
                f"order {order_id} was not placed on channel {self.channel}",
                field="order_id",
                code="channel_mismatch",
            )


ADMIN = Caller("admin")
OPEN = Caller("open")


def _bearer(request: Request) -> str | None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


def _is_admin(box: Container, given: str) -> bool:
    token = box.settings.admin_token.get_secret_value()
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def require_admin(request: Request) -> None:
    box = container(request)
    if not box.settings.admin_token.get_secret_value():
        raise Unauthorized(
            "admin endpoints are disabled: set CARTWISE_ADMIN_TOKEN", code="admin_disabled"
        )
    given = _bearer(request)
    if given is None or not _is_admin(box, given):
        raise Unauthorized("admin bearer token required", field="Authorization")


def caller(request: Request, *, secret: bool) -> Caller:
    """The caller of a storefront (``secret=False``) or checkout (``secret=True``) route; a
    ``channel`` query parameter must be the key's channel."""
    box = container(request)
    given = _bearer(request)
    if given is not None and _is_admin(box, given):
        return ADMIN
    if box.settings.channel_keys == "off":
        return OPEN
    if given is None:
        raise Unauthorized(
            f"a channel's {'secret' if secret else 'publishable or secret'} key is required "
            "(Authorization: Bearer …)",
            field="Authorization",
        )
    key = box.keys.find(given)
    if key is None:
        raise Unauthorized("unknown or revoked key", field="Authorization")
    if secret and key.kind != "secret":
        raise Forbidden(
            "this route needs the channel's secret key, not its publishable key",
            field="Authorization",
            code="secret_key_required",
        )
    found = Caller("secret" if key.kind == "secret" else "publishable", key.channel_id)
    found.check_channel(request.query_params.get("channel"))
    return found


def storefront(request: Request) -> Caller:
    return caller(request, secret=False)


def checkout(request: Request) -> Caller:
    return caller(request, secret=True)


def order_checkout(order_id: str, request: Request) -> Caller:
    """A checkout route on one order: the order must be on the key's channel."""
    found = checkout(request)
    found.check_order(container(request), order_id)
    return found


async def _require_admin(request: Request) -> None:
    require_admin(request)


async def _storefront(request: Request) -> Caller:
    return storefront(request)


async def _checkout(request: Request) -> Caller:
    return checkout(request)


Admin = Depends(_require_admin)
Storefront = Depends(_storefront)
Checkout = Depends(_checkout)
OrderCheckout = Depends(order_checkout)  # reads the order's channel: stays in the pool
StorefrontCaller = Annotated[Caller, Storefront]
CheckoutCaller = Annotated[Caller, Checkout]
