"""The feature catalogue (``features/catalog.py``) against the definitions it describes."""

from __future__ import annotations

import pytest

from features.catalog import catalog
from features.definitions import DERIVED, VIEWS, VIEWS_BY_NAME, Source
from features.offline import feature_names


def _features() -> dict[str, dict]:
    return {f["name"]: f for v in catalog()["views"] for f in v["features"]}


def test_every_served_feature_is_listed_once_in_vector_order() -> None:
    listed = [f["name"] for v in catalog()["views"] for f in v["features"]]
    assert listed == [n for v in VIEWS for n in v.feature_names()]
    assert len(set(listed)) == len(listed)
    for source in Source:
        names = [f["name"] for v in catalog(source)["views"] for f in v["features"]]
        assert names == feature_names(source)
        assert {v["source"] for v in catalog(source)["views"]} == {source.value}


def test_windows_kinds_and_sources_are_those_of_the_definitions() -> None:
    found = _features()
    f = found["customer_txn.amount_sum_1h"]
    assert (f["kind"], f["window_s"], f["bucket_s"], f["of"]) == ("sum", 3_600, 300, "amount")
    assert "12 sliding buckets of 5 min" in f["description"]
    assert found["ip_txn.cards_1h"]["approximate"] is True
    assert "HyperLogLog" in found["ip_txn.cards_1h"]["description"]
    assert found["customer_txn.cards_1d"]["approximate"] is False
    assert found["sku_activity.carts_1d"]["event_types"] == ["add_to_cart"]
    assert found["customer_txn.last_txn"]["of"] == "shipping_country"
    assert found["customer_txn.last_txn_age_s"]["kind"] == "age"
    merchant = next(v for v in catalog()["views"] if v["name"] == "merchant_txn")
    assert merchant["label_delay_days"] == 7
    assert merchant["ttl_s"] == VIEWS_BY_NAME["merchant_txn"].ttl


@pytest.mark.parametrize(
    ("name", "span"),
    [
        ("merchant_txn.fraud_1d_delay7d_count", "[t - 8 d, t - 7 d]"),
        ("merchant_txn.fraud_30d_delay7d_count", "[t - 37 d, t - 7 d]"),
    ],
)
def test_label_delayed_features_name_their_span(name: str, span: str) -> None:
    assert span in _features()[name]["description"]


def test_derived_features_are_listed_as_means_and_ratios() -> None:
    found = _features()
    for name, _numerator, _denominator in DERIVED:
        assert found[name]["kind"] in {"mean", "delayed_ratio"}
    kinds = {f["kind"] for f in found.values()}
    assert {"mean", "delayed_ratio", "frauds_known"} <= kinds
