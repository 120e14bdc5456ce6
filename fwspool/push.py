"""Push: replay the journal to the LaunchPad whenever it is reachable.

A pass connects, applies pending forget requests (``offline_runs.deprecated``), pulls the
registry of open offline runs into the journal (so ingest knows where to look while the
database is down later), then applies pending events in batches of launches, marking each batch
pushed only after the database acknowledged it. A failure mid-pass leaves the rest pending;
re-applying what was applied but not marked changes nothing (see :mod:`fwspool.launchpad`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from fwspool.errors import UplinkUnavailable
from fwspool.events import as_utc, iso, utcnow
from fwspool.failpoints import failpoint
from fwspool.journal import LAST_PUSH_KEY, Journal
from fwspool.plural import counted
from fwspool.uplink import Uplink

__all__ = ["LAST_PUSH_KEY", "PushSummary", "Pusher", "age"]


@dataclass(slots=True)
class PushSummary:
    launches: int = 0
    applied: int = 0
    superseded: int = 0
    skipped: int = 0
    registered: int = 0
    forgets_applied: int = 0
    #: Reservations handed back (their batch job never started them): the Firework is READY again.
    released: int = 0
    problems: list[str] = field(default_factory=list)

    def changed(self) -> bool:
        """Whether the pass changed anything: on the LaunchPad, or what the journal knows."""
        return bool(
            self.applied
            or self.superseded
            or self.skipped
            or self.registered
            or self.forgets_applied
            or self.released
        )

    def line(self) -> str:
        return (
            f"push: {counted(self.launches, 'launch')}, {counted(self.applied, 'event')} applied, "
            f"{self.superseded} superseded, {self.skipped} skipped, "
            f"{counted(self.registered, 'offline run')} registered, "
            f"{counted(self.forgets_applied, 'forget request')} applied"
            + (f", {counted(self.released, 'reservation')} released" if self.released else "")
        )


def age(iso_text: str | None, now: dt.datetime) -> str:
    """'3h12m' style age of an ISO time."""
    if not iso_text:
        return "-"
    secs = max(0, int((now - as_utc(iso_text)).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h{(secs % 3600) // 60:02d}m"
    return f"{secs // 86400}d{(secs % 86400) // 3600:02d}h"


class Pusher:
    """Pushes one journal through one uplink."""

    def __init__(
        self,
        journal: Journal,
        uplink: Uplink,
        *,
        batch_launches: int = 500,
        clock: Callable[[], dt.datetime] = utcnow,
        connecting: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.journal = journal
        self.uplink = uplink
        self.batch_launches = batch_launches
        self.clock = clock
        #: Around each pass's first contact with the database, which waits up to the uplink's
        #: timeout while it is down: the daemon lets a stop signal end that wait (StopFlag.waiting).
        self.connecting = connecting

    def unavailable(self, exc: UplinkUnavailable) -> UplinkUnavailable:
        """The one line for an unreachable database: where, how much waits, and since when."""
        pending, oldest = self.journal.pending_summary()
        waiting = (
            f"{counted(pending, 'event')} pending in the journal, oldest ingested {age(oldest, self.clock())} ago"
            if pending
            else "no events pending in the journal"
        )
        return UplinkUnavailable(f"{exc.message}; {waiting}")

    def run_pass(
        self,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[int, int], None] | None = None,
    ) -> PushSummary:
        summary = PushSummary()
        try:
            with self.connecting():
                self.uplink.check()
            for redo_id, write_set in self.journal.pending_redo():
                # A pass died between writing a bulk completion and marking it: finish its writes
                # (or learn that they are no longer its to finish: its events stay pending).
                if self.uplink.replay(write_set) == "waiting":
                    summary.problems.append(
                        "the workflows of an interrupted push are locked by another process; it is finished next pass"
                    )
                    continue
                self.journal.mark_pushed([], done_redo=[redo_id])
            self._apply_forgets(summary)
            summary.registered = self.journal.register_offline_runs(self.uplink.open_offline_runs())
            total, _ = self.journal.pending_summary()
            done = 0
            after: int | None = None
            while not should_stop():
                launches = self.journal.pending_launches(after, self.batch_launches)
                if not launches:
                    break
                after = launches[-1].launch_id
                saved: list[int] = []
                result = self.uplink.apply(
                    launches, self.clock(), redo=self._redo_saver(saved), owner=self.journal.identity()
                )
                failpoint("push.before_mark")
                # Only now, with the database's acknowledgement in hand.
                self.journal.mark_pushed(result.outcomes, done_redo=saved, launches=result.pushed)
                summary.launches += len(launches)
                for _, outcome, _detail in result.outcomes:
                    if outcome == "applied":
                        summary.applied += 1
                    elif outcome == "superseded":
                        summary.superseded += 1
                    else:
                        summary.skipped += 1
                summary.problems.extend(result.problems)
                summary.released += len(result.released_launches)
                done += sum(len(launch.events) for launch in launches)
                if progress:
                    progress(min(done, total), total)
        except UplinkUnavailable as exc:
            raise self.unavailable(exc) from None
        self.journal.set_meta(LAST_PUSH_KEY, iso(self.clock()))
        return summary

    def _redo_saver(self, saved: list[int]) -> Callable[[bytes], None]:
        """Keeps a write set in the journal before the uplink writes it; remembers its id."""

        def save(write_set: bytes) -> None:
            saved.append(self.journal.save_redo(write_set))

        return save

    def _apply_forgets(self, summary: PushSummary) -> None:
        requests = self.journal.unapplied_forget_requests()
        for req in requests:
            self.uplink.set_deprecated(req["kind"], [req["value"]], bool(req["forget"]))
        self.journal.mark_forget_applied([r["request_id"] for r in requests])
        summary.forgets_applied = len(requests)
