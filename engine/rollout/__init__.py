"""Champion and challenger: which model version answers a request, and which scores beside it.

A ``Rollout`` is one immutable snapshot a service swaps in whole (one attribute write), so a
request in flight keeps the models it started with:

- ``off``: the champion answers everything;
- ``shadow``: the champion answers; the challenger scores the same request and its output is
  logged beside the champion's (``ShadowLog``), never returned;
- ``canary``: the challenger answers ``share`` of the units (customers, or sessions for
  anonymous shoppers), the champion the rest.  The split is a hash of the model's name and the
  unit, so a customer stays on one side for as long as the share does not change, and raising
  the share only moves customers from champion to challenger.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

M = TypeVar("M")
Mode = Literal["off", "shadow", "canary"]
Role = Literal["champion", "challenger"]
MODES: tuple[Mode, ...] = ("off", "shadow", "canary")


def bucket(name: str, unit: str) -> float:
    """A stable number in [0, 1) for ``unit`` under the model ``name``."""
    digest = hashlib.blake2b(f"{name}\x1f{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class Rollout(Generic[M]):
    name: str  # the registered model's name: salts the canary split
    champion: M | None = None
    challenger: M | None = None
    mode: Mode = "off"
    share: float = 0.0

    def answer(self, unit: str | None) -> tuple[M | None, Role]:
        """The model that answers ``unit``, and its role."""
        if (
            self.mode == "canary"
            and self.challenger is not None
            and unit
            and bucket(self.name, unit) < self.share
        ):
            return self.challenger, "challenger"
        return self.champion, "champion"

    def shadow(self) -> M | None:
        """The model to score beside the champion (shadow mode only)."""
        return self.challenger if self.mode == "shadow" else None

    def with_champion(self, model: M | None) -> Rollout[M]:
        return Rollout(self.name, model, self.challenger, self.mode, self.share)
