"""Benchmarks of backburner and its peers on SQLite, run by ``python benchmarks/run.py``."""
