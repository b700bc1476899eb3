"""Evaluate and train the recommender; write the artifact; register it and promote it if better.

``evaluate``: split the (user, item) pairs (``training.recommend.split``), choose the ALS
hyper-parameters on a validation split carved from the training pairs only
(``als.choose_params``), fit ALS and the popularity baseline on the training pairs, and score
both on the test users (``training.recommend.metrics``): each gets its top k, the items it had
in training excluded.  Test users are the users with test items and training history; a user
with test items only (possible with a separate test file) is counted as ``cold_users`` and not
scored, and a test pair the user already has in training is dropped (it could never be
recommended).

``train``: ``evaluate`` at k = 10, then the model that is shipped is fitted again with the
chosen parameters on *all* pairs (``refit=True``, the default: the newest interactions are the
ones that matter most to a shopper; ``refit=False`` ships the model that was evaluated); the
metrics in ``model.json`` and in the registry are those of the evaluated model.  The artifact
(``training.recommend.artifact``) is written, logged to MLflow with its training report
(``training.reporting.recs``: precision and recall at k = 1..10, coverage and popularity bias of
ALS and the baseline on the test users) and registered as a new version; it becomes
``champion`` if there is none, if the champion's run has no ``ndcg_at_10``, or if its test
NDCG@10 is strictly higher than the champion's (each measured on its own training data's test
split: the registry holds metrics, not the data they were measured on).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engine.errors import ValidationError
from training.fraud.registry import ModelRegistry
from training.recommend.als import (
    AlsModel,
    AlsParams,
    Choice,
    Encoded,
    choose_params,
    encode,
    fit_als,
    fit_popularity,
    matrix,
    weighting_stats,
)
from training.recommend.artifact import (
    RecsRegistry,
    bought_together,
    recent_popularity,
    write_artifact,
)
from training.recommend.data import EVENT_WEIGHTS, summary
from training.recommend.metrics import ranking_metrics
from training.recommend.split import SPLITS, split
from training.reporting.recs import evaluation_report
from training.snapshot import snapshot

Progress = Callable[[str], None]
KEY_K = 10
KEY_METRIC = f"ndcg_at_{KEY_K}"


# --- evaluation ---------------------------------------------------------------------------------


@dataclass
class Evaluation:
    als: dict[str, float]
    popularity: dict[str, float]
    choice: Choice
    encoded: Encoded  # numbering of every user and item of the data
    train_pairs: pd.DataFrame
    test_pairs: pd.DataFrame
    test_users: npt.NDArray[np.int64]
    recommendations: npt.NDArray[np.int64]  # ALS top k of each test user, -1 padded
    baseline_recommendations: npt.NDArray[np.int64]  # the popularity baseline's, likewise
    model: AlsModel  # fitted on the training pairs
    cold_users: int
    k: int
    split: str
    test_fraction: float
    seed: int
    seconds: float = 0.0

    @property
    def params(self) -> AlsParams:
        return self.choice.params

    def summary(self) -> dict[str, Any]:
        users, items = self.encoded.shape
        return {
            "als": self.als,
            "popularity": self.popularity,
            "params": self.params.as_dict(),
            "users": users,
            "items": items,
            "seconds": round(self.seconds, 2),
            "split": self.split,
            "test_fraction": self.test_fraction,
            "k": self.k,
            "seed": self.seed,
            "train_pairs": len(self.train_pairs),
            "test_pairs": len(self.test_pairs),
            "test_users": len(self.test_users),
            "cold_users": self.cold_users,
            "validation": {"users": self.choice.validation_users, "trials": self.choice.trials},
        }

    def recommendations_frame(self) -> pd.DataFrame:
        """``user_id, item_id, rank`` (1-based) of every test user's ALS recommendations."""
        recs = self.recommendations
        row, col = np.nonzero(recs >= 0)
        return pd.DataFrame(
            {
                "user_id": self.encoded.users[self.test_users[row]],
                "item_id": self.encoded.items[recs[row, col]],
                "rank": col + 1,
            }
        )


def _pairs_and_split(
    events: pd.DataFrame,
    test_events: pd.DataFrame | None,
    how: str,
    test_fraction: float,
    seed: int,
) -> tuple[Encoded, pd.DataFrame, pd.DataFrame]:
    if how not in SPLITS:
        raise ValidationError(f"split must be one of {', '.join(SPLITS)}", field="split")
    if not 0 < test_fraction < 1:
        raise ValidationError("test_fraction must be in (0, 1)", field="test_fraction")
    if len(events) == 0:
        raise ValidationError("no interactions to train on", field="interactions")
    if test_events is None:
        encoded, _ = encode(events)
        train_pairs, test_pairs = split(encoded.pairs, how, test_fraction, seed=seed)
        return encoded, train_pairs, test_pairs
    if len(test_events) == 0:
        raise ValidationError("no interactions in the test data", field="test")
    encoded, (test_pairs,) = encode(events, test_events)
    known = encoded.pairs["user"] * len(encoded.items) + encoded.pairs["item"]
    new = ~(test_pairs["user"] * len(encoded.items) + test_pairs["item"]).isin(known)
    return encoded, encoded.pairs, test_pairs[new.to_numpy()].reset_index(drop=True)


def evaluate(
    events: pd.DataFrame,
    *,
    test_events: pd.DataFrame | None = None,
    split: str = "time",
    test_fraction: float = 0.25,
    k: int = 10,
    seed: int = 42,
    params: AlsParams | list[AlsParams] | None = None,
    num_threads: int | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """ALS and popularity on a test split of ``events`` (canonical events,
    ``training.recommend.data``) or, with ``test_events``, trained on ``events`` and tested on
    ``test_events``.  ``params``: see ``als.choose_params`` (None: coordinate search)."""
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    if k < 1:
        raise ValidationError("k must be at least 1", field="k")
    encoded, train_pairs, test_pairs = _pairs_and_split(
        events, test_events, split, test_fraction, seed
    )
    shape = encoded.shape
    seen = matrix(train_pairs, shape)
    truth_all = matrix(test_pairs, shape)
    has_test = np.diff(truth_all.indptr) > 0
    has_train = np.diff(seen.indptr) > 0
    test_users = np.flatnonzero(has_test & has_train).astype(np.int64)
    if test_users.size == 0:
        raise ValidationError(
            "nothing to test on: no user has both training and test items (a user needs at "
            "least 2 distinct items to be split)",
            field="interactions",
        )
    choice = choose_params(
        train_pairs,
        shape,
        how=split,
        test_fraction=test_fraction,
        k=k,
        seed=seed,
        candidates=params,
        num_threads=num_threads,
        progress=say,
    )
    say(f"fitting on the training pairs: {choice.params}")
    model = fit_als(seen, choice.params, seed=seed, num_threads=num_threads)
    say(f"recommending for {test_users.size:,} test users…")
    truth = truth_all[test_users]
    recs = model.recommend(test_users, seen, k)
    popular = fit_popularity(seen).recommend(test_users, seen, k)
    n_items = shape[1]
    als = ranking_metrics(recs, truth, k, catalogue_size=n_items)
    pop = ranking_metrics(popular, truth, k, catalogue_size=n_items)
    for m in (als, pop):
        m.pop("users")
    return Evaluation(
        als=als,
        popularity=pop,
        choice=choice,
        encoded=encoded,
        train_pairs=train_pairs,
        test_pairs=test_pairs,
        test_users=test_users,
        recommendations=recs,
        baseline_recommendations=popular,
        model=model,
        cold_users=int(np.count_nonzero(has_test & ~has_train)),
        k=k,
        split=split,
        test_fraction=test_fraction,
        seed=seed,
        seconds=time.perf_counter() - started,
    )


# --- training -----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    evaluation: Evaluation
    version: str | None  # None: not registered
    artifact: Path | None  # where the artifact was kept (``out_dir``), if anywhere
    metrics: dict[str, float]  # as logged in MLflow
    champion_before: str | None
    champion_after: str | None
    promoted: bool
    reason: str
    seconds: float

    def summary(self) -> dict[str, Any]:
        ev = self.evaluation.summary()
        return {
            "version": self.version,
            "promoted": self.promoted,
            "reason": self.reason,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "artifact": str(self.artifact) if self.artifact else None,
            **{k: ev[k] for k in ("als", "popularity", "params", "users", "items")},
            "evaluation": {k: v for k, v in ev.items() if k not in ("als", "popularity")},
            "seconds": round(self.seconds, 1),
        }


def _mlflow_metrics(ev: Evaluation) -> dict[str, float]:
    def name(key: str) -> str:
        return key.replace("@", "_at_")

    out = {name(k): v for k, v in ev.als.items()}
    out |= {f"popularity_{name(k)}": v for k, v in ev.popularity.items()}
    best = max((t[f"ndcg@{ev.k}"] for t in ev.choice.trials), default=None)
    if best is not None:
        out[f"validation_ndcg_at_{ev.k}"] = best
    users, items = ev.encoded.shape
    counts = {"users": users, "items": items, "train_pairs": len(ev.train_pairs)}
    counts |= {"test_pairs": len(ev.test_pairs), "test_users": len(ev.test_users)}
    return out | {k: float(v) for k, v in counts.items()}


def _decide(registry: ModelRegistry, new: float) -> tuple[str | None, bool, str]:
    current = registry.champion()
    if current is None:
        return None, True, "first model: there was no champion"
    old = current.metrics.get(KEY_METRIC)
    name = f"champion v{current.version}"
    if old is None:
        return current.version, True, f"{name} has no {KEY_METRIC}: replaced"
    if new > old:
        return current.version, True, f"NDCG@{KEY_K} {new:.4f} > {name}'s {old:.4f}"
    return current.version, False, f"NDCG@{KEY_K} {new:.4f} <= {name}'s {old:.4f}: kept"


def train(
    events: pd.DataFrame,
    *,
    registry: ModelRegistry | None = None,
    split: str = "time",
    test_fraction: float = 0.25,
    seed: int = 42,
    params: AlsParams | list[AlsParams] | None = None,
    refit: bool = True,
    out_dir: Path | None = None,
    promote: bool = True,
    tags: Mapping[str, str] | None = None,
    num_threads: int | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Evaluate, fit the shipped model, write the artifact (kept in ``out_dir`` if given),
    and register it in ``registry`` (if given); see the module docstring."""
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    ev = evaluate(
        events,
        split=split,
        test_fraction=test_fraction,
        k=KEY_K,
        seed=seed,
        params=params,
        num_threads=num_threads,
        progress=say,
    )
    model = ev.model
    if refit:
        say(f"fitting on all pairs: {ev.params}")
        model = fit_als(
            matrix(ev.encoded.pairs, ev.encoded.shape),
            ev.params,
            seed=seed,
            num_threads=num_threads,
        )
    say("bought-together and popularity…")
    ids, scores, source = bought_together(events, ev.encoded.items)
    extra = {
        "fit_on": "all" if refit else "train",
        "evaluation": {k: v for k, v in ev.summary().items() if k not in ("als", "popularity")},
        "bought_together": {"top": ids.shape[1], "source": source},
        "popularity_days": 7,
        "data": summary(events),
    }
    metrics = _mlflow_metrics(ev)
    with tempfile.TemporaryDirectory(prefix="cw-recs-") as tmp:
        directory = write_artifact(
            Path(tmp) / "model",
            model=model,
            users=ev.encoded.users,
            items=ev.encoded.items,
            event_weights=EVENT_WEIGHTS,
            metrics=ev.als,
            baseline_metrics=ev.popularity,
            bought_together=(ids, scores),
            popularity=recent_popularity(events, ev.encoded.items),
            extra=extra,
            weighting=weighting_stats(ev.encoded.pairs, ev.encoded.shape),
        )
        version, before, promoted, reason = None, None, False, "not registered"
        if registry is not None:
            say("registering…")
            recs = RecsRegistry.of(registry)
            before, better, reason = _decide(recs, ev.als[f"ndcg@{KEY_K}"])
            promoted = better and promote
            if better and not promote:
                reason = f"{reason}; kept as the challenger (promotion off)"
            data_snapshot = snapshot(events, "timestamp")
            run_params = {
                "als": ev.params.as_dict(),
                "split": split,
                "test_fraction": test_fraction,
                "seed": seed,
                "fit_on": extra["fit_on"],
                "trials": len(ev.choice.trials),
            }
            version = recs.log_and_register(
                directory,
                metrics=metrics,
                params={**run_params, **data_snapshot},
                plots={},
                report=lambda v: evaluation_report(
                    ev,
                    version=v,
                    title=recs.name,
                    metrics=metrics,
                    params=run_params,
                    snapshot=data_snapshot,
                ),
                tags={**(tags or {}), "promoted": str(promoted).lower(), "reason": reason},
            )
            if promoted:
                recs.set_champion(version)
            else:  # a candidate to compare, shadow, canary or promote
                recs.set_challenger(version)
        kept = None
        if out_dir is not None:
            kept = Path(out_dir)
            shutil.copytree(directory, kept, dirs_exist_ok=True)
    return TrainResult(
        evaluation=ev,
        version=version,
        artifact=kept,
        metrics=metrics,
        champion_before=before,
        champion_after=version if promoted else before,
        promoted=promoted,
        reason=reason,
        seconds=time.perf_counter() - started,
    )
