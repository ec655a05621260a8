"""Benchmarks, not tests: pipeline-sync against the naive loop at fleet scale (python -m bench.reconcile)."""
