"""Rules backtest on a generated transactions table, checked against figures computed here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.errors import ValidationError
from engine.fraud.rules import Rule, RuleError
from training.fraud.rules_backtest import backtest_rules, load_lists, load_rules

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    """400 transactions over 4 days: big amounts are mostly fraud, some cards are Nigerian."""
    rng = np.random.default_rng(7)
    n = 400
    seconds = np.sort(rng.integers(0, 4 * 86_400, n))
    df = pd.DataFrame(
        {
            "transaction_id": [f"tx{i:04d}" for i in range(n)],
            "timestamp": pd.Timestamp("2024-03-01") + pd.to_timedelta(seconds, unit="s"),
            "customer_id": rng.integers(0, 60, n).astype(str),
            "merchant_id": rng.integers(0, 8, n).astype(str),
            "card_id": [f"card{c}" for c in rng.integers(0, 60, n)],
            "amount": rng.choice([9.99, 25.0, 60.0, 250.0, 1200.0], n),
            "card_country": rng.choice(["US", "GB", "NG", None], n),
            "email": [f"u{i}@{d}" for i, d in enumerate(rng.choice(["Gmail.com", "x.io"], n))],
        }
    )
    df["is_fraud"] = ((df.amount > 200) & (rng.random(n) < 0.7)).astype(int)
    df.loc[df.card_country.eq("NG") & (rng.random(n) < 0.3), "is_fraud"] = 1
    return df


RULES = [
    Rule("first_use", "first payment of a customer", ":customer_txn.txn_count_30d: = 0", "review"),
    Rule("big", "big amount", ":amount: > 1000", "block", priority=10),
    Rule("mid", "mid amount", ":amount: > 200", "block", priority=20),
    Rule("risky", "risky country", ":card_country: in @risky", "challenge", mode="shadow"),
    Rule("gmail_small", "small gmail", "lower(:email:) = :email: and :amount: < 10", "allow"),
    Rule("gmail", "gmail", ":email_domain: = 'gmail.com' and :hour: < 12", "allow", priority=5),
]


def expected_masks(df: pd.DataFrame) -> dict[str, pd.Series]:
    hour = df.timestamp.dt.hour
    domain = df.email.str.split("@").str[1].str.lower()
    first = ~df.sort_values("timestamp", kind="stable").customer_id.duplicated()
    return {
        "first_use": first.reindex(df.index),  # the 30-day window covers the 4 days
        "big": df.amount > 1000,
        "mid": df.amount > 200,
        "risky": df.card_country.eq("NG"),
        "gmail_small": df.email.eq(df.email.str.lower()) & (df.amount < 10),
        "gmail": domain.eq("gmail.com") & (hour < 12),
    }


def test_backtest_counts_match_independent_figures(transactions: pd.DataFrame) -> None:
    df = transactions
    report = backtest_rules(RULES, df, {"risky": {"NG"}})
    fraud = df.is_fraud.eq(1)
    frauds = int(fraud.sum())
    assert report["transactions"] == len(df) == 400
    assert report["frauds"] == frauds > 50
    masks = expected_masks(df)
    # evaluation order: challenge, allow (by priority), block (by priority), review
    order = ["risky", "gmail", "gmail_small", "big", "mid", "first_use"]
    assert [r["id"] for r in report["rules"]] == order
    for row in report["rules"]:
        mask = masks[row["id"]]
        matches, caught = int(mask.sum()), int((mask & fraud).sum())
        assert matches > 0, row["id"]
        assert row["matches"] == matches, row["id"]
        assert row["frauds_matched"] == caught, row["id"]
        assert row["match_rate"] == pytest.approx(matches / 400)
        assert row["precision"] == pytest.approx(caught / matches)
        assert row["recall"] == pytest.approx(caught / frauds)
    # the decisive rule: first matching active rule in order (the shadow one never decides)
    active = [("gmail", "allow"), ("gmail_small", "allow"), ("big", "block"), ("mid", "block")]
    active.append(("first_use", "review"))
    decided = pd.Series("none", index=df.index)
    for rule_id, action in reversed(active):  # earlier rules overwrite later ones
        decided[masks[rule_id]] = action
    counts = decided.value_counts()
    assert report["outcomes"] == {
        a: int(counts.get(a, 0)) for a in ("challenge", "allow", "block", "review", "none")
    }
    assert report["outcomes"]["challenge"] == 0
    for action, figures in report["decided"].items():
        mask = decided.eq(action)
        assert figures["transactions"] == int(mask.sum())
        assert figures["frauds"] == int((mask & fraud).sum())
        assert figures["precision"] == pytest.approx(
            (mask & fraud).sum() / mask.sum() if mask.any() else 0.0
        )
        assert figures["recall"] == pytest.approx((mask & fraud).sum() / frauds)
    assert report == json.loads(json.dumps(report))  # plain JSON values


def test_a_rule_reading_nothing_matches_every_row(transactions: pd.DataFrame) -> None:
    report = backtest_rules([Rule("t", "always", "true", "review")], transactions)
    assert report["rules"][0]["matches"] == 400
    assert report["decided"]["review"]["recall"] == 1.0


def test_a_list_the_backtest_was_not_given_is_an_error(transactions: pd.DataFrame) -> None:
    with pytest.raises(RuleError, match=r"unknown list '@risky' at position 18"):
        backtest_rules(RULES, transactions)


def test_load_rules_and_lists(tmp_path: Path) -> None:
    rules_yaml = tmp_path / "rules.yaml"
    rules_yaml.write_text(
        """
- name: Big amount!
  expression: ":amount: > 1000"
  action: block
- id: risky
  name: risky country
  expression: ":card_country: in @risky"
  action: challenge
  priority: 3
  mode: shadow
"""
    )
    assert load_rules(rules_yaml) == [
        Rule("big-amount", "Big amount!", ":amount: > 1000", "block", 100, "active"),
        Rule("risky", "risky country", ":card_country: in @risky", "challenge", 3, "shadow"),
    ]
    lists_json = tmp_path / "lists.json"
    lists_json.write_text(json.dumps({"risky": ["NG", "RU"], "bins": [411111, 42.0], "empty": []}))
    assert load_lists(lists_json) == {
        "risky": {"NG", "RU"},
        "bins": {"411111", "42"},
        "empty": set(),
    }


def test_load_rules_names_the_bad_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    entries = [
        {"name": "ok", "expression": ":amount: > 1", "action": "block"},
        {"name": "typo", "expression": ":amount: > 2", "action": "blok"},
        {"name": "bad", "expression": ":amont: > 2", "action": "review", "priorty": 1},
        {"name": "ok", "expression": "true", "action": "allow"},
    ]
    path.write_text(json.dumps(entries))
    with pytest.raises(RuleError) as info:
        load_rules(path)
    e = info.value
    assert e.field == "rules[1].action"
    assert e.message.startswith("rules[1].action: 'blok' is not one of challenge, allow, block")
    assert [i["field"] for i in e.items] == [
        "rules[1].action",
        "rules[2].priorty",
        "rules[2].expression",
        "rules[3].id",
    ]
    assert "unknown attribute ':amont:' (did you mean ':amount:'?) at position 0" in e.message
    assert "duplicate id 'ok' (also rules[0])" in e.message
    (tmp_path / "broken.yaml").write_text("- name: [unclosed")
    with pytest.raises(ValidationError):
        load_rules(tmp_path / "broken.yaml")
    (tmp_path / "lists.yaml").write_text("risky: [NG, {a: 1}]\n1bad: [x]\n")
    with pytest.raises(ValidationError) as lists_info:
        load_lists(tmp_path / "lists.yaml")
    assert lists_info.value.field == "lists.risky"
    assert [i["field"] for i in lists_info.value.items] == ["lists.risky", "lists.1bad"]


def test_cli_reports_rules_on_a_file_and_names_bad_entries(
    transactions: pd.DataFrame, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from serving.cli import app

    tx = tmp_path / "tx.csv"
    transactions.to_csv(tx, index=False)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- {name: big amount, expression: ':amount: > 1000', action: block}\n"
        "- {name: risky, expression: ':card_country: in @risky', action: review, mode: shadow}\n"
    )
    lists = tmp_path / "lists.json"
    lists.write_text(json.dumps({"risky": ["NG"]}))
    result = CliRunner().invoke(
        app,
        [
            "fraud",
            "rules",
            "backtest",
            "--rules",
            str(rules),
            "--transactions",
            str(tx),
            "--lists",
            str(lists),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    by_id = {r["id"]: r for r in report["rules"]}
    big = transactions.amount > 1000
    assert by_id["big-amount"]["matches"] == int(big.sum())
    assert by_id["big-amount"]["frauds_matched"] == int(transactions.is_fraud[big].sum())
    assert by_id["risky"]["matches"] == int(transactions.card_country.eq("NG").sum())
    assert report["transactions"] == len(transactions)

    rules.write_text(
        "- {name: a, expression: ':amount: > 1', action: block}\n"
        "- {name: b, expression: ':amount: > 2', action: explode}\n"
    )
    bad = CliRunner().invoke(
        app, ["fraud", "rules", "backtest", "--rules", str(rules), "--transactions", str(tx)]
    )
    assert bad.exit_code == 2 and "rules[1].action" in bad.output
