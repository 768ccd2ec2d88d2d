"""Benchmarks of ras-guard (run as modules: ``python -m benchmarks.overhead``)."""
