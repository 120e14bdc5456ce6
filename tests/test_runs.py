"""The run rules (fwspool.runs), table by table, with no server: what a launch's pending events
say (:func:`read_launch`: which event ends the launch, how, whether it waits, whether it reopens
an inferred FIZZLED) and the running phase applied to a launch document in memory (held to
FireWorks' own Launch by tests/test_fireworks_documents.py)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from fireworks.core.firework import Launch

from fwspool.outcomes import implied
from fwspool.runs import LaunchEvents, PendingEvent, changed_launch_doc, read_launch

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def at(minutes: float) -> str:
    return (T0 + dt.timedelta(minutes=minutes)).isoformat()


def ev(event_id: str, etype: str, minutes: float, **payload: Any) -> PendingEvent:
    """An event ``<writer>-<seq>`` of this type, recorded ``minutes`` after T0."""
    return PendingEvent(event_id, etype, at(minutes), payload)


def started(event_id: str, minutes: float) -> PendingEvent:
    return ev(event_id, "started", minutes, started_on=at(minutes), host="nid1", ip="10.0.0.1")


def completed(event_id: str, minutes: float, state: str = "COMPLETED") -> PendingEvent:
    action = {"stored_data": {"answer": 42}, "exit": False}
    return ev(event_id, "completed", minutes, state=state, action=action, completed_on=at(minutes))


START = started("w-1", 0)
PING = ev("w-2", "ping", 5, ping_time=at(5))
DONE = completed("w-3", 10)
TASK_FIZZLED = completed("w-3", 10, state="FIZZLED")
CLEAN_EXIT = ev("w-4", "exited", 11, returncode=0)
KILLED = ev("h-1", "exited", 30, returncode=143, signal=15, signal_name="SIGTERM", run="w")
FAILED_START = ev("w-2", "exited", 1, returncode=65, error="cannot read FW.json")
LOST = ev("login-1", "lost", 60, batch_job_id="123")
REQUEUED = started("v-1", 40)
#: The killed run's own start, merged after its end by clock (a clock stepped back).
OWN_START_LATE = started("w-9", 31)
RELEASED = ev("login-1", "released", 2, reason="the batch job never started it")


# (case, events, journal has a completion, quarantined records) ->
# (ending event, final state, restarts, waits, released)
READINGS = [
    ("running", [START, PING], False, 0, None, None, True, False, False),
    ("completed wins over the exit after it", [START, DONE, CLEAN_EXIT], False, 0, DONE, "COMPLETED", True, False, False),
    ("a task's own FIZZLED", [START, TASK_FIZZLED, CLEAN_EXIT], False, 0, TASK_FIZZLED, "FIZZLED", True, False, False),
    ("killed", [START, PING, KILLED], False, 0, KILLED, "FIZZLED", True, False, False),
    ("a failed start", [FAILED_START], False, 0, FAILED_START, "FIZZLED", False, False, False),
    ("lost", [START, LOST], False, 0, LOST, "FIZZLED", True, False, False),
    ("requeued: a new run after the end", [START, KILLED, REQUEUED], False, 0, None, None, True, False, False),
    ("its own start after its end is no new run", [START, KILLED, OWN_START_LATE], False, 0, KILLED, "FIZZLED", True, False, False),
    ("requeued run killed again", [START, KILLED, REQUEUED, LOST], False, 0, LOST, "FIZZLED", True, False, False),
    ("completion pushed before: a late exit adds nothing", [CLEAN_EXIT], True, 0, None, None, False, False, False),
    ("clean exit, completion quarantined: waits", [START, CLEAN_EXIT], False, 1, CLEAN_EXIT, "FIZZLED", True, True, False),
    ("killed, records quarantined: no wait", [START, KILLED], False, 2, KILLED, "FIZZLED", True, False, False),
    ("failed start, records quarantined: no wait", [FAILED_START], False, 1, FAILED_START, "FIZZLED", False, False, False),
    ("completion here, records quarantined: no wait", [START, DONE, CLEAN_EXIT], False, 1, DONE, "COMPLETED", True, False, False),
    ("clean exit, completion pushed before", [CLEAN_EXIT], True, 1, None, None, False, False, False),
    ("released", [RELEASED], False, 0, None, None, False, False, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("events", "has_completion", "quarantined", "ending", "state", "restarts", "waits", "released"),
    [pytest.param(*row[1:], id=row[0]) for row in READINGS],
)
def test_read_launch(
    events: list[PendingEvent],
    has_completion: bool,
    quarantined: int,
    ending: PendingEvent | None,
    state: str | None,
    restarts: bool,
    waits: bool,
    released: bool,
) -> None:
    reading = read_launch(LaunchEvents(1, events, has_completion, (), quarantined))
    assert reading.ending is ending
    assert (reading.final.state if reading.final else None) == state
    assert (reading.restarts, reading.waits_on is not None, reading.released) == (restarts, waits, released)
    if waits:
        assert reading.waits_on is ending


def test_an_inferred_end_says_why_and_when() -> None:
    final = read_launch(LaunchEvents(1, [START, KILLED])).final
    assert final is not None
    stored = final.action["stored_data"]
    assert stored["_message"] == "fwspool: the job was killed by SIGTERM before the Firework completed"
    assert stored["_fwspool_exit"]["signal"] == 15 and final.completed_on == T0 + dt.timedelta(minutes=30)
    lost = read_launch(LaunchEvents(1, [START, LOST])).final
    assert lost is not None and "_fwspool_lost" in lost.action["stored_data"]


def test_a_completion_ends_with_its_own_state_action_and_time() -> None:
    final = read_launch(LaunchEvents(1, [START, DONE, CLEAN_EXIT])).final
    assert final == ("COMPLETED", DONE.payload["action"], T0 + dt.timedelta(minutes=10))


@pytest.mark.parametrize(
    "row", [pytest.param(row, id=row[0]) for row in READINGS if not row[2] and row[4] is not None]
)
def test_status_implies_the_ending_the_pusher_applies(row: tuple[Any, ...]) -> None:
    """``fwspool status`` reads pending events by the same rule (fwspool.outcomes.implied)."""
    _, events, _, _, ending, state, *_ = row
    said = implied(events)
    assert said is not None and said.state == state
    assert read_launch(LaunchEvents(1, events)).ending is ending


INFERRED = {"stored_data": {"_fwspool_exit": {"returncode": 143}}}
INFERRED_LOST = {"stored_data": {"_fwspool_lost": {"batch_job_id": "1"}}}
TASKS_OWN = {"stored_data": {"_exception": {"_stacktrace": "boom"}}}


@pytest.mark.parametrize(
    ("state", "action", "events", "reopens"),
    [
        pytest.param("FIZZLED", INFERRED, [REQUEUED], True, id="inferred exit, new run"),
        pytest.param("FIZZLED", INFERRED_LOST, [DONE], True, id="inferred lost, the real result"),
        pytest.param("FIZZLED", INFERRED, [PING], False, id="inferred, only a ping"),
        pytest.param("FIZZLED", TASKS_OWN, [REQUEUED], False, id="a task's own FIZZLED"),
        pytest.param("FIZZLED", None, [REQUEUED], False, id="no action"),
        pytest.param("COMPLETED", INFERRED, [REQUEUED], False, id="not FIZZLED"),
        pytest.param("RUNNING", None, [DONE], False, id="running"),
    ],
)
def test_reopens(
    state: str, action: dict[str, Any] | None, events: list[PendingEvent], reopens: bool
) -> None:
    assert read_launch(LaunchEvents(1, events)).reopens(state, action) is reopens


# -- the running phase, on a launch document as FireWorks writes it -------------------------------


def reserved() -> dict[str, Any]:
    """A reserved launch's document, as ``checkout_fw(..., state="RESERVED")`` leaves it."""
    return dict(Launch("RESERVED", "/x", launch_id=1, fw_id=1).to_db_dict(), _id=1)


def after(doc: dict[str, Any], events: list[PendingEvent], *, reopen: bool = False) -> dict[str, Any]:
    """The document after the running phase (it must change)."""
    changed = changed_launch_doc(doc, events, reopen=reopen)
    assert changed is not None
    return changed


def running_entry(doc: dict[str, Any]) -> dict[str, Any]:
    return next(h for h in reversed(doc["state_history"]) if h["state"] == "RUNNING")


def iso(minutes: float) -> str:
    """A time as FireWorks writes an aware datetime."""
    return (T0 + dt.timedelta(minutes=minutes)).isoformat()


def test_a_ping_seen_before_the_start_leaves_no_push_time_in_the_history() -> None:
    """The RUNNING entry's updated_on was the time of the push (FireWorks' state setter) when a
    ping came before `started` in the batch."""
    doc = after(
        reserved(),
        [
            PendingEvent("w-2", "ping", at(5), {"ping_time": at(5)}),
            PendingEvent("w-1", "started", at(0), {"started_on": at(0)}),
        ],
    )
    entry = doc["state_history"][-1]
    assert (entry["state"], entry["created_on"], entry["updated_on"]) == ("RUNNING", iso(0), iso(5))


def test_the_running_phase_takes_the_compute_nodes_times_host_and_checkpoint() -> None:
    doc = reserved()
    read = copy.deepcopy(doc)
    checkpoint = ev("w-3", "checkpoint", 7, ping_time=at(7), checkpoint={"_task_n": 1})
    new = after(doc, [START, PING, checkpoint])
    assert doc == read  # the document as read is left as it was
    entry = running_entry(new)
    assert (new["state"], new["host"], new["ip"], new["time_start"]) == (
        "RUNNING",
        "nid1",
        "10.0.0.1",
        iso(0),
    )
    assert (entry["created_on"], entry["updated_on"], entry["checkpoint"]) == (iso(0), iso(7), {"_task_n": 1})
    assert changed_launch_doc(new, [START, PING, checkpoint]) is None  # again: no change


def test_a_requeued_run_keeps_the_interrupted_one_in_interrupted_runs() -> None:
    doc = after(reserved(), [START, PING, KILLED, REQUEUED])
    entry = running_entry(doc)
    assert doc["state"] == "RUNNING" and entry["created_on"] == iso(40)
    [interrupted] = entry["interrupted_runs"]
    assert (interrupted["started_on"], interrupted["ended_on"]) == (iso(0), iso(30))
    assert interrupted["ended_by"].startswith("fwspool: the job was killed by SIGTERM")
    assert "checkpoint" not in entry and entry["updated_on"] == iso(40)


def test_its_own_start_after_its_end_begins_no_new_run() -> None:
    doc = after(reserved(), [START, KILLED, OWN_START_LATE])
    assert "interrupted_runs" not in running_entry(doc)


def test_reopening_undoes_an_inferred_fizzled_and_keeps_the_run_it_ended() -> None:
    from fireworks.core.firework import FWAction

    doc = after(reserved(), [START])
    final = read_launch(LaunchEvents(1, [KILLED])).final
    assert final is not None
    launch = Launch.from_dict(doc)
    launch.state, launch.action = "FIZZLED", FWAction.from_dict(final.action)
    doc = after(launch.to_db_dict(), [REQUEUED], reopen=True)
    entry = running_entry(doc)
    assert doc["state"] == "RUNNING" and doc["action"] is None
    [interrupted] = entry["interrupted_runs"]
    assert interrupted["started_on"] == iso(0) and interrupted["exit"]["signal"] == 15
