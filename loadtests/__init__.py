"""Benchmarks. Scenarios at the top level talk HTTP only; ``micro/`` measures library parts
in-process (they import the project) against real Redis / SQL."""
