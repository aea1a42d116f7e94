"""Benchmarks of mula_ops against the pure-PyTorch references: latency
(pytest-benchmark suites), memory and largest batch, the machine's own limits,
and the report that turns them into tables and plots (``python -m
benchmarks.report``)."""
