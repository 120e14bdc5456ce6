"""The fault-injection suite (tools/chaos.py), short version: every scenario with real processes,
real kills and a real database; and one regression test per defect it found.

`python tools/chaos.py --full` runs the same scenarios at full trial counts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dyn_tasks import GrowTask
from fireworks import Firework, FWorker, ScriptTask, Workflow

from fwspool.events import Checkpoint, Completed, Exited, Ping, Started
from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.launchpad import LaunchPadApplier, WriteSet, writeset
from fwspool.push import Pusher
from fwspool.reserve import reserve_offline
from fwspool.runs import PendingEvent, apply_running_phase
from fwspool.spool import SpoolWriter
from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.runner import run_scenario
from fwspool.testing.chaos.scenarios import SCENARIOS
from fwspool.testing.commands import run_fwspool
from fwspool.testing.launchpad import uplink_for

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


# -- the scenarios -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The harness's own SecantusDB server and workloads, shared by the scenarios of this file."""
    c = Cluster(str(tmp_path_factory.mktemp("chaos")))
    c.shared_templates = True
    with c:
        yield c


#: Scenarios that find a defect still open: expected to fail until it is fixed (then they pass,
#: and strict xfail fails the test: remove the entry).
OPEN_DEFECTS: dict[int, str] = {}


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=OPEN_DEFECTS[n], strict=True))
        if n in OPEN_DEFECTS
        else n
        for n in sorted(SCENARIOS)
    ],
)
def test_scenario(cluster: Cluster, number: int) -> None:
    res = run_scenario(cluster, number)
    c = res.check
    assert res.trials >= 1 and res.faults >= 1, res.row()
    # Every count of an invariant failure (lost, duplicated, mismatched, merged, stalled...) is 0.
    assert not c.failed, (res.row(), c.notes)
    assert c.events > 0 or number in (9,)


# -- ingest: a directory whose name is not UTF-8 -------------------------------------------------


def test_a_directory_whose_name_is_not_utf8_is_named_and_the_rest_ingested(tmp_path: Path) -> None:
    """It used to fail the whole pass (UnicodeEncodeError storing the path), every pass: nothing
    at all was ingested any more."""
    root = tmp_path / "spool"
    good = root / "good"
    good.mkdir(parents=True)
    bad = os.fsdecode(os.path.join(os.fsencode(root), b"bad-\xff-dir"))
    os.mkdir(bad)
    for d, lid in ((str(good), 1), (bad, 2)):
        with SpoolWriter(d, lid, lid, clock=lambda: T0) as w:
            w.append(Started(started_on=T0, host="h", ip="1.2.3.4"))
            w.append(Exited(returncode=0))
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        for _ in range(2):
            s = Ingester(journal, roots=[str(root)]).run_pass()
            assert [p for p in s.problems if "not valid UTF-8" in p and "bad-\\xff-dir" in p], s.problems
        assert journal.query("SELECT DISTINCT launch_id FROM events") == [{"launch_id": 1}]


# -- push order: a writer's own order, not its clock's ---------------------------------------------


def test_pending_events_keep_each_writers_order_when_its_clock_steps_back(tmp_path: Path) -> None:
    d = tmp_path / "launch"
    d.mkdir()
    now = [T0]
    with SpoolWriter(str(d), 7, 7, clock=lambda: now[0]) as w:
        w.append(Started(started_on=T0, host="h", ip="1.2.3.4"))
        now[0] = T0 - dt.timedelta(hours=2)  # NTP stepped the node's clock back
        w.append(Ping(ping_time=now[0]))
        w.append(Checkpoint(checkpoint={"_task_n": 0}, ping_time=now[0]))
        w.append(Completed(state="COMPLETED", action={}, completed_on=now[0]))
    now[0] = T0 + dt.timedelta(hours=1)
    with SpoolWriter(str(d), 7, 7, clock=lambda: now[0]) as w:  # another writer: `fwspool emit`
        w.append(Exited(returncode=0))
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        Ingester(journal, roots=[str(d)]).run_pass()
        [batch] = journal.pending_launches(None, 10)
    assert [e.type for e in batch.events] == ["started", "ping", "checkpoint", "completed", "exited"]


def test_a_ping_seen_before_the_start_leaves_no_push_time_in_the_history() -> None:
    """The RUNNING entry's updated_on was the time of the push (FireWorks' state setter) when a
    ping came before `started` in the batch."""
    from fireworks.core.firework import Launch

    launch = Launch("RESERVED", "/x", launch_id=1, fw_id=1)
    ping, start = T0 + dt.timedelta(minutes=5), T0
    apply_running_phase(
        launch,
        [
            PendingEvent("w-2", "ping", ping.isoformat(), {"ping_time": ping.isoformat()}),
            PendingEvent("w-1", "started", start.isoformat(), {"started_on": start.isoformat()}),
        ],
    )
    entry = launch.state_history[-1]
    assert (entry["state"], entry["created_on"], entry["updated_on"]) == ("RUNNING", start, ping)


# -- ingest: two writers claiming one writer id --------------------------------------------------


def test_records_of_a_second_file_claiming_a_writer_id_are_quarantined_not_dropped(tmp_path: Path) -> None:
    """They used to be counted as duplicates and silently dropped (same event ids)."""
    root = tmp_path / "spool"
    wid = "ab" * 16
    files = []
    for name, lid in (("a", 1), ("b", 2)):
        d = root / name
        d.mkdir(parents=True)
        with SpoolWriter(str(d), lid, lid, writer_id=wid, clock=lambda: T0) as w:
            w.append(Started(started_on=T0, host=name, ip="1.2.3.4"))
            w.append(Exited(returncode=lid))
        files.append(w.path)
    copy = root / "c-copy"
    copy.mkdir()
    (copy / os.path.basename(files[0])).write_bytes(Path(files[0]).read_bytes())  # an exact copy
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        s = Ingester(journal, roots=[str(root)]).run_pass()
        assert (s.new_events, s.duplicates, s.quarantined) == (2, 2, 2)
        assert [p for p in s.problems if "2 records of " + files[1] in p and files[0] in p], s.problems
        q = journal.query('SELECT path, "offset", length, reason, bytes FROM quarantine ORDER BY "offset"')
        data = Path(files[1]).read_bytes()
        assert [(r["path"], r["bytes"]) for r in q] == [
            (files[1], data[r["offset"] : r["offset"] + r["length"]]) for r in q
        ]
        assert all("two writers claim writer id " + wid in r["reason"] for r in q)
        # Read again: nothing new, nothing quarantined twice.
        s = Ingester(journal, roots=[str(root)]).run_pass()
        assert (s.new_events, s.quarantined) == (0, 0)


# -- push: crashes inside a bulk completion ------------------------------------------------------


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

    def failpoint(name: str) -> None:
        if name == "bulk.after_fireworks":
            raise Died

    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        _completion_ready(launchpad, tmp_path, journal)
        monkeypatch.setattr(writeset, "failpoint", failpoint)
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
