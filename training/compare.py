"""Champion against challenger: offline on one evaluation window, online from what serving logged.

- **Fraud, offline**: both versions score the same test window of the commerce database (the
  training protocol's newest labelled window: chargebacks of the last ``label_days`` may not be
  filed yet); the published metrics for each.
- **Online, shadow** (``model_shadow``): how often the challenger's outcome (fraud) or list
  (recommendations) differs from the champion's on the same requests; for fraud, the metrics of
  both on the shadowed decisions that have a label by now; for recommendations, how often the
  shopper afterwards viewed, carted or bought an item of each list (within ``horizon_h``).
- **Online, canary**: the decisions (fraud) or recommendation lists each version answered since
  ``since``, their outcome mix and labelled frauds, or their later engagement.

Every figure says how many requests it stands on; none is a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from sqlalchemy import func, select

from engine.commerce.db import Database
from engine.commerce.schema import Interaction
from engine.fraud.model import FraudModel
from engine.fraud.schema import FraudDecision, FraudFeedback
from engine.recommend.schema import Recommendation
from engine.rollout.log import ShadowLog
from training.fraud.backtest import prepare
from training.fraud.dataset import transactions_from_db
from training.fraud.protocol import metrics
from training.fraud.train import evaluation_set, windows

FRAUD_LABELS = ("fraud", "chargeback")
ENGAGED = ("view", "add_to_cart", "purchase")


def fraud_offline(
    db: Database,
    models: dict[str, FraudModel],
    *,
    test_days: int = 7,
    label_days: int = 14,
) -> dict[str, Any]:
    """Each model's metrics on the same newest labelled window of the commerce database."""
    data = prepare(transactions_from_db(db))
    protocol, _ = windows(
        data.ts, test_days=test_days, delay_days=0, train_days=1, folds=1, label_days=label_days
    )
    test = evaluation_set(data, protocol)
    start = protocol.train_start + timedelta(days=protocol.train_days + protocol.delay_days)
    return {
        "window": {
            "from": start.isoformat(),
            "days": test_days,
            "transactions": len(test.label),
            "frauds": int(test.label.sum()),
        },
        "models": {
            name: metrics(test.ts, test.card, test.label, m.probabilities(test.inputs), protocol)
            for name, m in models.items()
        },
    }


def _ranking(label: np.ndarray, score: np.ndarray) -> dict[str, float | None]:
    both = 0 < label.sum() < len(label)
    return {
        "roc_auc": float(roc_auc_score(label, score)) if both else None,
        "average_precision": float(average_precision_score(label, score)) if both else None,
    }


def fraud_shadow(db: Database, shadow: ShadowLog, model: str, since: datetime) -> dict[str, Any]:
    rows = shadow.records(model, since=since)
    if not rows:
        return {"requests": 0}
    frame = pd.DataFrame(
        {
            "request_id": [r["request_id"] for r in rows],
            "champion_p": [r["champion"]["probability"] for r in rows],
            "challenger_p": [r["challenger"]["probability"] for r in rows],
            "champion_outcome": [r["champion"]["outcome"] for r in rows],
            "challenger_outcome": [r["challenger"]["outcome"] for r in rows],
        }
    )
    labelled = _labels(db, frame["request_id"])
    frame["label"] = frame["request_id"].map(labelled)
    known = frame.dropna(subset=["label"])
    y = known["label"].to_numpy(int)
    return {
        "requests": len(frame),
        "versions": sorted({f"{r['champion_version']}/{r['challenger_version']}" for r in rows}),
        "outcome_agreement": float((frame.champion_outcome == frame.challenger_outcome).mean()),
        "outcomes": {
            "champion": frame.champion_outcome.value_counts().to_dict(),
            "challenger": frame.challenger_outcome.value_counts().to_dict(),
        },
        "mean_abs_probability_change": float((frame.champion_p - frame.challenger_p).abs().mean()),
        "labelled": len(known),
        "labelled_frauds": int(y.sum()),
        "champion": _ranking(y, known["champion_p"].to_numpy()),
        "challenger": _ranking(y, known["challenger_p"].to_numpy()),
    }


def _labels(db: Database, decision_ids: Iterable[str]) -> dict[str, int]:
    """1 for a decision labelled fraud (or charged back), 0 for one labelled legit."""
    ids = list(decision_ids)
    out: dict[str, int] = {}
    with db.transaction(readonly=True) as s:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for decision_id, label in s.execute(
                select(FraudFeedback.decision_id, FraudFeedback.label).where(
                    FraudFeedback.decision_id.in_(chunk)
                )
            ):
                fraud = int(label in FRAUD_LABELS)
                out[decision_id] = max(out.get(decision_id, 0), fraud)
    return out


def fraud_canary(db: Database, versions: Iterable[str], since: datetime) -> dict[str, Any]:
    """Per version: decisions since ``since``, their outcome mix, mean risk score, labels."""
    out: dict[str, Any] = {}
    with db.transaction(readonly=True) as s:
        for version in versions:
            where = (FraudDecision.model_version == version, FraudDecision.created_at >= since)
            outcomes = dict(
                s.execute(
                    select(FraudDecision.outcome, func.count())
                    .where(*where)
                    .group_by(FraudDecision.outcome)
                ).all()
            )
            n = sum(outcomes.values())
            mean = s.scalar(select(func.avg(FraudDecision.risk_score)).where(*where))
            frauds = s.scalar(
                select(func.count(func.distinct(FraudFeedback.decision_id)))
                .join(FraudDecision, FraudDecision.id == FraudFeedback.decision_id)
                .where(*where, FraudFeedback.label.in_(FRAUD_LABELS))
            )
            out[version] = {
                "decisions": n,
                "outcomes": outcomes,
                "mean_risk_score": float(mean) if mean is not None else None,
                "labelled_frauds": int(frauds or 0),
            }
    return out


def recs_shadow(
    db: Database, shadow: ShadowLog, model: str, since: datetime, horizon_h: float = 24
) -> dict[str, Any]:
    rows = shadow.records(model, since=since)
    if not rows:
        return {"requests": 0}
    overlap, champion_hits, challenger_hits, judged = [], 0, 0, 0
    engaged = _engagement(db, {r["unit"] for r in rows if r["unit"]}, since, horizon_h)
    for r in rows:
        a, b = list(r["champion"]["items"]), list(r["challenger"]["items"])
        overlap.append(len(set(a) & set(b)) / max(len(a), len(b), 1))
        seen = _after(engaged.get(r["unit"] or "", []), r["created_at"], horizon_h)
        if r["unit"] in engaged:
            judged += 1
            champion_hits += bool(seen & set(a))
            challenger_hits += bool(seen & set(b))
    return {
        "requests": len(rows),
        "versions": sorted({f"{r['champion_version']}/{r['challenger_version']}" for r in rows}),
        "mean_list_overlap": float(np.mean(overlap)),
        "shoppers_engaged_after": judged,
        "hit_rate": {
            "champion": champion_hits / judged if judged else None,
            "challenger": challenger_hits / judged if judged else None,
        },
        "horizon_hours": horizon_h,
    }


def recs_canary(
    db: Database, versions: Iterable[str], since: datetime, horizon_h: float = 24
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with db.transaction(readonly=True) as s:
        lists = s.execute(
            select(
                Recommendation.model_version,
                Recommendation.customer_id,
                Recommendation.items,
                Recommendation.created_at,
            ).where(
                Recommendation.model_version.in_(list(versions)),
                Recommendation.created_at >= since,
                Recommendation.customer_id.is_not(None),
            )
        ).all()
    engaged = _engagement(db, {c for _, c, _, _ in lists}, since, horizon_h)
    for version in versions:
        mine = [row for row in lists if row[0] == version]
        hits = sum(
            bool(_after(engaged.get(c, []), at, horizon_h) & {i["sku"] for i in items})
            for _, c, items, at in mine
        )
        out[version] = {
            "lists": len(mine),
            "hit_rate": hits / len(mine) if mine else None,
        }
    return out


def _engagement(
    db: Database, units: set[str], since: datetime, horizon_h: float
) -> dict[str, list[tuple[datetime, str]]]:
    """Each customer's views, carts and purchases from ``since`` on."""
    out: dict[str, list[tuple[datetime, str]]] = {}
    until = datetime.now(UTC) + timedelta(hours=horizon_h)
    units_list = sorted(units)
    with db.transaction(readonly=True) as s:
        for i in range(0, len(units_list), 500):
            for customer, ts, sku in s.execute(
                select(Interaction.customer_id, Interaction.ts, Interaction.sku).where(
                    Interaction.customer_id.in_(units_list[i : i + 500]),
                    Interaction.type.in_(ENGAGED),
                    Interaction.ts >= since,
                    Interaction.ts <= until,
                )
            ):
                if sku and customer:
                    out.setdefault(customer, []).append((ts, sku))
    return out


def _after(events: list[tuple[datetime, str]], at: datetime, horizon_h: float) -> set[str]:
    end = at + timedelta(hours=horizon_h)
    return {sku for ts, sku in events if at <= ts <= end}


def recs_offline(db: Database, models: dict[str, Any], k: int = 10) -> dict[str, Any]:
    """Each recommender's top-``k`` for the shoppers active after *both* versions' training data
    ended (``meta.data.to``), against what they viewed, carted or bought since: a window neither
    model saw.  Items a shopper had touched before the window are not recommended."""
    from training.recommend.data import interactions_from_db

    ends = [pd.Timestamp(m.meta.get("data", {}).get("to")) for m in models.values()]
    if any(pd.isna(e) for e in ends):
        return {"error": "a version does not record where its training data ended"}
    start = max(ends).timestamp()
    events = interactions_from_db(db)
    after = events[events["timestamp"] > start]
    known = [set(m.customers) for m in models.values()]
    users = sorted(set(after["user_id"]).intersection(*known))
    window = {"from": pd.Timestamp(start, unit="s", tz="UTC").isoformat(), "shoppers": len(users)}
    if not users:
        return {"window": window, "error": "no shopper of both versions active since: wait"}
    before = events[events["timestamp"] <= start].groupby("user_id")["item_id"].agg(set)
    later = after.groupby("user_id")["item_id"].agg(set)
    out: dict[str, Any] = {}
    for name, model in models.items():
        hits, recall = 0, 0.0
        for user in users:
            scores = model.item_factors @ model.user_vector(user)  # a user both versions know
            seen = {i for s in before.get(user, set()) if (i := model.item_id(s)) is not None}
            if seen:
                scores[list(seen)] = -np.inf
            top = {model.skus[i] for i in np.argsort(-scores)[:k]}
            found = len(top & later[user])
            hits += found > 0
            recall += found / len(later[user])
        out[name] = {f"hit_rate_at_{k}": hits / len(users), f"recall_at_{k}": recall / len(users)}
    return {"window": window, "models": out}
