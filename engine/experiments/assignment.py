"""Sticky assignment of shoppers to variants: pure, deterministic, no I/O.

A shopper's bucket is ``int(sha256(f"{key}:{unit}")[:8], 16) % 10_000``: the same experiment
key and customer (or session) id give the same bucket on every replica and after every restart,
and different experiments split independently.  Buckets are laid over the variants' cumulative
weights (integers or percents summing to 100), so a variant of weight 30 owns 3000 buckets.

Variants: 2 to 10, unique names; the one named ``control`` (else the first) is the control
that results compare the others with.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ValidationError

BUCKETS = 10_000
MIN_VARIANTS, MAX_VARIANTS = 2, 10
NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float  # percent of shoppers
    config: Mapping[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "config": dict(self.config)}


@dataclass(frozen=True)
class Assignment:
    """A shopper's variant in a running experiment."""

    key: str
    target_kind: str
    target: str
    variant: str
    config: Mapping[str, Any]

    def public(self) -> dict[str, str]:
        return {"key": self.key, "variant": self.variant}


def bucket(key: str, unit: str) -> int:
    digest = hashlib.sha256(f"{key}:{unit}".encode()).hexdigest()
    return int(digest[:8], 16) % BUCKETS


@dataclass(frozen=True)
class Split:
    """Variants with their cumulative bucket bounds, ready for one bisect per shopper."""

    variants: tuple[Variant, ...]
    bounds: tuple[int, ...]  # exclusive upper bucket of each variant

    @classmethod
    def of(cls, variants: Sequence[Variant]) -> Split:
        bounds, total = [], 0.0
        for v in variants:
            total += v.weight
            bounds.append(round(total * BUCKETS / 100))
        return cls(tuple(variants), tuple(bounds))

    def choose(self, key: str, unit: str) -> Variant:
        i = bisect_right(self.bounds, bucket(key, unit))
        return self.variants[min(i, len(self.variants) - 1)]


def control(variants: Sequence[Variant]) -> Variant:
    return next((v for v in variants if v.name == "control"), variants[0])


def parse_variants(raw: Any) -> tuple[Variant, ...]:
    """Validated variants; a ``ValidationError`` names ``variants[i].field``."""
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ValidationError("variants is a list", field="variants")
    if not MIN_VARIANTS <= len(raw) <= MAX_VARIANTS:
        raise ValidationError(
            f"an experiment has {MIN_VARIANTS} to {MAX_VARIANTS} variants", field="variants"
        )
    out: list[Variant] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        variant = _variant(item, f"variants[{i}]")
        if variant.name in seen:
            raise ValidationError(
                f"variant {variant.name!r} is named twice", field=f"variants[{i}].name"
            )
        seen.add(variant.name)
        out.append(variant)
    total = sum(v.weight for v in out)
    if abs(total - 100) > 1e-6:
        raise ValidationError(
            f"the weights sum to {total:g}; they must sum to 100", field="variants"
        )
    return tuple(out)


def _variant(item: Any, where: str) -> Variant:
    if not isinstance(item, Mapping):
        raise ValidationError("a variant is an object {name, weight, config}", field=where)
    for key in item:
        if key not in ("name", "weight", "config"):
            raise ValidationError(f"unknown variant setting {key!r}", field=f"{where}.{key}")
    name = item.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationError(
            "a variant name is 1 to 64 of a-z, 0-9, - and _", field=f"{where}.name"
        )
    weight = item.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise ValidationError("weight must be a number (percent)", field=f"{where}.weight")
    # a hundredth of a percent is one bucket: finer weights could not be honoured
    if not 0 < weight <= 100 or abs(round(weight * 100) - weight * 100) > 1e-6:
        raise ValidationError(
            "weight is a percent in (0, 100] with at most two decimals", field=f"{where}.weight"
        )
    config = item.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ValidationError("config must be an object", field=f"{where}.config")
    return Variant(name=name, weight=float(weight), config=dict(config))
