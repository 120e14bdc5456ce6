"""LaunchPad operations made while an offline job runs, then undone: fwspool ends where
FireWorks' own offline path (``lpad recover_offline``) ends, on twin LaunchPads.

PAUSED and DEFUSED are reversible: a completion that arrives meanwhile is stored on its launch
(the Firework stays PAUSED/DEFUSED, as FireWorks' refresh leaves it), and ``resume_fws`` /
``reignite_wflows`` then take the Firework where FireWorks would. Only a rerun, a deleted
Firework or a forgotten offline run supersede a launch's events for good.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, ScriptTask, Workflow
from fw_tasks import ActionTask

from fwspool.reserve import reserve_offline
from fwspool.testing.commands import run_fireworks_offline, run_fwspool
from fwspool.testing.journal_file import ingest_and_push
from fwspool.testing.launchpad import recover_offline, snapshot


def chain() -> Workflow:
    a = Firework(ScriptTask.from_str("echo one"), name="step1", fw_id=1)
    b = Firework(ScriptTask.from_str("echo two"), name="step2", parents=[a], fw_id=2)
    return Workflow([a, b], name="chain")


def states(lp: Any) -> dict[str, str]:
    return {d["name"]: d["state"] for d in lp.fireworks.find({}, {"name": 1, "state": 1})}


class Twins:
    """One LaunchPad pushed by FireWorks' own offline path, one by fwspool, side by side."""

    def __init__(self, ref: Any, fws: Any, tmp_path: Path, journal_path: str, mongo_uri: str) -> None:
        self.ref, self.fws = ref, fws
        self.tmp_path, self.journal_path, self.mongo_uri = tmp_path, journal_path, mongo_uri
        self.dirs: list[str] = []

    def both(self, call: Any) -> None:
        for lp in (self.ref, self.fws):
            call(lp)

    def reserve(self, name: str, fw_id: int) -> None:
        for side, lp in (("ref", self.ref), ("fws", self.fws)):
            d = str(self.tmp_path / side / name)
            reserve_offline(lp, d, fw_id=fw_id)
            self.dirs.append(d)

    def run(self, name: str) -> None:
        ref = run_fireworks_offline(str(self.tmp_path / "ref" / name))
        assert ref.returncode == 0, ref.stderr[-2000:]
        fws = run_fwspool(str(self.tmp_path / "fws" / name))
        assert fws.returncode == 0, fws.stderr[-2000:]

    def push(self, *, recover: tuple[int, ...] | None = None) -> Any:
        """``lpad recover_offline`` on one twin (only the ``recover`` launches, if given), push on the other."""
        if recover is None:
            recover_offline(self.ref)
        for launch_id in recover or ():
            self.ref.recover_offline(launch_id, False, False)
        return ingest_and_push(
            self.journal_path, self.mongo_uri, self.fws.name, roots=(str(self.tmp_path / "fws"),)
        )

    def assert_same(self) -> None:
        ref_dirs = tuple(d for d in self.dirs if "/ref/" in d)
        fws_dirs = tuple(d for d in self.dirs if "/fws/" in d)
        got, want = snapshot(self.fws, fws_dirs), snapshot(self.ref, ref_dirs)
        for part in want:
            if part == "fireworks":
                for k in set(want[part]) | set(got[part]):
                    assert got[part].get(k) == want[part].get(k), (part, k)
            assert got[part] == want[part], part


@pytest.fixture
def pair(twins: Any, tmp_path: Path, journal_path: str, mongo_uri: str) -> Twins:
    return Twins(*twins, tmp_path, journal_path, mongo_uri)


def test_a_firework_paused_while_its_job_runs_completes_once_resumed(pair: Twins) -> None:
    pair.both(lambda lp: lp.add_wf(chain()))
    pair.reserve("step1", 1)
    pair.both(lambda lp: lp.pause_fw(1))  # allowed: the LaunchPad still says RESERVED
    pair.run("step1")
    summary = pair.push()
    assert summary.superseded == 0
    pair.assert_same()
    assert states(pair.fws) == {"step1": "PAUSED", "step2": "WAITING"}
    assert pair.fws.launches.find_one({"launch_id": 1})["state"] == "COMPLETED"
    pair.both(lambda lp: lp.resume_fw(1))
    again = pair.push()
    assert again.applied == again.superseded == 0
    pair.assert_same()
    assert states(pair.fws) == {"step1": "COMPLETED", "step2": "READY"}


def test_a_firework_defused_by_a_siblings_defuse_workflow_completes_once_reignited(pair: Twins) -> None:
    def wf() -> Workflow:
        a = Firework(ActionTask(defuse_workflow=True, dynamic=False), name="defuser", fw_id=1)
        b = Firework(ScriptTask.from_str("echo sibling"), name="sibling", fw_id=2)
        c = Firework(ScriptTask.from_str("echo child"), name="child", parents=[b], fw_id=3)
        return Workflow([a, b, c], name="defused")

    pair.both(lambda lp: lp.add_wf(wf()))
    pair.reserve("defuser", 1)
    pair.reserve("sibling", 2)
    pair.run("defuser")
    # Only the finished job: FireWorks' recover_offline of a job that has not started sets its
    # Firework RUNNING whatever its state, so it would undo the defuse here (fwspool does not).
    pair.push(recover=(1,))
    assert states(pair.fws)["sibling"] == "DEFUSED"
    pair.run("sibling")
    summary = pair.push()
    assert summary.superseded == 0
    pair.assert_same()
    pair.both(lambda lp: lp.reignite_wf(1))
    pair.push()
    pair.assert_same()
    assert states(pair.fws) == {"defuser": "COMPLETED", "sibling": "COMPLETED", "child": "READY"}


def test_a_firework_paused_while_its_job_is_still_running_keeps_its_pause(
    pair: Twins, tmp_path: Path
) -> None:
    """Only the running phase arrives while paused: the launch is RUNNING, the Firework PAUSED;
    resuming shows it RUNNING, as FireWorks' own refresh then does."""
    from fwspool.events import Started, utcnow
    from fwspool.spool import SpoolWriter

    pair.fws.add_wf(chain())
    d = str(tmp_path / "fws" / "step1")
    reserve_offline(pair.fws, d, fw_id=1)
    pair.fws.pause_fw(1)
    with SpoolWriter(d, 1, 1) as w:
        w.append(Started(started_on=utcnow(), host="node1", ip="10.0.0.1"))
    summary = ingest_and_push(
        pair.journal_path, pair.mongo_uri, pair.fws.name, roots=(str(tmp_path / "fws"),)
    )
    assert summary.superseded == 0 and summary.applied == 1
    assert states(pair.fws)["step1"] == "PAUSED"
    assert pair.fws.launches.find_one({"launch_id": 1})["state"] == "RUNNING"
    assert pair.fws.offline_runs.find_one({"launch_id": 1})["deprecated"] is False
    pair.fws.resume_fw(1)
    assert states(pair.fws)["step1"] == "RUNNING"


def test_a_rerun_while_paused_still_supersedes_for_good(pair: Twins) -> None:
    pair.both(lambda lp: lp.add_wf(chain()))
    pair.reserve("step1", 1)
    pair.both(lambda lp: lp.pause_fw(1))
    pair.run("step1")
    pair.both(lambda lp: lp.rerun_fw(1))
    summary = pair.push()
    assert summary.superseded > 0 and summary.applied == 0
    assert pair.fws.launches.find_one({"launch_id": 1})["state"] != "COMPLETED"
