"""Per-training-run HTML reports with embedded PNGs, logged as each run's ``report.html``."""

from training.reporting.fraud import fraud_report, gain_importance
from training.reporting.pricing import pricing_report
from training.reporting.recs import recs_report

__all__ = ["fraud_report", "gain_importance", "pricing_report", "recs_report"]
