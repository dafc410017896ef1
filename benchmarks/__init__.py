"""Benchmarks of async_dispatch against the ways people track tasks by hand.

Run ``python -m benchmarks`` (or ``make bench``); see ``benchmarks/README.md``.
"""
