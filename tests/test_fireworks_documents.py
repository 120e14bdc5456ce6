"""The launch and Firework documents a push writes are FireWorks' own ``to_db_dict()``, key for
key and in order, though built at less cost (:mod:`fwspool.fireworks_documents`)."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import types
import unittest.mock
from collections.abc import Iterator
from typing import Any

import pytest
from fireworks import Firework, FWAction, FWorker, ScriptTask, Workflow
from fireworks.core.firework import Launch
from fireworks.utilities.fw_serializers import recursive_dict
from hypothesis import given, settings
from hypothesis import strategies as st

from fwspool.events import FINAL_STATES, as_utc
from fwspool.fireworks_documents import firework_db_dict, launch_db_dict
from fwspool.launchpad.completion import completed_launch_doc
from fwspool.launchpad.fireworks_internals import PrefetchedCollection, load_workflow
from fwspool.launchpad.vocabulary import Routed
from fwspool.runs import (
    RUN_ENDS,
    Final,
    LaunchEvents,
    PendingEvent,
    ending_action,
    inferred_run_record,
    read_launch,
    run_of,
    running_phase,
    writer_of,
)
from fwspool.runs import _newer_touch as newer_touch  # the ping rule: event times, no document

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)

#: What a task stores: JSON values, non-ASCII and date-like text (FireWorks reads those as times).
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["é✓", "2026-03-02T08:00:00", "2026-03-02T08:00:00.5+01:00", "T", "COMPLETED"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
TIMES = st.datetimes(dt.datetime(2020, 1, 1), dt.datetime(2030, 1, 1)) | st.builds(
    lambda t: t.replace(tzinfo=dt.UTC), st.datetimes(dt.datetime(2020, 1, 1), dt.datetime(2030, 1, 1))
)


def a_workflow(name: str) -> dict[str, Any]:
    return Workflow([Firework(ScriptTask.from_str(f"echo {name}"), name=name)]).to_dict()


@st.composite
def actions(draw: st.DrawFn) -> FWAction | None:
    if draw(st.booleans()):
        return None
    d = FWAction(
        stored_data=draw(st.dictionaries(st.text(max_size=6), VALUES, max_size=4)),
        update_spec=draw(st.dictionaries(st.text(max_size=6), VALUES, max_size=2)),
        mod_spec=[{"_push": {"log": draw(VALUES)}}] if draw(st.booleans()) else [],
        defuse_children=draw(st.booleans()),
        exit=draw(st.booleans()),
    ).to_dict()
    d["additions"] = [a_workflow("added")] if draw(st.booleans()) else []
    d["detours"] = [a_workflow("detour")] if draw(st.booleans()) else []
    return FWAction.from_dict(d)


@st.composite
def launches(draw: st.DrawFn) -> Launch:
    history: list[dict[str, Any]] = [
        {"state": "RESERVED", "created_on": draw(TIMES), "updated_on": draw(TIMES)}
    ]
    states = draw(
        st.sampled_from([["RESERVED"], ["RUNNING"], ["RUNNING", "COMPLETED"], ["RUNNING", "FIZZLED"]])
    )
    for state in states[states[0] == "RESERVED" :]:
        entry: dict[str, Any] = {"state": state, "created_on": draw(TIMES)}
        if state == "RUNNING":
            entry["updated_on"] = draw(TIMES)
            if draw(st.booleans()):
                entry["checkpoint"] = draw(VALUES)
            if draw(st.booleans()):
                entry["interrupted_runs"] = [{"started_on": draw(TIMES), "exit": draw(VALUES)}]
        history.append(entry)
    fworker = FWorker(draw(st.text(min_size=1, max_size=8)), "cat", {"q": draw(VALUES)}, {"e": "é"})
    return Launch(
        states[-1],
        draw(st.text(min_size=1, max_size=20)),
        fworker=fworker,
        host=draw(st.sampled_from(["nid00042", "nœud-1"])),
        ip="10.0.0.42",
        action=draw(actions()),
        state_history=history,
        launch_id=draw(st.integers(1, 10**6)),
        fw_id=draw(st.integers(1, 10**6)),
    )


def same_document(ours: dict[str, Any], fireworks: dict[str, Any]) -> None:
    """Key for key, in order; the time a launch never started spent reserved is counted to now."""
    assert list(ours) == list(fireworks)
    if "reservedtime_secs" in ours and ours.get("time_start") is None:
        assert ours.pop("reservedtime_secs") == pytest.approx(fireworks.pop("reservedtime_secs"), abs=60)
    assert ours == fireworks


@settings(max_examples=150, deadline=None)
@given(launch=launches())
def test_a_launch_document_is_fireworks_own(launch: Launch) -> None:
    same_document(launch_db_dict(launch), launch.to_db_dict())


@settings(max_examples=60, deadline=None)
@given(
    spec=st.dictionaries(st.text(max_size=6), VALUES, max_size=5),
    current=st.lists(launches(), max_size=3),
    archived=st.lists(launches(), max_size=2),
    state=st.sampled_from(["WAITING", "READY", "RUNNING", "COMPLETED", "FIZZLED"]),
)
def test_a_firework_document_is_fireworks_own(
    spec: dict[str, Any], current: list[Launch], archived: list[Launch], state: str
) -> None:
    fw = Firework(ScriptTask.from_str("echo é"), spec=spec, name="fw-✓", fw_id=7, state=state)
    fw.launches, fw.archived_launches = current, archived
    ours = firework_db_dict(fw)
    assert fw.launches is current and fw.archived_launches is archived  # put back
    same_document(ours, fw.to_db_dict())


def test_a_lazy_firework_document_is_fireworks_own() -> None:
    """FireWorks' LazyFirework over prefetched documents, as a bulk completion loads them."""
    first = Firework(ScriptTask.from_str("echo a"), name="a", fw_id=1, spec={"big": list(range(2000))})
    launch = Launch("RUNNING", "/runs/1", fworker=FWorker(), fw_id=1, launch_id=3, host="h", ip="i")
    first.launches, first.archived_launches = [launch], [Launch("FIZZLED", "/runs/0", fw_id=1, launch_id=2)]
    wf = Workflow([first], name="wf", created_on=T0, updated_on=T0)
    fireworks = {1: first.to_db_dict()}
    docs = {3: launch.to_db_dict(), 2: first.archived_launches[0].to_db_dict()}

    def lazy() -> Any:
        wf_doc = dict(wf.to_db_dict(), _id="wf")
        loaded = load_workflow(
            wf_doc, PrefetchedCollection(fireworks, "fw_id"), PrefetchedCollection(docs, "launch_id"), None
        )
        return loaded.id_fw[1]

    same_document(firework_db_dict(lazy()), lazy().to_db_dict())


# -- The running phase and the completed launch on documents: FireWorks' own Launch, to the key --
#
# fwspool.runs applies a launch's events to its document as read from MongoDB, without building
# FireWorks' Launch. The reference below is the same running phase written on FireWorks' Launch
# (``Launch.from_dict``, its state setter, ``to_db_dict()``), as fwspool applied it before it
# moved to documents (#23): what fwspool writes must stay what FireWorks' own objects would
# write. A change to a rule in fwspool.runs is made here too, deliberately.

NOW = dt.datetime(2026, 3, 3, 12, 0, 0, 123456, tzinfo=dt.UTC)


class _FrozenDatetime(dt.datetime):
    """FireWorks' clock at NOW: its state setter and ``reservedtime_secs`` read it."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return NOW


@contextlib.contextmanager
def fireworks_clock_at_now() -> Iterator[None]:
    import fireworks.core.firework as firework_module

    shim = types.SimpleNamespace(datetime=_FrozenDatetime, timezone=dt.timezone)
    with unittest.mock.patch.object(firework_module, "datetime", shim):
        yield


def reference_running_phase(launch: Launch, events: list[PendingEvent], reopen: bool) -> None:
    """fwspool's running phase on FireWorks' Launch (fwspool.runs before #23's documents)."""
    ended: dict[str, Any] | None = None
    newest: tuple[dt.datetime, Any] | None = None
    if reopen and launch.state == "FIZZLED":
        ended = _reference_undo(launch)
    for ev in events:
        if ev.type == "started":
            ended, newest = _reference_start(launch, ev, ended, newest)
        elif ev.type in RUN_ENDS:
            running = next((h for h in reversed(launch.state_history) if h["state"] == "RUNNING"), None)
            ended = {
                "started_on": running["created_on"] if running is not None else None,
                "ended_on": as_utc(ev.occurred_at),
                "ended_by": ending_action(ev)["stored_data"]["_message"],
                "exit": {k: v for k, v in ev.payload.items() if k != "type"},
                "_run": run_of(ev),
            }
        elif ev.type in ("ping", "checkpoint"):
            newest = newer_touch(newest, ev)
        elif ev.type == "launch_dir_changed":
            launch.launch_dir = ev.payload["launch_dir"]
    if newest is not None and launch.state == "RUNNING":
        entry = launch.state_history[-1]
        current = entry.get("updated_on")
        if current is None or as_utc(current) <= newest[0]:
            entry["updated_on"] = newest[0]
        if newest[1] is not None:
            entry["checkpoint"] = newest[1]


def _reference_undo(launch: Launch) -> dict[str, Any] | None:
    history = launch.state_history
    if not history or history[-1]["state"] != "FIZZLED":
        return None
    ended = history.pop()
    stored = (launch.action.stored_data if launch.action is not None else {}) or {}
    running = next((h for h in reversed(history) if h["state"] == "RUNNING"), None)
    launch.action = None
    launch.state = "RUNNING"
    return inferred_run_record(
        stored, running["created_on"] if running is not None else None, ended.get("created_on")
    )


def _reference_start(
    launch: Launch, ev: PendingEvent, ended: dict[str, Any] | None, newest: tuple[dt.datetime, Any] | None
) -> tuple[dict[str, Any] | None, tuple[dt.datetime, Any] | None]:
    p = ev.payload
    started_on = as_utc(p["started_on"])
    if launch.state in FINAL_STATES:
        return ended, newest
    fresh = launch.state != "RUNNING"
    if fresh:
        launch.state = "RUNNING"
    entry = next(h for h in reversed(launch.state_history) if h["state"] == "RUNNING")
    new_run = ended
    if new_run is not None and new_run.get("_run") == writer_of(ev):
        new_run = None
    created = entry.get("created_on")
    if new_run is not None and not (created is not None and as_utc(created) == started_on):
        new_run.pop("_run", None)
        entry.setdefault("interrupted_runs", []).append(new_run)
        entry.pop("checkpoint", None)
        entry["updated_on"] = started_on
        newest = None
        fresh = True
    entry["created_on"] = started_on
    if fresh or newest is None:
        entry["updated_on"] = started_on
    if p.get("host"):
        launch.host = p["host"]
    if p.get("ip"):
        launch.ip = p["ip"]
    if p.get("fworker"):
        launch.fworker = FWorker.from_dict(p["fworker"])
    return None, newest


def reference_completed(launch: Launch, final: Final) -> dict[str, Any]:
    """complete_launch's state and action on the Launch, the real completion time on its entry."""
    launch.state = final.state
    launch.action = FWAction.from_dict(final.action)
    for entry in reversed(launch.state_history):
        if entry["state"] == final.state:
            entry["created_on"] = final.completed_on
            break
    return dict(launch.to_db_dict())


#: Times as FireWorks and fwspool write them, and as hand-made documents hold them.
TIME_TEXTS = st.builds(
    lambda t, form: form(t),
    st.datetimes(dt.datetime(2026, 3, 2, 7, 0), dt.datetime(2026, 3, 2, 9, 0)),
    st.sampled_from(
        [
            lambda t: t.isoformat(),  # naive, as FireWorks' own rocket writes some
            lambda t: t.replace(tzinfo=dt.UTC).isoformat(),
            lambda t: t.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z"),  # fwspool's journal
            lambda t: t.strftime("%Y-%m-%dT%H:%M:%S"),
        ]
    ),
)
#: Minutes after 08:00 at which events happen: few, so that runs overlap and times tie.
MINUTES = st.sampled_from([-30, 0, 1, 5, 5, 10, 30, 31, 40, 60])
WRITERS = st.sampled_from(["w", "v", "h", "login"])


def _at(minutes: int) -> str:
    return (T0 + dt.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


@st.composite
def pending_events(draw: st.DrawFn) -> list[PendingEvent]:
    """A launch's pending events: starts, pings and checkpoints, launch-dir changes, run ends,
    the task's result."""
    events: list[PendingEvent] = []
    kinds = ["started", "ping", "checkpoint", "launch_dir_changed", "exited", "lost", "completed"]
    for seq in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(kinds))
        writer, when = draw(WRITERS), draw(MINUTES)
        payload: dict[str, Any] = {}
        if kind == "started":
            payload = {"started_on": _at(when)}
            if draw(st.booleans()):
                payload.update(host=draw(st.sampled_from(["nid2", "nœud-3"])), ip="10.0.0.2")
            if draw(st.booleans()):
                fworker = FWorker(
                    writer, draw(st.sampled_from(["", "gpu"])), {"x": draw(VALUES)}, {"d": _at(1)}
                )
                payload["fworker"] = fworker.to_dict()
        elif kind in ("ping", "checkpoint"):
            if draw(st.booleans()):
                payload["ping_time"] = _at(draw(MINUTES))
            if kind == "checkpoint":
                payload["checkpoint"] = {
                    "_task_n": draw(st.integers(0, 3)),
                    "at": _at(when),
                    "v": draw(VALUES),
                }
        elif kind == "launch_dir_changed":
            payload = {"launch_dir": draw(st.sampled_from(["/moved/1", "/scratch/T2"]))}
        elif kind == "exited":
            payload = {"returncode": draw(st.sampled_from([0, 1, 143]))}
            if draw(st.booleans()):
                payload.update(signal=15, signal_name="SIGTERM", run=draw(WRITERS))
        elif kind == "lost":
            payload = {"batch_job_id": "123", "batch_end": {"cause": "walltime", "at": _at(when)}}
        else:
            # Actions that add Fireworks or not, stored data with times in it.
            action = recursive_dict(draw(actions()) or FWAction(stored_data={"at": _at(when)}))
            if draw(st.booleans()):  # times FireWorks writes back in its own form
                action["update_spec"] = {**action["update_spec"], "at": _at(when)}
                action["mod_spec"] = [*action["mod_spec"], {"_set": {"at": _at(when)}}]
            state = draw(st.sampled_from(["COMPLETED", "FIZZLED"]))
            payload = {"state": state, "action": action, "completed_on": _at(when)}
        events.append(PendingEvent(f"{writer}-{seq + 1}", kind, _at(when), payload))
    return events


@st.composite
def launch_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A launch document as a LaunchPad holds it: reserved, running (with checkpoints and runs
    interrupted before), FIZZLED by fwspool's inference or by its task, COMPLETED."""
    history: list[dict[str, Any]] = []
    states = draw(
        st.sampled_from(
            [
                ["RESERVED"],
                ["RESERVED", "RUNNING"],
                ["RUNNING"],
                ["RESERVED", "RUNNING", "FIZZLED"],
                ["RESERVED", "FIZZLED"],
                ["RESERVED", "RUNNING", "COMPLETED"],
            ]
        )
    )
    for state in states:
        entry: dict[str, Any] = {"state": state, "created_on": draw(TIME_TEXTS)}
        if state in ("RESERVED", "RUNNING"):
            entry["updated_on"] = draw(TIME_TEXTS | st.none())
        if state == "RESERVED" and draw(st.booleans()):
            entry["reservation_id"] = "4242"
        if state != "COMPLETED" and draw(st.booleans()):
            entry["checkpoint"] = {"_task_n": 1, "when": draw(TIME_TEXTS), "v": draw(VALUES)}
        if state == "RUNNING" and draw(st.booleans()):
            entry["interrupted_runs"] = [{"started_on": draw(TIME_TEXTS), "exit": {"returncode": 143}}]
        history.append(entry)
    action: dict[str, Any] | None = None
    if states[-1] == "FIZZLED":
        end = draw(pending_events().filter(lambda evs: any(e.type in RUN_ENDS for e in evs)))
        inferred = ending_action(next(e for e in end if e.type in RUN_ENDS))
        action = inferred if draw(st.booleans()) else recursive_dict(draw(actions()) or FWAction({"t": 1}))
    elif states[-1] == "COMPLETED":
        action = {**ending_action(PendingEvent("w-1", "exited", _at(0), {})), "stored_data": {"r": 1}}
    fworker = {"name": "login", "category": "", "query": '{"a": "2026-03-02T08:00:00"}', "env": {}}
    # Now and then a document FireWorks completes as it reads it (no FireWorker, no host, a
    # state its history does not end in): that one goes through FireWorks' own Launch.
    odd = draw(st.sampled_from([None, None, None, None, "fworker", "host", "state"]))
    return {
        "_id": draw(st.integers(1, 100)),
        "fworker": None if odd == "fworker" else fworker,
        "fw_id": 7,
        "launch_dir": draw(st.sampled_from(["/runs/1", "/runs/é", "/runs/2026-03-02T08:00:00"])),
        "host": "" if odd == "host" else "login1",
        "ip": "10.0.0.1",
        "trackers": [],
        "action": action,
        "state": "RESERVED" if odd == "state" and states[-1] != "RESERVED" else states[-1],
        "state_history": history,
        "launch_id": 9,
        "time_start": None,
    }


def reference_documents(doc: dict[str, Any], events: list[PendingEvent], reopen: bool) -> tuple[Any, ...]:
    """Through FireWorks' Launch: the document before, after the running phase, and completed."""
    with fireworks_clock_at_now():
        launch = Launch.from_dict(doc)
        before = launch.to_db_dict()
        reference_running_phase(launch, events, reopen)
        after = launch.to_db_dict()
        final = read_launch(LaunchEvents(9, events)).final
        completed = None if final is None else dict(reference_completed(launch, final), _id=doc["_id"])
    return before, after, completed


@settings(max_examples=300, deadline=None)
@given(doc=launch_documents(), events=pending_events(), reopen=st.booleans())
def test_the_running_phase_on_documents_is_fireworks_own(
    doc: dict[str, Any], events: list[PendingEvent], reopen: bool
) -> None:
    """The document after the running phase, whether it changed, and the completed document
    are those FireWorks' own Launch gives, key for key and in order; the document read is left
    as it was."""
    read = copy.deepcopy(doc)
    before, after, completed = reference_documents(copy.deepcopy(doc), events, reopen)
    with fireworks_clock_at_now():  # for a document that goes through FireWorks' Launch
        phase = running_phase(doc, events, reopen=reopen, now=NOW)
    assert list(phase.after) == list(after) and phase.after == after
    assert list(phase.before) == list(before) and phase.before == before
    assert (phase.changed is not None) == (after != before)
    reading = read_launch(LaunchEvents(9, events))
    if completed is not None:
        with fireworks_clock_at_now():
            ours = completed_launch_doc(Routed(reading, doc, reopen), doc, now=NOW)
        assert list(ours) == list(completed) and ours == completed
    assert doc == read
