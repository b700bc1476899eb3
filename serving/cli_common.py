"""What every ``cartwise`` command shares: the console and the settings (with logging)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from engine.errors import CartwiseError, ValidationError
from serving.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

console = Console()


def settings_from_env() -> Settings:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # FAISS logs every CPU-specific build it tries before the one that loads
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    return settings


def write_private(path: Path, text: str) -> None:
    """Write a secret to a file only its owner can read (mode 600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def fail(err: Console, exc: CartwiseError) -> typer.Exit:
    """Print a refused command's error (code, field, message, first items) in red; the caller
    raises the returned exit (code 2)."""
    field = f" ({exc.field})" if exc.field else ""
    err.print(f"[red]{exc.code}{field}: {exc.message}[/]", highlight=False)
    for item in exc.items[:5]:
        err.print(f"  {item}", highlight=False)
    return typer.Exit(2)


def apply_yaml(path: Path, apply: Callable[[Any], list[str]], err: Console) -> list[str]:
    """Read a YAML file and hand its content to ``apply`` (which validates it whole); a file
    that is not YAML, or content ``apply`` refuses, prints the error and exits 2."""
    import yaml

    try:
        return apply(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as exc:
        err.print(f"[red]invalid_request: {path} is not YAML ({exc})[/]")
        raise typer.Exit(2) from None
    except CartwiseError as exc:
        raise fail(err, exc) from None


def aware_time(text: str | None, name: str) -> datetime | None:
    """An ``--{name}`` option's ISO date or time, which must carry a zone; None stays None."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"--{name} is an ISO date or time", field=name) from None
    if value.tzinfo is None:
        raise ValidationError(f"--{name} needs a time zone (e.g. 2026-01-01T00:00Z)", field=name)
    return value


_TABLE_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def table_format(out: Path) -> str:
    """``parquet`` or ``csv`` (``.csv.gz``: compressed), from an ``--out`` file's suffixes."""
    for suffix in reversed([s.lower() for s in out.suffixes]):
        if suffix in _TABLE_FORMATS:
            return _TABLE_FORMATS[suffix]
    raise ValidationError(
        f"{out.name}: write .parquet, .csv or .csv.gz", field="out", code="invalid_request"
    )


def write_table(frame: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if table_format(out) == "parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
