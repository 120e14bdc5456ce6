"""The login-node daemon: passes of ingest and push, backoff while the database is down, and
what is retried.

``fwspool ingest``, ``push`` and ``sync`` (with or without ``--watch``) are a :class:`Loop`'s
:meth:`~Loop.ingest`, :meth:`~Loop.push` and :meth:`~Loop.sync` (sync: an ingest pass before
every push pass), given an ingester made from :class:`IngestSettings`; the CLI only parses
options and prints. The rules:

- The database unreachable (:class:`~fwspool.errors.UplinkUnavailable`): with ``watch``, wait
  (capped, jittered exponential backoff) and try again; without, the error goes to the caller.
- Refused credentials and configuration errors are never retried: they do not fix themselves.
- SIGINT/SIGTERM (:class:`StopFlag`) stop the loop between batches, never inside one.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fwspool.errors import UplinkUnavailable
from fwspool.ingest import DEFAULT_LOST_AFTER, Ingester, IngestSummary
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


@dataclass(frozen=True)
class IngestSettings:
    """What a login-node ingest reads besides the spool files it already knows, and whose files
    it believes: the options ``fwspool ingest`` and ``fwspool sync`` share.

    ``queueadapter`` is the queue adapter file ``qlaunch`` uses: its batch system is asked about
    launches whose own is unknown. ``inbox_dir`` None means :func:`fwspool.inbox.default_inbox`.
    """

    roots: tuple[str, ...] = ()
    trust_group: int | None = None
    queueadapter: str | None = None
    lost_after: float = DEFAULT_LOST_AFTER
    inbox_dir: str | None = None
    #: The largest spool record accepted; None: the spool format's default.
    max_record: int | None = None
    #: Read quarantined records again (with these limits) before the first pass.
    retry_quarantined: bool = False

    def ingester(self, journal: Journal) -> Ingester:
        """An :class:`~fwspool.ingest.Ingester` into ``journal`` that asks every batch system
        fwspool knows."""
        from fwspool.batch import available_systems, system_of_queue_adapter
        from fwspool.inbox import default_inbox
        from fwspool.spool import DEFAULT_MAX_RECORD

        return Ingester(
            journal,
            roots=self.roots,
            max_record=self.max_record or DEFAULT_MAX_RECORD,
            trust_group=self.trust_group,
            inbox_dir=self.inbox_dir or default_inbox(),
            batch_systems=available_systems(),
            default_batch_system=system_of_queue_adapter(self.queueadapter) if self.queueadapter else None,
            lost_after=self.lost_after,
            retry_quarantined=self.retry_quarantined,
        )


@dataclass(frozen=True)
class Loop:
    """How a login-node command runs its passes: one, or with ``watch`` one every ``interval``
    seconds until ``stop``.

    ``say`` gets the summary lines, ``warn`` the problems (one line each); ``run_pass`` runs each
    pass given how to report its progress.
    """

    watch: bool
    interval: float
    stop: StopFlag
    say: Callable[[str], None]
    warn: Callable[[str], None]
    run_pass: PassRunner = _without_progress

    def ingest(self, ingester: Ingester) -> IngestSummary:
        """Ingest passes: ``fwspool ingest``. Says a pass's line only when watching and it found
        new events; returns the total of all passes."""
        total = IngestSummary()
        while True:
            summary: IngestSummary = self.run_pass(
                lambda progress: ingester.run_pass(should_stop=self.stop, progress=progress)
            )
            total.add(summary)
            for problem in summary.problems:
                self.warn(problem)
            if self.watch and summary.new_events:
                self.say(summary.line())
            if not self.watch or self.stop() or self._pause():
                return total

    def push(
        self,
        journal: Journal,
        uplink_factory: Callable[[], Any],
        before_pass: Callable[[], None] | None = None,
    ) -> PushSummary | None:
        """Push passes, backing off while the database is down: ``fwspool push``.

        Returns the summary of the last pass, or None when stopped by a signal.
        """
        backoff = Backoff()
        uplink = uplink_factory()
        try:
            pusher = Pusher(journal, uplink)
            while True:
                if before_pass is not None:
                    before_pass()
                try:
                    summary: PushSummary = self.run_pass(
                        lambda progress: pusher.run_pass(should_stop=self.stop, progress=progress)
                    )
                except UplinkUnavailable as exc:
                    if not self.watch:
                        raise
                    delay = backoff.next_delay()
                    self.warn(f"{exc.message}; retrying in {delay:.0f}s")
                    self.stop.sleep(delay)
                    if self.stop():
                        return None
                    continue
                backoff.reset()
                for problem in summary.problems:
                    self.warn(problem)
                if not self.watch or self.stop():
                    self.say(summary.line())
                    return summary
                if summary.applied or summary.superseded:
                    self.say(summary.line())
                if self._pause():
                    return None
        finally:
            uplink.close()

    def sync(self, journal: Journal, ingester: Ingester, uplink_factory: Callable[[], Any]) -> None:
        """Ingest, then push, once or (``watch``) until stopped: ``fwspool sync``."""

        def ingest_once() -> None:
            summary = ingester.run_pass(should_stop=self.stop)
            for problem in summary.problems:
                self.warn(problem)
            if summary.new_events or not self.watch:
                self.say(summary.line())

        summary = self.push(journal, uplink_factory, before_pass=ingest_once)
        if summary is not None and summary.registered and not self.stop():
            # The push taught the journal new launch directories: read them now, not next run.
            dataclasses.replace(self, watch=False).push(journal, uplink_factory, before_pass=ingest_once)

    def _pause(self) -> bool:
        """Wait ``interval`` between passes; whether a signal came meanwhile."""
        self.stop.sleep(self.interval)
        return self.stop()


def push_loop(
    journal: Journal,
    uplink_factory: Callable[[], Any],
    *,
    before_pass: Callable[[], None] | None = None,
    **loop: Any,
) -> PushSummary | None:
    """``Loop(**loop).push(...)``: the keywords are :class:`Loop`'s fields."""
    return Loop(**loop).push(journal, uplink_factory, before_pass)


def sync_loop(journal: Journal, ingester: Ingester, uplink_factory: Callable[[], Any], **loop: Any) -> None:
    """``Loop(**loop).sync(...)``: the keywords are :class:`Loop`'s fields."""
    Loop(**loop).sync(journal, ingester, uplink_factory)
