"""What every ``cartwise`` command shares: the console and the settings (with logging)."""

from __future__ import annotations

import logging

import typer
from rich.console import Console

from engine.errors import CartwiseError
from serving.settings import Settings

console = Console()


def settings_from_env() -> Settings:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # FAISS logs every CPU-specific build it tries before the one that loads
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    return settings


def fail(err: Console, exc: CartwiseError) -> typer.Exit:
    """Print a refused command's error (code, field, message, first items) in red; the caller
    raises the returned exit (code 2)."""
    field = f" ({exc.field})" if exc.field else ""
    err.print(f"[red]{exc.code}{field}: {exc.message}[/]", highlight=False)
    for item in exc.items[:5]:
        err.print(f"  {item}", highlight=False)
    return typer.Exit(2)
