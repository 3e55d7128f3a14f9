"""Throughput benchmarks (pytest-benchmark): `pytest bench --benchmark-only`."""
