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
import gc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from fwspool.binding import Binding, WrongLaunchPad, refusal
from fwspool.errors import UplinkUnavailable
from fwspool.events import age, as_utc, iso, utcnow
from fwspool.failpoints import failpoint
from fwspool.journal import LAST_PUSH_KEY, Journal
from fwspool.launchpad import ApplyResult, Disposition, Verdict
from fwspool.plural import counted
from fwspool.runs import LaunchEvents
from fwspool.uplink import Uplink

__all__ = ["LAST_FOLLOW_KEY", "LAST_PUSH_KEY", "PushSummary", "Pusher", "age"]

#: The ``meta`` key of the last look at launches the LaunchPad may have moved past.
LAST_FOLLOW_KEY = "last_follow"


def _held(launches: list[LaunchEvents], result: ApplyResult) -> dict[int, str]:
    """The launches whose events the application left pending, with why: as it said, else the
    general reason (a workflow locked by another process, a write the database refused)."""
    done = {event_id for event_id, _, _ in result.outcomes}
    held = dict(result.held)
    for launch in launches:
        if launch.launch_id not in held and any(e.event_id not in done for e in launch.events):
            held[launch.launch_id] = (
                f"launch {launch.launch_id}: the last push left events pending (a workflow locked by another "
                "process, or a write the database refused); tried again next pass"
            )
    return held


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
    #: Ended launches the LaunchPad has moved past (rerun, reserved again): history now.
    history: int = 0
    #: Launches whose directory the LaunchPad corrected, or that it does not have: what came
    #: from elsewhere was set aside (fwspool.identity).
    moved: int = 0
    problems: list[str] = field(default_factory=list)
    #: What a batch could not reach besides the LaunchPad (a jobflow JobStore): the pass ends 75.
    unreachable: list[str] = field(default_factory=list)

    def count(self, result: ApplyResult) -> None:
        """Add what a batch did with each event."""
        for _, outcome, _detail in result.outcomes:
            if outcome == Disposition.APPLIED:
                self.applied += 1
            elif outcome == Disposition.SUPERSEDED:
                self.superseded += 1
            else:
                self.skipped += 1

    def changed(self) -> bool:
        """Whether the pass changed anything: on the LaunchPad, or what the journal knows."""
        return bool(
            self.applied
            or self.superseded
            or self.skipped
            or self.registered
            or self.forgets_applied
            or self.released
            or self.history
            or self.moved
        )

    def line(self) -> str:
        return (
            f"push: {counted(self.launches, 'launch')}, {counted(self.applied, 'event')} applied, "
            f"{self.superseded} superseded, {self.skipped} skipped, "
            f"{counted(self.registered, 'offline run')} registered, "
            f"{counted(self.forgets_applied, 'forget request')} applied"
            + (f", {counted(self.released, 'reservation')} released" if self.released else "")
        )


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """The objects that exist before a push's batches (the imports of FireWorks, pymongo and
    fwspool, a daemon's state) left out of the garbage collector's full collections meanwhile.

    A batch keeps its launches' documents alive until it is marked, enough at 500 launches to
    set off a full collection, which visits every object of the process: the per-launch CPU
    then grew with N (#23). Frozen, a full collection visits what the batches made.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
            self._check_binding()
            self._finish_redo(summary)
            self._apply_forgets(summary)
            runs = self.uplink.open_offline_runs()
            moved = self._settle_identities(runs)
            summary.problems.extend(moved)
            summary.moved = len(moved)
            summary.registered = self.journal.register_offline_runs(runs)
            self._push_pending(summary, should_stop, progress)
            self._follow(summary)
            if summary.unreachable:
                # The rest is pushed and marked; what waits on another store ends the pass as an
                # unreachable database does (exit 75, --watch retries).
                raise UplinkUnavailable(summary.unreachable[0])
        except UplinkUnavailable as exc:
            raise self.unavailable(exc) from None
        self.journal.set_meta(LAST_PUSH_KEY, iso(self.clock()))
        return summary

    def _finish_redo(self, summary: PushSummary) -> None:
        """A pass died between writing a bulk completion and marking it: finish its writes (or
        learn that they are no longer its to finish: its events stay pending)."""
        for redo_id, write_set in self.journal.pending_redo():
            if self.uplink.replay(write_set) == Verdict.WAITING:
                summary.problems.append(
                    "the workflows of an interrupted push are locked by another process; it is finished next pass"
                )
                continue
            self.journal.mark_pushed([], done_redo=[redo_id])

    def _push_pending(
        self,
        summary: PushSummary,
        should_stop: Callable[[], bool],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        """Apply the pending events, ``batch_launches`` launches at a time, each batch marked
        pushed once the database acknowledged it."""
        total, _ = self.journal.pending_summary()
        with heap_frozen():
            self._push_batches(summary, should_stop, progress, total)

    def _push_batches(
        self,
        summary: PushSummary,
        should_stop: Callable[[], bool],
        progress: Callable[[int, int], None] | None,
        total: int,
    ) -> None:
        done = 0
        after: int | None = None
        while not should_stop():
            launches = self.journal.pending_launches(after, self.batch_launches)
            if not launches:
                break
            after = launches[-1].launch_id
            self._push_batch(launches, summary)
            done += sum(len(launch.events) for launch in launches)
            if progress:
                progress(min(done, total), total)

    def _push_batch(self, launches: list[LaunchEvents], summary: PushSummary) -> None:
        saved: list[int] = []
        result = self.uplink.apply(
            launches, self.clock(), redo=self._redo_saver(saved), owner=self.journal.identity()
        )
        failpoint("push.before_mark")
        # Only now, with the database's acknowledgement in hand.
        self.journal.mark_pushed(
            result.outcomes,
            done_redo=saved,
            launches=result.pushed,
            batch=[launch.launch_id for launch in launches],
            held=_held(launches, result),
        )
        summary.launches += len(launches)
        summary.count(result)
        summary.problems.extend(result.problems)
        summary.unreachable.extend(result.unreachable)
        summary.released += len(result.released_launches)

    def _check_binding(self) -> None:
        """One journal, one LaunchPad (:mod:`fwspool.binding`): bind on the first push, refuse
        another LaunchPad or a reset one on every later push, before anything is written."""
        bound = self.journal.binding()
        seen = self.uplink.identity(claim=bound is None)
        if bound is None:
            if seen.epoch is None:
                raise UplinkUnavailable(f"LaunchPad {seen.where} gave no epoch; trying again next pass")
            self.journal.bind(
                Binding(seen.where, seen.epoch, self.uplink.launchpad_file(), iso(self.clock()))
            )
            return
        problem = refusal(bound, seen, self.journal.path)
        if problem is not None:
            raise WrongLaunchPad(problem)

    def _settle_identities(self, runs: list[dict[str, Any]]) -> list[str]:
        """Ask the LaunchPad where its launches of the journal's unconfirmed ids run, and let the
        journal confirm them or set aside what is not this LaunchPad's (:mod:`fwspool.identity`).
        Costs nothing once every launch is confirmed."""
        asked = self.journal.unconfirmed_launches()
        if not asked:
            return []
        from_registry = {r["launch_id"]: r for r in runs}
        homes, next_launch_id = self.uplink.launch_homes([lid for lid in asked if lid not in from_registry])
        homes.update((lid, from_registry[lid]) for lid in asked if lid in from_registry)
        return self.journal.settle_identities(asked, homes, next_launch_id)

    #: Seconds between two looks at whether the LaunchPad moved past ended launches.
    FOLLOW_EVERY = 60.0

    def _follow(self, summary: PushSummary) -> None:
        """Launches the LaunchPad moved past (a rerun, a reservation taken again) become history
        in the journal, so that ``fwspool status`` describes the Fireworks as they are now."""
        now = self.clock()
        last = self.journal.get_meta(LAST_FOLLOW_KEY)
        if last is not None and (now - as_utc(last)).total_seconds() < self.FOLLOW_EVERY:
            return
        followed = self.journal.launches_to_follow()
        if followed:
            fireworks = self.uplink.fireworks_of(sorted({fw_id for _, fw_id in followed}))
            summary.history = self.journal.follow(fireworks, followed)
        self.journal.set_meta(LAST_FOLLOW_KEY, iso(now))

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
