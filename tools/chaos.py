#!/usr/bin/env python3
"""Fault injection for fwspool: kill it, starve it, cut it off, corrupt its input — and prove that
no event is lost and none is applied twice.

    python tools/chaos.py --full              # every scenario at full trial counts (~1 hour)
    python tools/chaos.py --quick             # the short version the test suite runs
    python tools/chaos.py --scenario 2 --trials 30
    python tools/chaos.py --full --json       # JSON on stdout, the table on stderr

The harness itself is the package ``fwspool.testing.chaos`` (the cluster, the proxy, the
invariants, the workload, one module per scenario); this is its command line.
"""

from __future__ import annotations

import sys

from fwspool.testing.chaos.runner import main

if __name__ == "__main__":
    sys.exit(main())
