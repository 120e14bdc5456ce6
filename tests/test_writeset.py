"""A bulk completion's write set (fwspool.launchpad.writeset) against a real server: a push killed
before saving it, between writing it and marking the journal, and halfway through writing it.
Each test is a regression the fault-injection suite found (tools/chaos.py). The write set's pure
parts (its plan, its bytes, its undo marks) are tested without a server in tests/test_plan.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from dyn_tasks import GrowTask
from fireworks import Firework, FWorker, ScriptTask, Workflow

from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.launchpad import LaunchPadApplier, WriteSet, writeset
from fwspool.launchpad.vocabulary import Verdict
from fwspool.push import Pusher
from fwspool.qlaunch import work_to_come
from fwspool.reserve import reserve_offline
from fwspool.testing.commands import run_fwspool
from fwspool.testing.launchpad import uplink_for

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def _completion_ready(lp: Any, tmp_path: Path, journal: Journal) -> None:
    """A workflow whose first step (an FWAction with an addition and a detour) ran offline and is
    ingested; the pass that pushes it comes next."""
    a = Firework([GrowTask(label="g")], name="step1")
    b = Firework(ScriptTask.from_str("echo two"), name="step2", parents=[a])
    lp.add_wf(Workflow([a, b], name="grow"))
    d = str(tmp_path / "launch")
    reserve_offline(lp, d)
    res = run_fwspool(d)
    assert res.returncode == 0, res.stderr[-2000:]
    Ingester(journal, roots=[d]).run_pass()


def _state(lp: Any) -> dict[str, Any]:
    return {
        "fireworks": {d["name"]: (d["fw_id"], d["state"]) for d in lp.fireworks.find({})},
        "next_fw_id": lp.fw_id_assigner.find_one({})["next_fw_id"],
        "locked": lp.workflows.count_documents({"locked": True}),
    }


class Died(Exception):
    pass


def _dying_at(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """The write set's writes die (an exception, as a kill would stop them) at failpoint ``where``."""

    def failpoint(name: str) -> None:
        if name == where:
            raise Died

    monkeypatch.setattr(writeset, "failpoint", failpoint)


def test_a_push_dying_before_its_write_set_is_saved_wastes_no_firework_ids(
    launchpad: Any, tmp_path: Path, mongo_uri: str
) -> None:
    """New Fireworks' ids used to be taken (get_new_fw_id) before the write set was saved: a push
    killed there left the counter moved on, and the next push gave the additions other ids."""
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        _completion_ready(launchpad, tmp_path, journal)
        before = _state(launchpad)

        def die(write_set: bytes) -> None:
            raise Died

        with pytest.raises(Died):
            LaunchPadApplier(launchpad).apply(journal.pending_launches(None, 10), T0, redo=die)
        assert _state(launchpad) == before  # nothing written, nothing taken, no lock left
        uplink = uplink_for(mongo_uri, launchpad.name)
        Pusher(journal, uplink).run_pass()
        uplink.close()
    after = _state(launchpad)
    assert after["next_fw_id"] == before["next_fw_id"] + 2
    assert {after["fireworks"][n][0] for n in ("g-addition", "g-detour")} == {
        before["next_fw_id"],
        before["next_fw_id"] + 1,
    }


def test_replaying_a_write_set_never_undoes_what_happened_on_the_launchpad_since(
    launchpad: Any, tmp_path: Path
) -> None:
    """A push killed between the database write and the journal mark: the next push replays the
    write set. It used to replace every document again, putting a Firework a rocket had taken in
    between back to READY."""
    saved: list[bytes] = []
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        _completion_ready(launchpad, tmp_path, journal)
        LaunchPadApplier(launchpad).apply(journal.pending_launches(None, 10), T0, redo=saved.append)
    fw_id = launchpad.fireworks.find_one({"name": "g-detour"})["fw_id"]
    fw, launch_id = launchpad.checkout_fw(FWorker(), str(tmp_path / "elsewhere"), fw_id=fw_id)
    assert fw is not None
    taken = _state(launchpad)
    WriteSet.from_bytes(saved[0]).write(launchpad)
    assert _state(launchpad) == taken
    doc = launchpad.fireworks.find_one({"fw_id": fw_id})
    assert doc["state"] == "RUNNING" and launch_id in doc["launches"]


def test_a_bulk_completion_dying_halfway_shows_no_runnable_orphan_and_keeps_its_locks(
    launchpad: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after writing the Fireworks and before the workflow: new Fireworks used to be READY
    already, with no workflow holding them (a rocket taking one crashed in FireWorks'
    _refresh_wf), and a write that failed halfway gave its workflow locks back, so the replay could
    not write the workflow."""
    saved: list[bytes] = []
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        _completion_ready(launchpad, tmp_path, journal)
        _dying_at(monkeypatch, "bulk.after_fireworks")
        with pytest.raises(Died):
            LaunchPadApplier(launchpad).apply(journal.pending_launches(None, 10), T0, redo=saved.append)
        monkeypatch.undo()
    halfway = _state(launchpad)
    assert halfway["fireworks"]["g-addition"][1] == halfway["fireworks"]["g-detour"][1] == "WAITING"
    assert halfway["locked"] == 1
    assert launchpad.fireworks.count_documents({"state": "READY"}) == 0
    ws = WriteSet.from_bytes(saved[0])
    assert ws.write(launchpad)
    done = _state(launchpad)
    assert done["locked"] == 0
    assert (done["fireworks"]["g-addition"][1], done["fireworks"]["g-detour"][1]) == ("READY", "READY")
    wf = launchpad.workflows.find_one({"name": "grow"})
    assert {done["fireworks"][n][0] for n in ("g-addition", "g-detour")} <= set(wf["nodes"])


def test_new_firework_ids_taken_by_another_writer_before_it_inserts_are_not_shared(
    launchpad: Any, tmp_path: Path, mongo_uri: str
) -> None:
    """Another login node's push (or FireWorks' _upsert_fws) takes the ids this completion
    planned, and has not inserted its Fireworks yet when this write comes. The write used to take
    an empty id range for its own (a write of its own that died), so two workflows' additions got
    the same ids: one lost its Fireworks, the counter fell 2 short (chaos scenario 6)."""
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        _completion_ready(launchpad, tmp_path, journal)
        first = _state(launchpad)["next_fw_id"]

        def taken_meanwhile(write_set: bytes) -> None:
            assert WriteSet.from_bytes(write_set).new_ids == [first, first + 2]
            assert launchpad.get_new_fw_id(quantity=2) == first  # FireWorks' own take

        result = LaunchPadApplier(launchpad).apply(
            journal.pending_launches(None, 10), T0, redo=taken_meanwhile
        )
        assert result.completed_launches == [] and "ids were taken" in " ".join(result.problems)
        assert launchpad.fireworks.count_documents({"fw_id": {"$gte": first}}) == 0  # left to their taker
        uplink = uplink_for(mongo_uri, launchpad.name)
        Pusher(journal, uplink).run_pass()
        uplink.close()
    after = _state(launchpad)
    assert {after["fireworks"][n][0] for n in ("g-addition", "g-detour")} == {first + 2, first + 3}
    assert after["next_fw_id"] == first + 4 and after["locked"] == 0
    assert after["fireworks"]["step1"][1] == "COMPLETED"


def test_a_write_killed_after_taking_its_ids_is_replayed_with_them(
    launchpad: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after moving the id counter and before inserting a Firework: the replay cannot
    tell its take from another writer's by the Fireworks (there are none yet); the counter
    document's record of the last take says it was its own, so no id is wasted (chaos scenario 2
    counts them against a clean run)."""
    saved: list[bytes] = []
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        _completion_ready(launchpad, tmp_path, journal)
        first = _state(launchpad)["next_fw_id"]
        _dying_at(monkeypatch, "bulk.after_launches")
        with pytest.raises(Died):
            LaunchPadApplier(launchpad).apply(journal.pending_launches(None, 10), T0, redo=saved.append)
        monkeypatch.undo()
    assert _state(launchpad)["next_fw_id"] == first + 2
    assert launchpad.fireworks.count_documents({"fw_id": {"$gte": first}}) == 0
    assert WriteSet.from_bytes(saved[0]).replay(launchpad) == Verdict.WRITTEN
    done = _state(launchpad)
    assert {done["fireworks"][n][0] for n in ("g-addition", "g-detour")} == {first, first + 1}
    assert done["next_fw_id"] == first + 2 and done["locked"] == 0


def test_while_a_completion_that_adds_fireworks_is_written_fwspool_qlaunch_still_sees_work_to_come(
    launchpad: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between writing the completed Firework and promoting the Fireworks its FWAction added,
    nothing is READY and nothing RUNNING has a WAITING child: FireWorks' future_run_exists says
    no work will come, and a ``fwspool qlaunch ... rapidfire`` that asked it stopped for good in
    that moment (tests/test_jobflow_submit.py's dynamic flow, once in CI). Asked at each step of
    the write, fwspool's own answer is always yes."""
    seen: dict[str, tuple[bool, str]] = {}  # FireWorks' answer, fwspool's reason ("": none)

    def failpoint(name: str) -> None:
        seen[name] = (bool(launchpad.future_run_exists(FWorker())), work_to_come(launchpad, FWorker()))

    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        _completion_ready(launchpad, tmp_path, journal)
        monkeypatch.setattr(writeset, "failpoint", failpoint)
        LaunchPadApplier(launchpad).apply(journal.pending_launches(None, 10), T0, redo=lambda b: None)
    assert set(seen) == {"bulk.after_launches", "bulk.after_fireworks", "bulk.before_promote"}
    assert {name: bool(ours) for name, (_, ours) in seen.items()} == dict.fromkeys(seen, True)
    # FireWorks' own answer is no right after the Fireworks are written: what the check is for.
    assert seen["bulk.after_fireworks"][0] is False
    assert "a push is writing a completion" in seen["bulk.after_fireworks"][1]
    # Once written, the new Fireworks are READY: both answers are yes.
    assert launchpad.future_run_exists(FWorker()) and work_to_come(launchpad, FWorker())
