"""The same FastAPI app and engine objects without Ray: ``uvicorn serving.asgi:create --factory``.

For the side-by-side benchmark (``make loadtest`` compares it with the Serve deployment) and for
debugging a request without Ray in the way.  The database must be migrated already
(``cartwise db upgrade``).
"""

from __future__ import annotations

from fastapi import FastAPI

from serving import heap
from serving.api.app import create_app
from serving.bootstrap import bootstrap
from serving.cli_common import settings_from_env


def create() -> FastAPI:
    app = create_app(bootstrap(settings_from_env(), migrate=False))
    heap.ready()
    return app
