"""Identifiers: a prefix, then a time-ordered, random hex tail (sortable by creation)."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1_000_000:011x}{secrets.token_hex(6)}"
