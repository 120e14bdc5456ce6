"""What a launch came to, in words: the outcomes ``fwspool status`` shows and the journal keeps.

One vocabulary for both sides of the journal. The pusher records, as it marks a batch pushed,
what it left on the LaunchPad of each launch (:class:`PushedLaunch`: the Firework's state and
name, the launch's outcome and why; :mod:`fwspool.launchpad.pushed`). ``fwspool status`` shows
that, and for a launch whose events are still pending, what those events imply
(:func:`implied`), by the rules the pusher applies them with (:mod:`fwspool.runs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from fwspool.runs import LaunchEvents, PendingEvent, ending_of, why_ended

#: Started, no end yet.
RUNNING = "running"
#: The Firework's tasks completed.
COMPLETED = "completed"
#: A task failed: FireWorks' own FIZZLED, with the exception.
FIZZLED = "fizzled"
#: The job was killed by a signal (walltime, ``scancel``, preemption): FIZZLED by fwspool.
KILLED = "killed"
#: The job ended without completing and without a signal (a failed start: exit 65, 66, 78).
EXITED = "exited"
#: The batch job vanished without recording an end (SIGKILL, out of memory, a node failure).
LOST = "lost"
#: The batch job never started the launch: its reservation was handed back, the Firework READY.
RELEASED = "released"
#: The LaunchPad moved on (a rerun, a deleted Firework, ``forget_offline``): events not applied.
SUPERSEDED = "superseded"
#: What a push records (the CHECK of ``launches.outcome``).
PUSHED_OUTCOMES = (RUNNING, COMPLETED, FIZZLED, KILLED, EXITED, LOST, RELEASED, SUPERSEDED)

#: The journal's own, never pushed: ``fwspool forget`` stopped the launch.
FORGOTTEN = "forgotten"
#: Nothing ran yet: no event of the launch is in the journal (its job is queued, or died first).
WAITING = "waiting"
#: Outcomes that end a launch without a result.
FAILURES = frozenset({FIZZLED, KILLED, EXITED, LOST})


class PushedLaunch(NamedTuple):
    """What one push left of a launch on the LaunchPad, for the journal to remember."""

    launch_id: int
    fw_id: int | None
    fw_name: str | None
    #: The Firework's state as the push left it; None when the Firework is no longer there.
    state: str | None
    outcome: str
    detail: str | None


class Implied(NamedTuple):
    """The Firework state and outcome a launch's events imply, once pushed."""

    state: str
    outcome: str
    detail: str | None


def fizzle_reason(action: dict[str, Any] | None) -> str | None:
    """Why a task fizzled, in one line: the last line of the exception FireWorks stored."""
    stored = (action or {}).get("stored_data") or {}
    if not isinstance(stored, dict):
        return None
    exception = stored.get("_exception")
    trace = exception.get("_stacktrace") if isinstance(exception, dict) else None
    lines = [ln.strip() for ln in str(trace or "").splitlines() if ln.strip()]
    if lines:
        return lines[-1][:300]
    message = stored.get("_message")
    return str(message)[:300] if message else None


def of_end(event: PendingEvent) -> Implied:
    """The state and outcome of an event that ends a launch (completed, exited, lost, released)."""
    p = event.payload
    if event.type == "completed":
        if p.get("state") == "COMPLETED":
            return Implied("COMPLETED", COMPLETED, None)
        return Implied(str(p.get("state")), FIZZLED, fizzle_reason(p.get("action")))
    if event.type == "released":
        return Implied("READY", RELEASED, p.get("reason"))
    how, detail = why_ended(event)
    if event.type == "lost":
        return Implied("FIZZLED", LOST, f"{how}: {detail}")
    words = how.removeprefix("was ") + (f": {detail}" if detail else "")
    return Implied("FIZZLED", KILLED if p.get("signal") is not None else EXITED, words)


def implied(events: Sequence[PendingEvent]) -> Implied | None:
    """What these events of one launch (all of them, in order) make of it once pushed, by the
    rules of :mod:`fwspool.runs`: a completion wins; else the last run's end, unless a requeued
    run started after it; a reservation released; running. None: nothing ran yet."""
    ending = ending_of(LaunchEvents(0, list(events)))
    if ending is not None:
        return of_end(ending)
    started = any(e.type == "started" for e in events)
    released = next((e for e in events if e.type == "released"), None)
    if released is not None and not started:
        return of_end(released)
    return Implied("RUNNING", RUNNING, None) if started else None
