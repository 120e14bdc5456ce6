"""The login-node daemon: passes of ingest and push, backoff while the database is down, and
what is retried.

``fwspool push --watch`` and ``fwspool sync --watch`` are :func:`push_loop` (sync with an ingest
pass before every push pass); the CLI only parses options and prints. The rules:

- The database unreachable (:class:`~fwspool.errors.UplinkUnavailable`): with ``watch``, wait
  (capped, jittered exponential backoff) and try again; without, the error goes to the caller.
- Refused credentials and configuration errors are never retried: they do not fix themselves.
- SIGINT/SIGTERM (:class:`StopFlag`) stop the loop between batches, never inside one.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable
from typing import Any

from fwspool.errors import UplinkUnavailable
from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.push import Pusher, PushSummary

#: Runs one pass, given how to report progress (the CLI draws a bar on a terminal).
PassRunner = Callable[[Callable[[Callable[[int, int], None] | None], Any]], Any]


def _without_progress(work: Callable[[Callable[[int, int], None] | None], Any]) -> Any:
    return work(None)


class StopFlag:
    """Set by SIGINT/SIGTERM; long-running commands check it between batches."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.event.set())

    def __call__(self) -> bool:
        return self.event.is_set()

    def sleep(self, seconds: float) -> None:
        self.event.wait(seconds)


class Backoff:
    """Exponential backoff with full jitter, capped: 1 s, 2 s, 4 s ... up to ``cap``."""

    def __init__(self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.failures))
        self.failures += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


def push_loop(
    journal: Journal,
    uplink_factory: Callable[[], Any],
    *,
    watch: bool,
    interval: float,
    stop: StopFlag,
    say: Callable[[str], None],
    warn: Callable[[str], None],
    before_pass: Callable[[], None] | None = None,
    run_pass: PassRunner = _without_progress,
) -> PushSummary | None:
    """One push pass, or with ``watch`` keep pushing, backing off while the database is down.

    ``say`` gets the summary lines, ``warn`` the problems (one line each). Returns the summary of
    the last pass, or None when stopped by a signal.
    """
    backoff = Backoff()
    uplink = uplink_factory()
    try:
        pusher = Pusher(journal, uplink)
        while True:
            if before_pass is not None:
                before_pass()
            try:
                summary: PushSummary = run_pass(
                    lambda progress: pusher.run_pass(should_stop=stop, progress=progress)
                )
            except UplinkUnavailable as exc:
                if not watch:
                    raise
                delay = backoff.next_delay()
                warn(f"{exc.message}; retrying in {delay:.0f}s")
                stop.sleep(delay)
                if stop():
                    break
                continue
            backoff.reset()
            for problem in summary.problems:
                warn(problem)
            if not watch or stop():
                say(summary.line())
                return summary
            if summary.applied or summary.superseded:
                say(summary.line())
            stop.sleep(interval)
            if stop():
                break
    finally:
        uplink.close()
    return None


def sync_loop(
    journal: Journal,
    ingester: Ingester,
    uplink_factory: Callable[[], Any],
    *,
    watch: bool,
    interval: float,
    stop: StopFlag,
    say: Callable[[str], None],
    warn: Callable[[str], None],
    run_pass: PassRunner = _without_progress,
) -> None:
    """Ingest, then push, once or (``watch``) until stopped: ``fwspool sync``."""

    def ingest_once() -> None:
        summary = ingester.run_pass(should_stop=stop)
        for problem in summary.problems:
            warn(problem)
        if summary.new_events or not watch:
            say(summary.line())

    def loop(watching: bool) -> PushSummary | None:
        return push_loop(
            journal,
            uplink_factory,
            watch=watching,
            interval=interval,
            stop=stop,
            say=say,
            warn=warn,
            before_pass=ingest_once,
            run_pass=run_pass,
        )

    summary = loop(watch)
    if summary is not None and summary.registered and not stop():
        # The push taught the journal new launch directories: read them now, not next run.
        loop(False)
