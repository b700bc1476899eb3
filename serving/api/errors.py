"""Map every error to ``{"error": {"code", "message", "field"?, "items"?}}`` with a 4xx status.

``Unavailable`` (a backing service is away) is a 503 with Retry-After; so is any database error
that ``engine.commerce.db.unavailable`` recognises as a lost or refused connection, should one
escape a transaction.  Anything else unexpected is a 500, logged."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.commerce.db import unavailable
from engine.errors import (
    CartwiseError,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
)
from serving.api.carddata import PAN_REFUSED

log = logging.getLogger(__name__)

RETRY_AFTER_S = "1"  # seconds; a restarted database or a reconnected Redis is back by then
STATUS: list[tuple[type[CartwiseError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (Unauthorized, 401),
    (Forbidden, 403),
    (Unavailable, 503),
]


def status_for(exc: CartwiseError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 422


def error_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'lines', 0, 'qty') -> 'lines[0].qty'; ('query', 'limit') -> 'limit'."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def cartwise_response(exc: CartwiseError) -> JSONResponse:
    headers = {"Retry-After": RETRY_AFTER_S} if isinstance(exc, Unavailable) else None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(status_for(exc), exc.to_dict(), headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(CartwiseError)
    async def _cartwise(_: Request, exc: CartwiseError) -> JSONResponse:
        return cartwise_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(
                400,
                {
                    "code": "malformed_json",
                    "message": "request body is not valid JSON",
                    "field": "body",
                },
            )
        items = [
            {"field": field_path(e.get("loc", ())), "message": e.get("msg", "invalid")}
            for e in errors
        ]
        first = items[0]
        refused = any(e.get("type") == PAN_REFUSED for e in errors)
        return error_response(
            422,
            {
                "code": PAN_REFUSED if refused else "invalid_request",
                "message": "; ".join(f"{i['field']}: {i['message']}" for i in items),
                "field": first["field"],
                "items": items,
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code,
            {"code": code, "message": str(exc.detail)},
            dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        away = unavailable(exc)
        if away is not None:
            log.warning("database unavailable (%s)", type(exc).__name__)
            return cartwise_response(away)
        log.exception("unhandled error")
        return error_response(
            500, {"code": "internal_error", "message": "internal error; it has been logged"}
        )
