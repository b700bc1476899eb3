"""Recommendations: interactions (``data``), splits, metrics, implicit ALS and a popularity
baseline (``als``), the model artifact the serving side loads (``artifact``), and the training
pipeline with the registry (``train``)."""
