"""What every ``cartwise`` command shares: the console and the settings (with logging)."""

from __future__ import annotations

import logging

from rich.console import Console

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
