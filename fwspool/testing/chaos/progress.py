"""Progress lines on stderr, on unless the command line says ``--quiet``."""

from __future__ import annotations

import sys
import time

_verbose = False


def set_verbose(verbose: bool) -> None:
    global _verbose
    _verbose = verbose


def log(msg: str) -> None:
    if _verbose:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
