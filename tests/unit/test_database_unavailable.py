"""Which database errors mean "the database is away" (503 database_unavailable, Retry-After),
decided in one place, and how the HTTP edge answers them."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from engine.commerce.db import unavailable
from engine.errors import Unavailable
from serving.api import errors

pytestmark = pytest.mark.unit
CAUSE = ConnectionError("connection refused")


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("SELECT 1", {}, CAUSE),
        InterfaceError("SELECT 1", {}, CAUSE),
        DBAPIError("SELECT 1", {}, CAUSE, connection_invalidated=True),
        PoolTimeout("QueuePool limit reached"),
    ],
    ids=["operational", "interface", "invalidated", "pool-timeout"],
)
def test_lost_refused_or_exhausted_connections_are_unavailable(exc: Exception) -> None:
    error = unavailable(exc)
    assert error is not None and error.code == "database_unavailable"
    assert "database" in error.message


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("INSERT", {}, ValueError("duplicate key")),
        DBAPIError("x", {}, CAUSE),
        KeyError("k"),
    ],
    ids=["integrity", "other-dbapi", "not-a-database-error"],
)
def test_other_errors_are_not(exc: Exception) -> None:
    assert unavailable(exc) is None


def test_an_unavailable_error_is_itself() -> None:
    error = Unavailable("redis is away", code="features_unavailable")
    assert unavailable(error) is error


def test_an_escaped_connection_error_is_a_503_with_retry_after() -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/lost")
    def lost() -> None:
        raise OperationalError("SELECT 1", {}, CAUSE)

    @app.get("/bug")
    def bug() -> None:
        raise IntegrityError("INSERT", {}, ValueError("duplicate key"))

    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/lost")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "database_unavailable"
    assert client.get("/bug").status_code == 500
