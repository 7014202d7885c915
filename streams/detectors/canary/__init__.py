"""Canary analysis: baseline-versus-canary verdicts per release (see judge.py, stats.py)."""
