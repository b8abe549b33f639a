"""Benchmarks: ``python -m bench.run`` (or ``make bench``); figures go to BENCHMARKS.md."""
