"""The fraud model's input vector: one definition for training (whole columns) and scoring
(one row), so the two can never drift apart.

Inputs are feature-store values (``features/definitions.py`` names, read before the
transaction is recorded) plus what the request itself says (amount, time of day), plus ratios
between the two.  Functions take numpy arrays; a single decision passes arrays of length one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

STORE_INPUTS: tuple[str, ...] = (
    "customer_txn.txn_count_10m",
    "customer_txn.txn_count_1h",
    "customer_txn.txn_count_1d",
    "customer_txn.txn_count_7d",
    "customer_txn.txn_count_30d",
    "customer_txn.amount_mean_1d",
    "customer_txn.amount_mean_7d",
    "customer_txn.amount_mean_30d",
    "customer_txn.amount_sum_1d",
    "customer_txn.amount_max_7d",
    "customer_txn.cards_1d",
    "customer_txn.cards_7d",
    "customer_txn.devices_7d",
    "customer_txn.ips_1d",
    "customer_txn.last_txn_age_s",
    "customer_txn.frauds_known",
    "card_txn.txn_count_10m",
    "card_txn.txn_count_1h",
    "card_txn.txn_count_1d",
    "card_txn.amount_sum_1d",
    "card_txn.customers_7d",
    "card_txn.merchants_1d",
    "card_txn.frauds_known",
    "device_txn.txn_count_1h",
    "device_txn.cards_1d",
    "device_txn.customers_7d",
    "ip_txn.txn_count_10m",
    "ip_txn.cards_1h",
    "ip_txn.customers_1d",
    "email_txn.txn_count_1d",
    "email_txn.cards_7d",
    "merchant_txn.txn_count_1d",
    "merchant_txn.txn_count_7d",
    "merchant_txn.txn_count_30d",
    "merchant_txn.amount_mean_1d",
    "merchant_txn.fraud_1d_delay7d_count",
    "merchant_txn.fraud_1d_delay7d_ratio",
    "merchant_txn.fraud_7d_delay7d_count",
    "merchant_txn.fraud_7d_delay7d_ratio",
    "merchant_txn.fraud_30d_delay7d_count",
    "merchant_txn.fraud_30d_delay7d_ratio",
)
REQUEST_INPUTS: tuple[str, ...] = (
    "amount",
    "log_amount",
    "hour",
    "is_night",
    "is_weekend",
    "amount_vs_customer_1d",
    "amount_vs_customer_7d",
    "amount_vs_customer_30d",
    "amount_vs_customer_max_7d",
    "amount_vs_merchant_1d",
)
INPUTS: tuple[str, ...] = REQUEST_INPUTS + STORE_INPUTS


def _ratio(amount: Array, mean: Array) -> Array:
    """amount / mean, 0 where there is no history (mean 0)."""
    out = np.zeros_like(amount)
    np.divide(amount, mean, out=out, where=mean > 0)
    return out


def assemble(store: Mapping[str, Array], amount: Array, ts: Array) -> npt.NDArray[np.float32]:
    """Rows of model inputs, columns in ``INPUTS`` order.

    ``store`` maps feature names to arrays (a missing name counts as 0: its view was absent);
    ``amount`` is in major units, ``ts`` in seconds since the epoch (UTC)."""
    n = len(amount)
    zeros = np.zeros(n)

    def col(name: str) -> Array:
        value = store.get(name)
        return zeros if value is None else np.asarray(value, dtype=np.float64)

    hour = np.floor((ts % 86_400) / 3_600)
    weekday = (np.floor(ts / 86_400) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    request = {
        "amount": amount,
        "log_amount": np.log1p(np.maximum(amount, 0)),
        "hour": hour,
        "is_night": (hour <= 6).astype(np.float64),
        "is_weekend": (weekday >= 5).astype(np.float64),
        "amount_vs_customer_1d": _ratio(amount, col("customer_txn.amount_mean_1d")),
        "amount_vs_customer_7d": _ratio(amount, col("customer_txn.amount_mean_7d")),
        "amount_vs_customer_30d": _ratio(amount, col("customer_txn.amount_mean_30d")),
        "amount_vs_customer_max_7d": _ratio(amount, col("customer_txn.amount_max_7d")),
        "amount_vs_merchant_1d": _ratio(amount, col("merchant_txn.amount_mean_1d")),
    }
    columns = [request[name] for name in REQUEST_INPUTS] + [col(name) for name in STORE_INPUTS]
    return np.column_stack(columns).astype(np.float32)
