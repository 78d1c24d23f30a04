"""Benchmarks of batcher against baselines; run them with ``python -m benchmarks``.

They are not part of the unit tests: pytest collects only ``tests/``.
"""
