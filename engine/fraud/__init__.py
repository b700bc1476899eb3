"""Fraud decisions: the model's inputs, scoring, rules."""
