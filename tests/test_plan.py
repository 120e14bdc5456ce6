"""The pure parts of a bulk completion, with no server: :func:`plan_completions` on prefetched
documents (FireWorks' own refresh, run in memory), the undo marks it puts on every Firework it
writes, and the write set's bytes, as the journal keeps them for a redo."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import bson
import pytest
from fireworks import Firework, FWAction, FWorker, ScriptTask, Workflow
from fireworks.core.firework import Launch
from hypothesis import given, settings
from hypothesis import strategies as st

from fwspool.launchpad import LockToken, WriteSet
from fwspool.launchpad.completion import PlanInputs, Prefetched, plan_completions
from fwspool.launchpad.undo import UNDO_FIELD, undo_mark
from fwspool.launchpad.vocabulary import Routed, lock_holder
from fwspool.launchpad.writeset import BSON_PREFIX
from fwspool.runs import LaunchEvents, PendingEvent, read_launch

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
TOKEN = "journal1:run1"


def as_stored(doc: dict[str, Any]) -> dict[str, Any]:
    """A document as FireWorks' pymongo client gives it back (naive UTC times, to the millisecond)."""
    return bson.decode(bson.encode(doc))


def launchpad_docs(n_workflows: int = 1) -> tuple[dict[int, dict[str, Any]], Prefetched]:
    """``n_workflows`` two-step workflows (a -> b), each first step reserved offline: the held
    workflow of each Firework, and the prefetched Fireworks and launches."""
    held: dict[int, dict[str, Any]] = {}
    fireworks: dict[int, dict[str, Any]] = {}
    launches: dict[int, dict[str, Any]] = {}
    for k in range(n_workflows):
        first, second = 2 * k + 1, 2 * k + 2
        a = Firework(ScriptTask.from_str("echo a"), name=f"a{k}", fw_id=first)
        b = Firework(ScriptTask.from_str("echo b"), name=f"b{k}", fw_id=second)
        launch = Launch("RESERVED", f"/runs/{k}", fworker=FWorker(), fw_id=first, launch_id=k + 1)
        a.launches, a.state = [launch], "RESERVED"
        wf = Workflow([a, b], {first: [second]}, name=f"wf{k}", created_on=T0, updated_on=T0)
        wf.fw_states[first] = "RESERVED"
        wf_doc = as_stored(dict(wf.to_db_dict(), _id=bson.ObjectId(), locked=True, _fwspool_lock=TOKEN))
        held.update({first: wf_doc, second: wf_doc})
        fireworks.update({first: as_stored(a.to_db_dict()), second: as_stored(b.to_db_dict())})
        launches[k + 1] = as_stored(dict(launch.to_db_dict(), _id=bson.ObjectId()))
    return held, Prefetched(fireworks, launches)


def ending(
    launch_id: int, doc: dict[str, Any], action: dict[str, Any] | None = None, state: str = "COMPLETED"
) -> Routed:
    """A launch whose pending events (started, completed) end it."""
    w = f"w{launch_id}"
    events = [
        PendingEvent(f"{w}-1", "started", T0.isoformat(), {"started_on": T0.isoformat(), "host": "nid1"}),
        PendingEvent(
            f"{w}-2",
            "completed",
            (T0 + dt.timedelta(hours=1)).isoformat(),
            {
                "state": state,
                "action": action or FWAction().to_dict(),
                "completed_on": (T0 + dt.timedelta(hours=1)).isoformat(),
            },
        ),
    ]
    return Routed(read_launch(LaunchEvents(launch_id, events)), doc)


def counter(value: int) -> tuple[list[int], Any]:
    """A stand-in for the Firework id counter; counts how often it is read."""
    reads: list[int] = []

    def read() -> int:
        reads.append(value)
        return value

    return reads, read


def test_a_completion_is_planned_from_prefetched_documents_alone() -> None:
    held, docs = launchpad_docs()
    before = copy.deepcopy(docs)
    reads, read = counter(3)
    plan = plan_completions([ending(1, docs.launches[1])], PlanInputs(held, docs, TOKEN, None, read))
    ws = plan.write_set
    assert [launch.launch_id for launch in plan.completed] == [1] and plan.too_large == []
    [launch] = ws.launches
    assert (launch["state"], launch["time_end"], launch["_id"]) == (
        "COMPLETED",
        (T0 + dt.timedelta(hours=1)).isoformat(),
        docs.launches[1]["_id"],
    )
    assert {d["fw_id"]: d["state"] for d in ws.fireworks} == {1: "COMPLETED", 2: "READY"}
    [wf] = ws.workflows
    assert wf["fw_states"] == {"1": "COMPLETED", "2": "READY"} and wf["_id"] == held[1]["_id"]
    assert ws.prior_launches == [[1, "RESERVED"]]
    assert ws.prior_fireworks == [
        [1, "RESERVED", docs.fireworks[1]["updated_on"]],
        [2, "WAITING", docs.fireworks[2]["updated_on"]],
    ]
    assert (ws.token, ws.new_ids, reads) == (TOKEN, [], [])  # no additions: the counter is not read
    assert docs == before  # the inputs are read, never written


def test_additions_take_ids_from_the_counter_read_once_in_journal_order() -> None:
    held, docs = launchpad_docs(2)
    grow = Workflow([Firework(ScriptTask.from_str("echo c"), name="added")]).to_dict()
    action = dict(FWAction().to_dict(), additions=[grow])
    reads, read = counter(10)
    endings = [ending(1, docs.launches[1], action), ending(2, docs.launches[2], action)]
    ws = plan_completions(endings, PlanInputs(held, docs, TOKEN, None, read)).write_set
    assert reads == [10] and ws.new_ids == [10, 12]
    added = [d for d in ws.fireworks if d["name"] == "added"]
    assert [d["fw_id"] for d in added] == [10, 11]
    assert all(d[UNDO_FIELD] == {"token": TOKEN, "wf": held[1 + 2 * k]["_id"]} for k, d in enumerate(added))
    assert [sorted(wf["nodes"]) for wf in ws.workflows] == [[1, 2, 10], [3, 4, 11]]


def test_every_firework_written_carries_what_puts_it_back() -> None:
    held, docs = launchpad_docs()
    plan = plan_completions([ending(1, docs.launches[1])], PlanInputs(held, docs, TOKEN, None, counter(3)[1]))
    for written in plan.write_set.fireworks:
        mark = written[UNDO_FIELD]
        prior = docs.fireworks[written["fw_id"]]
        restored = {k: v for k, v in written.items() if k not in mark["unset"] and k != UNDO_FIELD}
        restored.update(mark["set"])
        assert restored == {k: v for k, v in prior.items() if k != "_id"}


def test_a_task_fizzled_completion_fizzles_the_firework_and_leaves_the_child_waiting() -> None:
    held, docs = launchpad_docs()
    routed = ending(1, docs.launches[1], state="FIZZLED")
    ws = plan_completions([routed], PlanInputs(held, docs, TOKEN, None, counter(3)[1])).write_set
    assert {d["fw_id"]: d["state"] for d in ws.fireworks} == {1: "FIZZLED"}
    assert ws.workflows[0]["fw_states"] == {"1": "FIZZLED", "2": "WAITING"}


@pytest.mark.parametrize(
    ("prior", "new", "mark"),
    [
        pytest.param(None, {"fw_id": 9, "state": "WAITING"}, {"token": TOKEN, "wf": "wf"}, id="added"),
        pytest.param(
            {"_id": 1, "fw_id": 1, "state": "RESERVED", "spec": {"x": 1}},
            {"fw_id": 1, "state": "COMPLETED", "spec": {"x": 1}},
            {"token": TOKEN, "wf": "wf", "set": {"state": "RESERVED"}, "unset": []},
            id="changed field",
        ),
        pytest.param(
            {"fw_id": 1, "state": "READY", "spec": {"x": 1}},
            {"fw_id": 1, "state": "READY", "spec": {"x": 1, "y": 2}, "launches": [3]},
            {"token": TOKEN, "wf": "wf", "set": {"spec": {"x": 1}}, "unset": ["launches"]},
            id="field added",
        ),
        pytest.param(
            {"fw_id": 1, "state": "READY", "action": {"a": 1}},
            {"fw_id": 1, "state": "READY"},
            {"token": TOKEN, "wf": "wf", "set": {"action": {"a": 1}}, "unset": []},
            id="field dropped",
        ),
        pytest.param(
            {"fw_id": 1, "state": "READY", UNDO_FIELD: {"old": 1}},
            {"fw_id": 1, "state": "READY", UNDO_FIELD: {"new": 1}},
            {"token": TOKEN, "wf": "wf", "set": {}, "unset": []},
            id="an earlier mark is not restored",
        ),
    ],
)
def test_undo_mark(prior: dict[str, Any] | None, new: dict[str, Any], mark: dict[str, Any]) -> None:
    assert undo_mark(TOKEN, "wf", prior, new) == mark


def test_a_write_set_comes_back_from_its_bytes_as_it_was() -> None:
    held, docs = launchpad_docs(2)
    grow = Workflow([Firework(ScriptTask.from_str("echo c"), name="added")]).to_dict()
    endings = [
        ending(1, docs.launches[1], dict(FWAction(stored_data={"n": 1.5}).to_dict(), additions=[grow]))
    ]
    endings.append(ending(2, docs.launches[2]))
    ws = plan_completions(endings, PlanInputs(held, docs, TOKEN, None, counter(7)[1])).write_set
    stored = WriteSet(
        [as_stored(d) for d in ws.launches],
        [as_stored(d) for d in ws.fireworks],
        [as_stored(d) for d in ws.workflows],
        ws.token,
        ws.prior_launches,
        ws.prior_fireworks,
        ws.new_ids,
    )
    data = stored.to_bytes()
    again = WriteSet.from_bytes(data)
    assert again == stored and again.to_bytes() == data
    assert isinstance(again.workflows[0]["_id"], bson.ObjectId)


def test_a_write_set_saved_before_priors_were_recorded_still_reads() -> None:
    old = b'{"launches": [], "fireworks": [], "workflows": [], "token": "j:r"}'
    assert WriteSet.from_bytes(old) == WriteSet(token="j:r")


@pytest.mark.parametrize(
    ("text", "owner", "run"),
    [
        ("abc123:9f", "abc123", "9f"),
        ("fwspool:1", "fwspool", "1"),
        ("a:b:c", "a:b", "c"),
        ("bare", "bare", ""),
    ],
)
def test_a_lock_token_is_its_owner_and_its_run(text: str, owner: str, run: str) -> None:
    token = LockToken.parse(text)
    assert (token.owner, token.run) == (owner, run) and token.of(owner) and not token.of(owner + "x")
    if run:
        assert str(token) == text
    assert lock_holder(text) == token and lock_holder(None) is None and lock_holder("") is None
    fresh = LockToken.new(owner)
    assert fresh.of(owner) and fresh != LockToken.new(owner) and LockToken.parse(str(fresh)) == fresh


def test_planning_leaves_its_inputs_as_read_whatever_the_action_changes() -> None:
    """The plan hands FireWorks shallow copies of the prefetched documents (and the prior launch
    itself): FireWorks' from_dict builds every nested dict and list anew, so nothing it changes
    (specs pushed into, a checkpoint, additions and detours) reaches the documents read."""
    held, docs = launchpad_docs()
    docs.fireworks[2]["spec"]["data"] = {"list": [1], "nested": {"k": ["é", 2]}}
    docs.launches[1]["state_history"][0]["checkpoint"] = {"step": [1, {"at": "2026-03-02T08:00:00"}]}
    before = copy.deepcopy((held, docs))
    extra = Workflow([Firework(ScriptTask.from_str("echo c"), name="extra")]).to_dict()
    detour = Workflow([Firework(ScriptTask.from_str("echo d"), name="detour")]).to_dict()
    action = FWAction(
        stored_data={"deep": {"x": [1, 2]}},
        update_spec={"data": {"list": [9]}},
        mod_spec=[{"_push": {"data->nested->k": 3}}],
    ).to_dict()
    action.update(additions=[extra], detours=[detour])
    routed = ending(1, docs.launches[1], action)
    checkpoint = PendingEvent("w1-1b", "checkpoint", T0.isoformat(), {"checkpoint": {"cp": [1]}})
    routed.launch.events.insert(1, checkpoint)
    plan = plan_completions([routed], PlanInputs(held, docs, TOKEN, None, counter(5)[1]))
    assert {d["name"] for d in plan.write_set.fireworks} == {"a0", "b0", "extra", "detour"}
    assert (held, docs) == before


#: BSON values as a LaunchPad document holds them (the database's times: naive UTC, milliseconds).
BSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(3000, 1, 1)).map(
        lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
    )
    | st.builds(bson.ObjectId),
    # A key with NUL is none the database takes (BSON ends its keys with one).
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8).filter(lambda k: "\x00" not in k), inner, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=100, deadline=None)
@given(value=BSON_VALUES)
def test_a_write_set_reads_back_the_same_values_as_bson_as_from_extended_json(value: Any) -> None:
    """Write sets are saved as BSON now; those saved before as canonical Extended JSON still
    read, and either way every value comes back with the same type (bson.encode tells)."""
    from bson import json_util

    ws = WriteSet([{"_id": bson.ObjectId(), "launch_id": 1, "v": value}], token="j:r", new_ids=[3, 4])
    old = json_util.dumps(ws._as_document(), json_options=json_util.CANONICAL_JSON_OPTIONS).encode()
    data = ws.to_bytes()
    assert data.startswith(BSON_PREFIX)
    again, before = WriteSet.from_bytes(data), WriteSet.from_bytes(old)
    assert (
        bson.encode(again._as_document())
        == bson.encode(before._as_document())
        == bson.encode(ws._as_document())
    )


def test_a_write_set_bson_cannot_hold_is_saved_as_extended_json() -> None:
    ws = WriteSet([{"launch_id": 1, "big": 2**70}], token="j:r")
    data = ws.to_bytes()
    assert data.startswith(b"{") and WriteSet.from_bytes(data) == ws
