"""Dynamic pricing: rules, numba kernels with guardrails, quotes, repricing, suggestions."""
