"""How running experiments change decisions: the widget and the model a shopper's
recommendations use, and the segment rules a customer's quote applies.

The recommender and the pricing service hold one of these (``None``: no experiments) and call
it once per request; every lookup is in memory.  A variant's widget or rule is built once and
kept (keyed by the objects it derives from, which stay the same between reloads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from engine.errors import CartwiseError
from engine.experiments.assignment import Assignment
from engine.experiments.targets import RECS_TARGET, variant_rule, variant_widget
from engine.pricing.rules import PricingRule
from engine.recommend.widgets import Widget, WidgetStore

log = logging.getLogger(__name__)
M = TypeVar("M")
Q = TypeVar("Q")
CACHE = 1024


class Assigner(Protocol):
    def assign(
        self, target_kind: str, target: str, unit: str | None, *, log: bool = True
    ) -> Assignment | None: ...

    def expose(self, assignment: Assignment, customer_id: str) -> None: ...


@dataclass(frozen=True)
class RecChoice(Generic[M]):
    widget: Widget
    model: M | None
    experiment: Mapping[str, str] | None  # {key, variant}
    degraded: bool  # the variant's model could not be loaded: the champion answered


class RecTrials(Generic[M]):
    """Widget and recommender experiments; variant models come from ``loader`` (a registry
    version or a directory -> a model, or None), loaded once per replica and kept (a failed
    load is tried again after ``retry_s``)."""

    def __init__(
        self,
        experiments: Assigner,
        widgets: WidgetStore,
        loader: Callable[[str], M | None] | None = None,
        *,
        retry_s: float = 300.0,
    ) -> None:
        self.experiments = experiments
        self.widgets = widgets
        self.loader = loader
        self.retry_s = retry_s
        self._models: dict[str, tuple[float, M | None]] = {}
        self._lock = threading.Lock()
        self._widgets: dict[tuple[int, str, str], tuple[Widget, Widget]] = {}

    def choose(
        self,
        widget: Widget,
        champion: M | None,
        customer_id: str | None,
        session_id: str | None,
        *,
        log: bool = True,
    ) -> RecChoice[M]:
        """Anonymous shoppers are assigned by session id, and not logged (exposures are
        joined with orders, which name a customer)."""
        unit = customer_id or session_id
        logged = log and customer_id is not None
        on_widget = self.experiments.assign("widget", widget.name, unit, log=logged)
        on_model = self.experiments.assign("recommender", RECS_TARGET, unit, log=logged)
        if on_widget is not None:
            widget = self._widget(widget, on_widget)
        model, degraded = champion, False
        if on_model is not None and on_model.config.get("model_version"):
            variant = self._model(str(on_model.config["model_version"]))
            model, degraded = (champion, True) if variant is None else (variant, False)
        shown = on_widget or on_model
        return RecChoice(widget, model, shown.public() if shown else None, degraded)

    def _widget(self, base: Widget, a: Assignment) -> Widget:
        cache_key = (id(base), a.key, a.variant)
        hit = self._widgets.get(cache_key)
        if hit is not None and hit[0] is base:  # the id of a reloaded widget may be reused
            return hit[1]
        try:
            found = variant_widget(base, a.config, self.widgets.all())
        except CartwiseError as exc:  # the other widget changed since the start
            log.warning("experiment %s/%s: %s", a.key, a.variant, exc.message)
            found = base
        if len(self._widgets) > CACHE:
            self._widgets.clear()
        self._widgets[cache_key] = (base, found)
        return found

    def _model(self, spec: str) -> M | None:
        hit = self._models.get(spec)
        if hit is not None and (hit[1] is not None or time.monotonic() - hit[0] < self.retry_s):
            return hit[1]
        with self._lock:  # one load per replica; other requests wait for it
            hit = self._models.get(spec)
            if hit is not None and (hit[1] is not None or time.monotonic() - hit[0] < self.retry_s):
                return hit[1]
            model = self._load(spec)
            self._models[spec] = (time.monotonic(), model)
            return model

    def _load(self, spec: str) -> M | None:
        if self.loader is None:
            return None
        try:
            model = self.loader(spec)
        except Exception:  # a broken model must not take recommendations down
            log.exception("variant model %r could not be loaded", spec)
            return None
        if model is None:
            log.warning("variant model %r not found: the champion answers", spec)
        return model


class PriceTrials:
    """Experiments on quote-time (segment) pricing rules."""

    def __init__(self, experiments: Assigner) -> None:
        self.experiments = experiments
        self._rules: dict[tuple[int, str, str], tuple[PricingRule, PricingRule | None]] = {}

    def rules(
        self, rules: Sequence[PricingRule], customer_id: str
    ) -> tuple[list[PricingRule], list[tuple[PricingRule, Assignment]]]:
        """The segment rules as this customer's variants change them, and the experiments
        the customer is in (with the rule as it is, for its scope)."""
        out: list[PricingRule] = []
        trials: list[tuple[PricingRule, Assignment]] = []
        for rule in rules:
            a = self.experiments.assign("price_rule", rule.name, customer_id, log=False)
            if a is None:
                out.append(rule)
                continue
            trials.append((rule, a))
            changed = self._rule(rule, a)
            if changed is not None:
                out.append(changed)
        return out, trials

    def annotate(
        self,
        quotes: Sequence[Q],
        scope: Callable[[Q], tuple[str, str | None, str | None]],
        trials: Sequence[tuple[PricingRule, Assignment]],
        customer_id: str,
    ) -> list[Q]:
        """Each quote with the experiment on the first tested rule whose scope covers its
        SKU (``scope``: sku, category, brand); those experiments log an exposure."""
        out: list[Q] = []
        exposed: dict[str, Assignment] = {}
        for q in quotes:
            a = next((a for r, a in trials if r.matches(*scope(q))), None)
            if a is not None:
                exposed[a.key] = a
            out.append(replace(q, experiment=a.public() if a else None))  # type: ignore[type-var]
        for a in exposed.values():
            self.experiments.expose(a, customer_id)
        return out

    def _rule(self, rule: PricingRule, a: Assignment) -> PricingRule | None:
        cache_key = (id(rule), a.key, a.variant)
        hit = self._rules.get(cache_key)
        if hit is not None and hit[0] is rule:
            return hit[1]
        changed: PricingRule | None = rule
        try:
            changed = variant_rule(rule, a.config)
        except CartwiseError as exc:  # the rule was edited since the start
            log.warning("experiment %s/%s: %s", a.key, a.variant, exc.message)
        if len(self._rules) > CACHE:
            self._rules.clear()
        self._rules[cache_key] = (rule, changed)
        return changed
