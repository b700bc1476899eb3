"""Fraud model training, the evaluation protocol and backtests."""
