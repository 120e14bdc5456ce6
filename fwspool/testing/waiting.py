"""Waiting for something a real process does, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_for"]


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, what: str = "the condition", every: float = 0.05
) -> Any:
    """Poll ``predicate`` every ``every`` seconds until it returns something true, and return
    that; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g}s")
        time.sleep(every)
