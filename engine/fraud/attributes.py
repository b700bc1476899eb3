"""The attributes fraud rules may read (``:name:`` in ``engine.fraud.rules``), in one place.

Three groups: what the request says (``REQUEST_ATTRIBUTES``, built by ``request_attributes``),
what the model says (``MODEL_ATTRIBUTES``, absent when no model scored the payment), and every
model input of ``engine.fraud.inputs.INPUTS``: feature-store values read before the payment is
recorded (``customer_txn.txn_count_1h``, …) and the inputs derived from them
(``amount_vs_customer_7d``, ``is_night``, …).
"""

from __future__ import annotations

from typing import Any

from engine.fraud.inputs import INPUTS

REQUEST_ATTRIBUTES: dict[str, str] = {
    "amount": "amount in major units (12.5 = 12.50)",
    "currency": "ISO 4217 code, upper case (USD)",
    "payment_method": "card | wallet | bnpl | bank_transfer | …",
    "customer_id": "the customer's id",
    "merchant_id": "the merchant's (or terminal's) id",
    "channel": "where the payment comes from: web | app | pos | api | …",
    "card_fingerprint": "an id of the card that is the same across payments",
    "card_bin": "the card's first 6 to 8 digits, as text",
    "card_country": "ISO 3166-1 alpha-2 country of the card's issuer",
    "card_last4": "the card's last 4 digits, as text",
    "device_id": "the device's id",
    "ip": "the client's IP address, as text",
    "email": "the customer's e-mail address, as given",
    "email_domain": "the lower-cased part of the e-mail after the last @",
    "billing_country": "ISO 3166-1 alpha-2 country of the billing address",
    "shipping_country": "ISO 3166-1 alpha-2 country of the shipping address",
    "item_count": "units in the order (sum of the lines' quantities)",
    "hour": "hour of the payment, 0-23 (UTC)",
}
MODEL_ATTRIBUTES: dict[str, str] = {
    "risk_score": "0-100 from the model",
    "probability": "model fraud probability",
}


def known_attributes() -> frozenset[str]:
    """Every name a rule may read."""
    return frozenset(REQUEST_ATTRIBUTES) | frozenset(MODEL_ATTRIBUTES) | frozenset(INPUTS)


def email_domain(email: str | None) -> str | None:
    """The lower-cased part of ``email`` after its last ``@`` (None without one)."""
    if not email or "@" not in email:
        return None
    return email.rpartition("@")[2].strip().lower() or None


def request_attributes(
    *,
    amount: float,
    currency: str | None = None,
    payment_method: str | None = None,
    customer_id: str | None = None,
    merchant_id: str | None = None,
    channel: str | None = None,
    card_fingerprint: str | None = None,
    card_bin: str | None = None,
    card_country: str | None = None,
    card_last4: str | None = None,
    device_id: str | None = None,
    ip: str | None = None,
    email: str | None = None,
    billing_country: str | None = None,
    shipping_country: str | None = None,
    item_count: int | None = None,
    ts: float,
) -> dict[str, Any]:
    """The request's attributes (``REQUEST_ATTRIBUTES``); None values are left out (missing).
    ``ts`` is the payment's time in seconds since the epoch (UTC)."""
    values: dict[str, Any] = {
        "amount": float(amount),
        "currency": currency.upper() if currency else currency,
        "payment_method": payment_method,
        "customer_id": customer_id,
        "merchant_id": merchant_id,
        "channel": channel,
        "card_fingerprint": card_fingerprint,
        "card_bin": card_bin,
        "card_country": card_country,
        "card_last4": card_last4,
        "device_id": device_id,
        "ip": ip,
        "email": email,
        "email_domain": email_domain(email),
        "billing_country": billing_country,
        "shipping_country": shipping_country,
        "item_count": item_count,
        "hour": int(ts % 86_400 // 3_600),
    }
    return {name: value for name, value in values.items() if value is not None}
