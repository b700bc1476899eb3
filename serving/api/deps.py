"""FastAPI dependencies: the container and the admin guard."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from engine.errors import Unauthorized
from serving.bootstrap import Container


def container(request: Request) -> Container:
    return request.app.state.container


Box = Annotated[Container, Depends(container)]


def require_admin(
    box: Box, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    token = box.settings.admin_token.get_secret_value()
    if not token:
        raise Unauthorized(
            "admin endpoints are disabled: set CARTWISE_ADMIN_TOKEN", code="admin_disabled"
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("admin bearer token required", field="Authorization")


Admin = Depends(require_admin)
