"""Widget configurations: what a storefront slot shows and how.

A widget names a strategy (personalized, similar, bought_together, trending), its filters
(purchased, out of stock, categories), boosts per category, promotions (a share of the slots for
a promoted set), diversity (at most n items per category) and the fallback chain used when the
strategy cannot fill the slots.

Customer segments (RFM, ``engine.crm``): a ``promotions`` entry (``skus``, ``category``) with
``segments`` is shown only to customers in those segments; a widget with ``audience:
{segments: [..]}`` answers customers outside its audience (and anonymous shoppers) with its
fallback chain instead of its own strategy, so a "win-back" widget can target at_risk
customers.  Defaults ship in ``widgets.yaml``; the admin API edits them in
SQL, and replicas pick edits up within ``poll_s`` seconds (a version column, like the fraud
rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.commerce.db import Database
from engine.crm.rfm import SEGMENTS as RFM_SEGMENTS
from engine.errors import NotFound, ValidationError
from engine.recommend.schema import RecWidget
from engine.reloading import Reloading

Strategy = Literal["personalized", "similar", "bought_together", "trending"]
STRATEGIES: tuple[Strategy, ...] = ("personalized", "similar", "bought_together", "trending")
FALLBACKS = ("personalized", "similar", "bought_together", "trending_category", "trending")
MAX_K = 100


class UnknownWidget(ValidationError):
    """A request names a widget that is not configured (422: the request is at fault)."""

    code = "unknown_widget"


class WidgetNotFound(NotFound):
    code = "widget_not_found"


@dataclass(frozen=True)
class Promotion:
    """A promoted set (``skus``, then trending items of ``category``), shown to customers in
    ``segments`` (RFM segments; empty: everyone)."""

    skus: tuple[str, ...] = ()
    category: str | None = None
    segments: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Any, where: str) -> Promotion:
        if not isinstance(config, Mapping):
            raise ValidationError("a promotion is a mapping", field=where)
        for key in config:
            if key not in ("skus", "category", "segments"):
                raise ValidationError(f"unknown promotion setting {key!r}", field=f"{where}.{key}")
        skus = config.get("skus") or []
        if not isinstance(skus, list) or not all(isinstance(x, str) and x for x in skus):
            raise ValidationError("skus is a list of SKUs", field=f"{where}.skus")
        category = config.get("category")
        if category is not None and (not isinstance(category, str) or not category):
            raise ValidationError("category is a category name", field=f"{where}.category")
        if not skus and category is None:
            raise ValidationError("a promotion needs skus or a category", field=f"{where}.skus")
        segments = _segments(config.get("segments"), f"{where}.segments")
        return cls(tuple(skus), category, segments)

    def config(self) -> dict[str, Any]:
        return {"skus": list(self.skus), "category": self.category, "segments": list(self.segments)}

    def shown_to(self, segment: str | None) -> bool:
        return not self.segments or segment in self.segments


def _segments(value: Any, where: str) -> tuple[str, ...]:
    """A list of RFM segment names (None: empty); an unknown name is refused."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValidationError("segments is a list of RFM segments", field=where)
    for name in value:
        if name not in RFM_SEGMENTS:
            raise ValidationError(
                f"unknown RFM segment {name!r}; one of {', '.join(RFM_SEGMENTS)}", field=where
            )
    return tuple(dict.fromkeys(str(n) for n in value))


def _audience(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or set(value) - {"segments"}:
        raise ValidationError("audience is {segments: [..]}", field="audience")
    segments = _segments(value.get("segments"), "audience.segments")
    if not segments:
        raise ValidationError("an audience names at least one segment", field="audience.segments")
    return segments


@dataclass(frozen=True)
class Widget:
    name: str
    strategy: Strategy = "personalized"
    k: int = 10
    exclude_purchased: bool = True
    in_stock_only: bool = True
    categories: tuple[str, ...] = ()  # only these categories (empty: any)
    boosts: Mapping[str, float] = field(default_factory=dict)  # category -> score multiplier
    promoted_skus: tuple[str, ...] = ()
    promoted_category: str | None = None
    promotion_share: float = 0.0  # share of the k slots kept for promoted items
    max_per_category: int | None = None  # diversity
    fallback: tuple[str, ...] = ("trending_category", "trending")
    promotions: tuple[Promotion, ...] = ()  # promoted sets, possibly per RFM segment
    audience: tuple[str, ...] = ()  # RFM segments the strategy serves (empty: everyone)

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> Widget:
        """A validated widget; a ``ValidationError`` names the offending field."""
        known = set(cls.__dataclass_fields__) - {"name"}
        for key in config:
            if key not in known:
                raise ValidationError(f"unknown widget setting {key!r}", field=key)

        def get(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
            value = config.get(key, default)
            if value is not None and not isinstance(value, kind):
                raise ValidationError(f"{key} has the wrong type", field=key)
            return value

        strategy = get("strategy", str, "personalized")
        if strategy not in STRATEGIES:
            raise ValidationError(
                f"strategy must be one of {', '.join(STRATEGIES)}", field="strategy"
            )
        k = get("k", int, 10)
        if not 1 <= k <= MAX_K:
            raise ValidationError(f"k must be 1 to {MAX_K}", field="k")
        boosts = get("boosts", dict, {})
        for cat, factor in boosts.items():
            if not isinstance(factor, int | float) or not 0 < factor <= 100:
                raise ValidationError("a boost is a number in (0, 100]", field=f"boosts.{cat}")
        share = float(get("promotion_share", (int, float), 0.0))
        if not 0 <= share <= 1:
            raise ValidationError("promotion_share must be in [0, 1]", field="promotion_share")
        diversity = get("max_per_category", int, None)
        if diversity is not None and diversity < 1:
            raise ValidationError("max_per_category must be at least 1", field="max_per_category")
        fallback = tuple(get("fallback", list, ["trending_category", "trending"]))
        for i, step in enumerate(fallback):
            if step not in FALLBACKS:
                raise ValidationError(
                    f"fallback steps are {', '.join(FALLBACKS)}", field=f"fallback[{i}]"
                )
        promotions = get("promotions", list, []) or []
        audience = _audience(config.get("audience"))
        if audience and not fallback:
            raise ValidationError(
                "a widget with an audience needs a fallback for everyone else", field="fallback"
            )
        return cls(
            name=name,
            strategy=strategy,
            k=k,
            exclude_purchased=bool(get("exclude_purchased", bool, True)),
            in_stock_only=bool(get("in_stock_only", bool, True)),
            categories=tuple(str(c) for c in get("categories", list, [])),
            boosts={str(c): float(f) for c, f in boosts.items()},
            promoted_skus=tuple(str(s) for s in get("promoted_skus", list, [])),
            promoted_category=get("promoted_category", str, None),
            promotion_share=share,
            max_per_category=diversity,
            fallback=fallback,
            promotions=tuple(
                Promotion.from_config(p, f"promotions[{i}]") for i, p in enumerate(promotions)
            ),
            audience=audience,
        )

    def config(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "k": self.k,
            "exclude_purchased": self.exclude_purchased,
            "in_stock_only": self.in_stock_only,
            "categories": list(self.categories),
            "boosts": dict(self.boosts),
            "promoted_skus": list(self.promoted_skus),
            "promoted_category": self.promoted_category,
            "promotion_share": self.promotion_share,
            "max_per_category": self.max_per_category,
            "fallback": list(self.fallback),
            "promotions": [p.config() for p in self.promotions],
            "audience": {"segments": list(self.audience)} if self.audience else None,
        }

    def serves(self, segment: str | None) -> bool:
        """Whether a customer of ``segment`` gets the widget's own strategy (not only its
        fallback chain)."""
        return not self.audience or segment in self.audience

    @property
    def needs_segment(self) -> bool:
        return bool(self.audience) or any(p.segments for p in self.promotions)


def default_widgets() -> dict[str, dict[str, Any]]:
    text = (resources.files("engine.recommend") / "widgets.yaml").read_text()
    loaded: dict[str, dict[str, Any]] = yaml.safe_load(text)
    return loaded


class WidgetStore:
    def __init__(self, db: Database, *, poll_s: float = 1.0) -> None:
        self.db = db
        self._widgets = Reloading(db, _stamp, _load, poll_s=poll_s)

    def seed_defaults(self) -> int:
        """Insert the shipped widgets when there are none (first start)."""
        with self.db.transaction() as s:
            if s.scalar(select(func.count()).select_from(RecWidget)):
                return 0
            defaults = default_widgets()
            for name, config in defaults.items():
                Widget.from_config(name, config)
                s.add(RecWidget(name=name, config=config))
        self._widgets.invalidate()
        return len(defaults)

    def get(self, name: str) -> Widget:
        widgets = self._widgets.get()
        if name not in widgets:
            raise UnknownWidget(
                f"unknown widget {name!r}; known: {', '.join(sorted(widgets))}", field="widget"
            )
        return widgets[name]

    def all(self) -> dict[str, Widget]:
        return dict(self._widgets.get())

    def put(self, name: str, config: Mapping[str, Any]) -> Widget:
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise ValidationError("a widget name is 1 to 64 of a-z, 0-9, - and _", field="name")
        widget = Widget.from_config(name, config)
        with self.db.transaction() as s:
            row = s.get(RecWidget, name)
            if row is None:
                s.add(RecWidget(name=name, config=widget.config()))
            else:
                row.config = widget.config()
                row.version = row.version + 1
        self._widgets.invalidate()
        return widget

    def put_many(self, configs: Mapping[str, Any]) -> list[str]:
        """Create or replace several widgets (a YAML file's contents) all or nothing: every
        config is validated first; an error names ``{widget}.{field}``."""
        if not isinstance(configs, Mapping) or not configs:
            raise ValidationError("expected a mapping of widget name to settings", field="widgets")
        widgets = []
        for name, config in configs.items():
            if not isinstance(config, Mapping):
                raise ValidationError("settings must be a mapping", field=str(name))
            try:
                widgets.append(Widget.from_config(str(name), config))
            except ValidationError as exc:
                raise ValidationError(exc.message, field=f"{name}.{exc.field}") from None
        with self.db.transaction() as s:
            for w in widgets:
                row = s.get(RecWidget, w.name)
                if row is None:
                    s.add(RecWidget(name=w.name, config=w.config()))
                else:
                    row.config = w.config()
                    row.version = row.version + 1
        self._widgets.invalidate()
        return [w.name for w in widgets]

    def delete(self, name: str) -> None:
        with self.db.transaction() as s:
            row = s.get(RecWidget, name)
            if row is None:
                raise WidgetNotFound(f"no widget {name!r}", field="name")
            s.delete(row)
        self._widgets.invalidate()


def _stamp(s: Session) -> tuple[tuple[str, int], ...]:
    """Every widget's name and version: any put or delete changes it."""
    rows = s.execute(select(RecWidget.name, RecWidget.version).order_by(RecWidget.name))
    return tuple((name, version) for name, version in rows)


def _load(s: Session, _stamp: tuple[tuple[str, int], ...]) -> dict[str, Widget]:
    return {r.name: Widget.from_config(r.name, r.config) for r in s.scalars(select(RecWidget))}
