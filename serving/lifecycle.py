"""Each replica follows the model registry: champion, challenger and its rollout, hot-swapped.

For every kind (fraud, recs, pricing) a ``Follower`` knows what to serve (``spec``: a registry
alias such as ``champion``, a pinned version, or a model directory) and asks the registry, every
``model_poll_s`` seconds on a background thread, where the aliases point and how the challenger
is rolled out (one MLflow call per kind).  When that changes it downloads and loads the new
versions *beside* the ones serving, then swaps them in with one attribute write on the service:
a request in flight keeps the models it started with, the next one gets the new ones, and no
request waits for a load.  A version that cannot be fetched or loaded is logged and the current
models stay (tried again at the next poll).  Loaded versions are kept (the last few), so a
rollback is a swap, not a download.

Pricing has no per-request model: its champion names the elasticity fit the elasticity rule uses
(``Elasticities.pin``); its challenger is only compared offline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import CartwiseError
from engine.fraud.model import FraudModel
from engine.recommend.artifact import RecModel
from engine.rollout import Rollout
from serving.metrics import MODEL_REFRESH_ERRORS, MODEL_SERVED

if TYPE_CHECKING:
    from serving.bootstrap import Container
    from serving.settings import Settings
    from training.fraud.registry import ModelRegistry, RegistryState

log = logging.getLogger(__name__)


def _label(version: str) -> str:
    """A registry version as is; a model directory by its name (no paths in metric labels)."""
    return Path(version).name if "/" in version or "\\" in version else version


KEEP = 4  # loaded versions kept per kind


@dataclass(frozen=True)
class Target:
    champion: str | None  # a version, or a directory
    challenger: str | None
    mode: str
    share: float


@dataclass
class Follower:
    kind: str
    spec: str
    registry: ModelRegistry
    dest: Path  # where versions are downloaded
    load: Callable[[Path], Any]
    apply: Callable[[Rollout[Any]], None]
    current: Target | None = None
    error: str | None = None
    checked_at: float | None = None
    loaded: OrderedDict[str, Any] = field(default_factory=OrderedDict)

    def target(self) -> Target:
        """Where the registry (or the spec) says serving should be."""
        if Path(self.spec).is_dir():
            return Target(self.spec, None, "off", 0.0)
        state: RegistryState = self.registry.state()
        if self.spec == "champion":
            champion = state.champion
        elif self.spec.isdigit():
            champion = self.spec
        else:
            try:
                champion = self.registry.resolve(self.spec)  # another alias
            except CartwiseError:
                champion = None
        challenger = state.challenger if state.mode != "off" else None
        if challenger == champion:
            challenger = None
        mode = state.mode if challenger is not None else "off"
        return Target(champion, challenger, mode, state.share if mode == "canary" else 0.0)

    def model(self, version: str | None) -> Any:
        if version is None:
            return None
        hit = self.loaded.get(version)
        if hit is not None:
            self.loaded.move_to_end(version)
            return hit
        path = Path(version) if Path(version).is_dir() else self.registry.fetch(version, self.dest)
        model = self.load(path)
        self.loaded[version] = model
        while len(self.loaded) > KEEP:
            self.loaded.popitem(last=False)
        return model

    def refresh(self, *, force: bool = False) -> bool:
        """Swap if the target moved; True when it did.  Never raises."""
        try:
            target = self.target()
            if target == self.current and not force:
                self.checked_at = time.time()
                return False
            champion = self.model(target.champion)
            challenger = self.model(target.challenger) if target.challenger else None
        except Exception as exc:  # a registry or a model that fails must not stop serving
            MODEL_REFRESH_ERRORS.labels(self.kind).inc()
            message = exc.message if isinstance(exc, CartwiseError) else repr(exc)
            if message != self.error:
                log.warning("%s models not updated: %s", self.kind, message)
            self.error = message
            return False
        self.apply(Rollout(self.registry.name, champion, challenger, target.mode, target.share))  # type: ignore[arg-type]
        if target != self.current:
            log.info(
                "%s now serves %s (challenger %s, %s%s)",
                self.kind,
                target.champion,
                target.challenger or "none",
                target.mode,
                f" {target.share:.0%}" if target.mode == "canary" else "",
            )
        self._served(self.current, 0)
        self._served(target, 1)
        self.current, self.error, self.checked_at = target, None, time.time()
        return True

    def _served(self, target: Target | None, value: int) -> None:
        """``cartwise_model_served``: 1 for what this process serves now, 0 for what it did."""
        if target is None:
            return
        for role, version in (("champion", target.champion), ("challenger", target.challenger)):
            if version is not None:
                MODEL_SERVED.labels(self.kind, role, _label(version)).set(value)

    def status(self) -> dict[str, Any]:
        t = self.current
        return {
            "model": self.registry.name,
            "spec": self.spec,
            "champion": t.champion if t else None,
            "challenger": t.challenger if t else None,
            "rollout": t.mode if t else "off",
            "share": t.share if t else 0.0,
            "checked_at": self.checked_at,
            "error": self.error,
        }


class ModelLifecycle:
    """The followers of one replica and the thread that polls for them."""

    def __init__(self, followers: list[Follower], poll_s: float) -> None:
        self.followers = {f.kind: f for f in followers}
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one refresh at a time (poll thread and reconfigure)
        self._thread: threading.Thread | None = None

    def refresh(self, *, force: bool = False) -> None:
        with self._lock:
            for follower in self.followers.values():
                follower.refresh(force=force)

    def follow(self, kind: str, spec: str) -> None:
        """Serve ``spec`` for ``kind`` from now on (a deployment's ``user_config``)."""
        with self._lock:
            follower = self.followers[kind]
            if spec != follower.spec:
                follower.spec = spec
                follower.current = None
            follower.refresh()

    def start(self) -> None:
        if self.poll_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-lifecycle", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def status(self) -> dict[str, Any]:
        return {kind: f.status() for kind, f in self.followers.items()}


def lifecycle(settings: Settings, container: Container) -> ModelLifecycle:
    """Followers for the fraud model, the recommender and the pricing fit of ``container``."""
    from serving.models import model_dir, registry
    from training.pricing.train import fit_of

    def follow(
        kind: str, spec: str, load: Callable[[Path], Any], apply: Callable[[Rollout[Any]], None]
    ) -> Follower:
        found = registry(settings, kind)
        return Follower(kind, spec, found, model_dir(settings, found), load, apply)

    pricing = container.pricing.elasticities

    def pin(rollout: Rollout[Any]) -> None:
        pricing.pin(rollout.champion)

    return ModelLifecycle(
        [
            follow("fraud", settings.fraud_model, FraudModel.load, container.fraud.use_rollout),
            follow("recs", settings.recs_model, RecModel.load, container.recs.use_rollout),
            follow("pricing", "champion", fit_of, pin),
        ],
        settings.model_poll_s,
    )
