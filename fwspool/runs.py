"""A launch's runs: what its events say happened, before anything is written to the LaunchPad.

One reservation (one launch) can be run more than once: a batch system that requeues or
preempts a job runs the same ``FW_submit.script`` again in the same launch directory, so a
second ``started`` follows the first run's ``exited``. And the end of a run is sometimes only
inferred: ``lost`` when the batch job vanished without a word (SIGKILL, OOM, node failure).

The rules (docs/batch-systems.md, "Walltime, cancelled jobs, requeue and lost runs"):

- A ``completed`` event ends the launch with its state and FWAction: a real result always wins.
- Otherwise the last run-ending event (``exited``, ``lost``) ends it as FIZZLED — unless a
  ``started`` comes after it: then the job was requeued and the launch runs on.
- A FIZZLED that fwspool itself inferred (from ``exited`` or ``lost``, never a task's own
  FIZZLED) is *undone* when a later run starts or a real completion arrives: the launch is
  RUNNING again, the interrupted run is kept in the RUNNING entry's ``interrupted_runs``, and the
  state, action and times are those of the run that finished. Whatever the passes saw of the
  events in between, the launch ends the same.

Everything here works in memory on launch documents as FireWorks writes them (what
``Launch.from_dict(doc).to_db_dict()`` gives, held to it by tests/test_fireworks_documents.py),
without building FireWorks' ``Launch``; nothing talks to MongoDB.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NamedTuple

from fwspool.events import FINAL_STATES, as_utc
from fwspool.fireworks_documents import set_launch_state, stored_fworker, stored_launch_doc, with_launch_times

#: Keys of stored_data by which a FIZZLED action is known to be fwspool's inference.
INFERRED_KEYS = ("_fwspool_exit", "_fwspool_lost")
#: Events that end a run without a result.
RUN_ENDS = ("exited", "lost")


@dataclass(slots=True)
class PendingEvent:
    event_id: str
    type: str
    occurred_at: str
    payload: dict[str, Any]


@dataclass(slots=True)
class LaunchEvents:
    """The pending events of one launch, in order, and what the journal knows besides."""

    launch_id: int
    events: list[PendingEvent]
    #: A completed event for this launch is in the journal (pushed or not).
    has_completion: bool = False
    #: For a launch only the inbox announced: the directories it ran in. Launch ids are per
    #: LaunchPad, so the LaunchPad's launch of this id must be one of them to be this launch.
    announced_dirs: tuple[str, ...] = ()
    #: Records of this launch's spool files that ingest quarantined (too large, too deep,
    #: damaged): one of them may be its completion.
    quarantined: int = 0


def writer_of(event: PendingEvent) -> str:
    """The writer id in an event id (``<writer>-<seq>``): one writer is one run of a launch."""
    return event.event_id.rsplit("-", 1)[0]


def run_of(end: PendingEvent) -> str | None:
    """The run an exit ends: the one it names (the signal handler's file is not the run's), else
    its writer's. The merge of writers by clock may put a run's own start after its end (a clock
    stepped back): that start does not begin a new run."""
    return end.payload.get("run") or (writer_of(end) if end.type == "exited" else None)


def _action(stored_data: dict[str, Any]) -> dict[str, Any]:
    return {
        "stored_data": stored_data,
        "exit": True,
        "update_spec": {},
        "mod_spec": [],
        "additions": [],
        "detours": [],
        "defuse_children": False,
        "defuse_workflow": False,
        "propagate": False,
    }


def why_ended(event: PendingEvent) -> tuple[str, str | None]:
    """A run's end in words, and what more is known: ('was killed by SIGTERM', None),
    ('exited with return code 65', the error it recorded), ('vanished', why fwspool thinks so)."""
    p = event.payload
    if event.type == "lost":
        end = p.get("batch_end")
        gone = (
            f"batch job {p.get('batch_job_id')} is no longer queued or running and the launch recorded no end"
        )
        if p.get("launch_dir_gone"):
            return "vanished", (
                f"{gone}, and its launch directory {p['launch_dir_gone']} is gone: deleted, or moved (then "
                "`fwspool sync --root DIR`, DIR holding it, reads it where it is now)"
            )
        if isinstance(end, dict) and end.get("query_error"):
            return "vanished", f"{gone} ({end.get('words')})"
        if isinstance(end, dict) and end.get("cause"):
            # The batch system's own record: "walltime (qacct -j: failed 37 : qmaster enforced ...)".
            return "vanished", f"{gone}: {end['cause']} ({end.get('source')}: {end.get('words')})"
        return "vanished", f"{gone} (killed with SIGKILL, out of memory, or its node failed)"
    if p.get("signal") is not None:
        return f"was killed by {p.get('signal_name') or 'signal ' + str(p['signal'])}", p.get("error")
    return f"exited with return code {p.get('returncode')}", p.get("error")


def ending_action(event: PendingEvent) -> dict[str, Any]:
    """The FWAction of a run that ended without completing (walltime, crash, lost job): its
    ``_message`` reads 'fwspool: the job was killed by SIGTERM before the Firework completed'."""
    facts = {k: v for k, v in event.payload.items() if k != "type"}
    key = "_fwspool_lost" if event.type == "lost" else "_fwspool_exit"
    how, detail = why_ended(event)
    message = f"fwspool: the job {how} before the Firework completed" + (f": {detail}" if detail else "")
    return _action({"_message": message, key: facts, "_exited_at": event.occurred_at})


class Final(NamedTuple):
    """The state, FWAction and time that end a launch."""

    state: str
    action: dict[str, Any]
    completed_on: dt.datetime


def last_run_end(launch: LaunchEvents) -> PendingEvent | None:
    """The pending event that ends the launch's last run (an exit, a lost job), if any."""
    ending: PendingEvent | None = None
    for ev in launch.events:
        if ev.type in RUN_ENDS:
            ending = ev
        elif ev.type == "started" and ending is not None and writer_of(ev) != run_of(ending):
            ending = None  # requeued: another run of the launch began after this end
    return ending


def ending_of(launch: LaunchEvents) -> PendingEvent | None:
    """The pending event that ends this launch, if its pending events end it: the one rule.

    A completion wins; after a completion pushed before, a later exit adds nothing; else the
    end of the last run (:func:`last_run_end`).
    """
    completion = next((e for e in launch.events if e.type == "completed"), None)
    if completion is not None or launch.has_completion:
        return completion
    return last_run_end(launch)


def final_of_event(ending: PendingEvent) -> Final:
    """How an ending event ends its launch: a completion with its own state, action and time; an
    exit or a lost job FIZZLED, with fwspool's action saying why, at the time it was recorded."""
    if ending.type == "completed":
        p = ending.payload
        return Final(p["state"], p["action"], as_utc(p["completed_on"]))
    return Final("FIZZLED", ending_action(ending), as_utc(ending.occurred_at))


def _waits_on_quarantine(launch: LaunchEvents, ending: PendingEvent | None) -> bool:
    """Whether the launch's end must wait because its completion is probably quarantined.

    A run that ended on its own (no signal, no failed start) recorded its completion before it
    exited (`fwspool rlaunch` always does): when no completion is in the journal but some of the
    launch's records are quarantined, the completion is among them (larger than ``--max-record``,
    or damaged). Applying the exit would make the Firework FIZZLED for a result that exists; it
    waits instead, until ``fwspool ingest --retry-quarantined`` with a larger limit brings the
    completion in, or the Firework is rerun on the LaunchPad (the launch is then superseded).
    """
    if not launch.quarantined or ending is None or ending.type != "exited":
        return False  # an exit is the ending only when no completion is in the journal
    return ending.payload.get("signal") is None and not ending.payload.get("error")


@dataclass(frozen=True, slots=True)
class LaunchReading:
    """What a launch's pending events say, read once (:func:`read_launch`) before anything is
    written: every step of an application reads this instead of the events again."""

    launch: LaunchEvents
    #: The pending event that ends the launch (:func:`ending_of`); None: it runs on.
    ending: PendingEvent | None
    #: How it ends (:func:`final_of_event` of ``ending``).
    final: Final | None
    #: A run starts or the real result arrives: an inferred FIZZLED is undone (:meth:`reopens`).
    restarts: bool
    #: The clean exit that waits for a quarantined completion; None when nothing waits.
    waits_on: PendingEvent | None
    #: Its reservation is handed back (a ``released`` event).
    released: bool

    def reopens(self, state: str | None, action: dict[str, Any] | None) -> bool:
        """Whether these events undo a launch that is ``state`` with ``action`` on the LaunchPad:
        a FIZZLED fwspool inferred, and a new run or the real result."""
        return state == "FIZZLED" and self.restarts and inferred_end(action)


def read_launch(launch: LaunchEvents) -> LaunchReading:
    """Read a launch's pending events into what they say (:class:`LaunchReading`)."""
    ending = ending_of(launch)
    waits = _waits_on_quarantine(launch, ending)
    return LaunchReading(
        launch,
        ending,
        final_of_event(ending) if ending is not None else None,
        any(e.type in ("started", "completed") for e in launch.events),
        ending if waits else None,
        any(e.type == "released" for e in launch.events),
    )


def inferred_end(action: dict[str, Any] | None) -> bool:
    """Whether a FIZZLED launch's action is fwspool's inference rather than a task's own."""
    stored = (action or {}).get("stored_data") or {}
    return isinstance(stored, dict) and any(k in stored for k in INFERRED_KEYS)


def stamp_completion(history: list[dict[str, Any]], state: str, completed_on: dt.datetime) -> None:
    """Put the compute node's completion time, not the push's, on the launch's final entry."""
    for entry in reversed(history):
        if entry["state"] == state:
            entry["created_on"] = completed_on.isoformat()
            break


def _undo_inferred_end(doc: dict[str, Any], now: dt.datetime) -> dict[str, Any] | None:
    """Make a launch FIZZLED by inference RUNNING again; returns the run it ended, as a record
    for ``interrupted_runs`` (used if a new run follows; the same run goes on otherwise)."""
    history = doc["state_history"]
    if not history or history[-1]["state"] != "FIZZLED":
        return None
    ended = history.pop()
    stored = (doc["action"]["stored_data"] if doc["action"] is not None else {}) or {}
    running = next((h for h in reversed(history) if h["state"] == "RUNNING"), None)
    doc["action"] = None
    set_launch_state(doc, "RUNNING", now)  # appends a RUNNING entry only if there was none
    return inferred_run_record(
        stored, running["created_on"] if running is not None else None, ended.get("created_on")
    )


def inferred_run_record(stored: dict[str, Any], started_on: Any, ended_on: Any) -> dict[str, Any]:
    """The ``interrupted_runs`` record of a run that an inferred FIZZLED (its action's
    ``stored_data``) ended, with the run's start and end as the history holds them."""
    facts = stored.get("_fwspool_exit") or stored.get("_fwspool_lost") or {}
    return {
        "started_on": started_on,
        "ended_on": ended_on,
        "ended_by": stored.get("_message"),
        **({"exit": facts} if facts else {}),
        "_run": facts.get("run"),
    }


def _same_time(value: str | None, when: dt.datetime) -> bool:
    return value is not None and as_utc(value) == when


@dataclass(slots=True)
class _Phase:
    """What the running phase carries from one event to the next."""

    #: When the push runs: the time FireWorks' state setter gives a new history entry.
    now: dt.datetime
    #: The run the last run-ending event ended (an ``interrupted_runs`` record), until a start.
    ended: dict[str, Any] | None = None
    #: The newest ping time seen and the checkpoint to keep.
    newest_touch: tuple[dt.datetime, dict[str, Any] | None] | None = None


class RunningPhase(NamedTuple):
    """A launch document before and after its running phase, both as FireWorks would write them
    (``Launch.from_dict(doc).to_db_dict()`` before and after FireWorks' own calls)."""

    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def changed(self) -> dict[str, Any] | None:
        """The document to write, None when the events change nothing."""
        return self.after if self.after != self.before else None


def running_phase(
    doc: dict[str, Any], events: list[PendingEvent], *, reopen: bool = False, now: dt.datetime | None = None
) -> RunningPhase:
    """A launch's running phase (:func:`run_running_phase`) on its document as read from the
    LaunchPad, which is left as it was. The change is judged on FireWorks' own documents
    (:func:`~fwspool.fireworks_documents.stored_launch_doc`), the one written included."""
    now = now or dt.datetime.now(dt.UTC)
    before = stored_launch_doc(doc, now)
    # The phase replaces entries' values and never changes one in place: shallow copies do.
    after = dict(before, state_history=[dict(h) for h in before["state_history"]])
    run_running_phase(after, events, reopen=reopen, now=now)
    return RunningPhase(before, with_launch_times(after, now))


def changed_launch_doc(
    doc: dict[str, Any], events: list[PendingEvent], *, reopen: bool = False
) -> dict[str, Any] | None:
    """The launch document after its running phase if the events changed it, else None."""
    return running_phase(doc, events, reopen=reopen).changed


def run_running_phase(
    doc: dict[str, Any], events: list[PendingEvent], *, reopen: bool = False, now: dt.datetime
) -> None:
    """Apply a launch's running phase to its document (as FireWorks writes it) in memory.

    Mirrors ``checkout_fw`` (state RUNNING, host, ip, fworker), ``ping_launch`` (touch the
    RUNNING entry's ``updated_on``, keep the checkpoint) and ``change_launch_dir``, with the
    times recorded on the compute node. A ``started`` after a run's end (in these events, or the
    inferred FIZZLED that ``reopen`` undoes) begins a new run of the same launch: its start
    becomes the RUNNING entry's, and the interrupted run is listed in ``interrupted_runs``.
    ``completed`` is not applied here (the caller completes the launch). Times are written as
    FireWorks serializes an aware datetime (``isoformat()``); the document's time fields are
    the caller's (:func:`~fwspool.fireworks_documents.with_launch_times`).
    """
    phase = _Phase(now)
    if reopen and doc["state"] == "FIZZLED":
        phase.ended = _undo_inferred_end(doc, now)
    for ev in events:
        if ev.type == "started":
            _start(doc, ev, phase)
        elif ev.type in RUN_ENDS:
            phase.ended = _ended_run(doc, ev)
        elif ev.type in ("ping", "checkpoint"):
            phase.newest_touch = _newer_touch(phase.newest_touch, ev)
        elif ev.type == "launch_dir_changed":
            doc["launch_dir"] = ev.payload["launch_dir"]
    if phase.newest_touch is not None and doc["state"] == "RUNNING":
        _touch(doc, *phase.newest_touch)


def _start(doc: dict[str, Any], ev: PendingEvent, phase: _Phase) -> None:
    """A run starts: the RUNNING entry takes its start (and a new run's, the interrupted one's record)."""
    p = ev.payload
    started_on = as_utc(p["started_on"])
    if doc["state"] in FINAL_STATES:
        return
    # A RUNNING entry made just now carries the push's time: the start replaces it, and
    # pings (seen before or after this event: writers interleave by clock) move it on.
    fresh = doc["state"] != "RUNNING"
    if fresh:
        set_launch_state(doc, "RUNNING", phase.now)
    entry = next(h for h in reversed(doc["state_history"]) if h["state"] == "RUNNING")
    ended = phase.ended
    if ended is not None and ended.get("_run") == writer_of(ev):
        ended = None  # the interrupted run's own start, merged after its end by clock
    if ended is not None and not _same_time(entry.get("created_on"), started_on):
        ended.pop("_run", None)
        # A new list: the entry is a copy, its list is still the document's as read.
        entry["interrupted_runs"] = [*entry.get("interrupted_runs", []), ended]
        entry.pop("checkpoint", None)
        entry["updated_on"] = started_on.isoformat()
        phase.newest_touch = None  # the interrupted run's pings are not this run's
        fresh = True
    phase.ended = None
    entry["created_on"] = started_on.isoformat()
    if fresh or phase.newest_touch is None:
        entry["updated_on"] = started_on.isoformat()
    if p.get("host"):
        doc["host"] = p["host"]
    if p.get("ip"):
        doc["ip"] = p["ip"]
    if p.get("fworker"):
        doc["fworker"] = stored_fworker(p["fworker"])


def _ended_run(doc: dict[str, Any], ev: PendingEvent) -> dict[str, Any]:
    """The record of the run an ``exited``/``lost`` ends, kept should another run follow."""
    running = next((h for h in reversed(doc["state_history"]) if h["state"] == "RUNNING"), None)
    return {
        "started_on": running["created_on"] if running is not None else None,
        "ended_on": as_utc(ev.occurred_at).isoformat(),
        "ended_by": ending_action(ev)["stored_data"]["_message"],
        "exit": {k: v for k, v in ev.payload.items() if k != "type"},
        "_run": run_of(ev),
    }


def _newer_touch(
    newest: tuple[dt.datetime, dict[str, Any] | None] | None, ev: PendingEvent
) -> tuple[dt.datetime, dict[str, Any] | None]:
    """The newest ping time so far and the checkpoint to keep, after this ping or checkpoint."""
    when = ev.payload.get("ping_time")
    when_dt = as_utc(when) if when else None
    checkpoint = ev.payload.get("checkpoint")
    if when_dt is None:
        when_dt = newest[0] if newest else None
    if newest is None or (when_dt is not None and when_dt >= newest[0]):
        return (
            when_dt or as_utc(ev.occurred_at),
            checkpoint if checkpoint is not None else (newest[1] if newest else None),
        )
    if checkpoint is not None:
        return (newest[0], checkpoint)
    return newest


def _touch(doc: dict[str, Any], ping_time: dt.datetime, checkpoint: dict[str, Any] | None) -> None:
    """ping_launch touches only a RUNNING launch, and only its last history entry."""
    entry = doc["state_history"][-1]
    current = entry.get("updated_on")
    if current is None or as_utc(current) <= ping_time:
        entry["updated_on"] = ping_time.isoformat()
    if checkpoint is not None:
        entry["checkpoint"] = checkpoint
