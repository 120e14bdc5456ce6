"""The launch and Firework documents a push writes are FireWorks' own ``to_db_dict()``, key for
key and in order, though built at less cost (:mod:`fwspool.fireworks_documents`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fireworks import Firework, FWAction, FWorker, ScriptTask, Workflow
from fireworks.core.firework import Launch
from hypothesis import given, settings
from hypothesis import strategies as st

from fwspool.fireworks_documents import firework_db_dict, launch_db_dict
from fwspool.launchpad.fireworks_internals import PrefetchedCollection, load_workflow

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
