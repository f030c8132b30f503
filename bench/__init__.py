"""Benchmarks: run with `python -m bench.<name>`; each prints figures beside the raw limit."""
