"""Test support shared by the tests, the benchmarks and the chaos harness.

Nothing in the ``fwspool`` commands imports this package; it is installed with fwspool so that
``tests/`` and ``tools/`` import one copy instead of each keeping their own.
"""
