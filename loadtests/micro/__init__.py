"""In-process micro-benchmarks of project parts on real components."""
