"""Card data comes only as a fingerprint, BIN or last4: a full card number (PAN) is refused
wherever a request could carry one, before anything stores or logs it.

- Bodies: every string of every request model (``schemas.In``, free-form configurations too),
  however deep, through ``refuse_card_numbers``: a 422 ``card_number_refused`` naming the
  field.
- URLs: a path segment or query value (``RefuseCardNumbersInUrls``): the same 422 naming the
  query parameter, or ``path``.

The error never repeats the value. What counts as a card number: ``engine.commerce.domain.
carries_pan`` (13-19 digits passing the Luhn check, alone or inside a value).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from pydantic_core import PydanticCustomError
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.commerce.domain import carries_pan

PAN_REFUSED = "card_number_refused"
MESSAGE = "looks like a full card number; send card data only as a fingerprint, BIN or last4"
_DIGITS = "0123456789"
_NO_DIGITS = str.maketrans("", "", _DIGITS)


def refuse_card_numbers(value: Any) -> Any:
    """``value`` unchanged, or a validation error if any string in it carries a card
    number."""
    if isinstance(value, str):
        if carries_pan(value):
            raise PydanticCustomError(PAN_REFUSED, MESSAGE)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_card_numbers(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_card_numbers(key)
            refuse_card_numbers(item)
    return value


def card_number_in_url(path: str, query: bytes) -> str | None:
    """The query parameter (or ``path``) that carries a card number, or None. A URL with
    fewer than 13 digits in all (nearly every one) is let through after one count."""
    digits = (
        len(path)
        - len(path.translate(_NO_DIGITS))
        + len(query)
        - len(query.translate(None, _DIGITS.encode()))
    )
    if digits < 13:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if carries_pan(name):
            return "query"  # the name is the card number: not one to repeat
        if carries_pan(value):
            return name
    if any(carries_pan(unquote(segment)) for segment in path.split("/")):
        return "path"
    return None


class RefuseCardNumbersInUrls:
    """ASGI middleware: a request whose URL carries a card number is answered 422 before any
    route sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field = card_number_in_url(scope.get("path", ""), scope.get("query_string", b""))
            if field is not None:
                body = {"code": PAN_REFUSED, "message": f"{field} {MESSAGE}", "field": field}
                await send(
                    {
                        "type": "http.response.start",
                        "status": 422,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": orjson.dumps({"error": body})})
                return
        await self.app(scope, receive, send)
