"""Benchmarks (run with ``python -m metarl.benchmarks.<name>`` or ``metarl bench``)."""
