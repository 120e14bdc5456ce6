"""fwspool against FireWorks' own offline path, on twin LaunchPads of the same server."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

import pytest
from dyn_tasks import FailTask, GrowTask
from fireworks import Firework, PyTask, ScriptTask, Workflow

from fwspool.reserve import reserve_offline
from fwspool.testing.commands import run_fireworks_offline, run_fwspool
from fwspool.testing.journal_file import ingest_and_push
from fwspool.testing.launchpad import recover_offline, snapshot, throwaway_launchpad


def three_steps(first_tasks: list[Any], spec: dict[str, Any] | None = None) -> Workflow:
    a = Firework(first_tasks, name="step1", spec=dict(spec or {}, seed=7))
    b = Firework(ScriptTask.from_str("echo two"), name="step2", parents=[a])
    c = Firework(ScriptTask.from_str("echo three"), name="step3", parents=[b])
    return Workflow([a, b, c], name="three")


@pytest.fixture
def twins(mongo_uri: str, db_name: str, tmp_path: Any):
    with (
        throwaway_launchpad(mongo_uri, db_name + "_r") as ref,
        throwaway_launchpad(mongo_uri, db_name + "_f") as fws,
    ):
        yield ref, fws


def run_twins(
    twins: Any, wf_factory: Any, tmp_path: Any, journal_path: str, mongo_uri: str
) -> tuple[dict, dict, Any]:
    ref, fws = twins
    ref.add_wf(wf_factory())
    fws.add_wf(wf_factory())
    ref_dir, fws_dir = str(tmp_path / "ref"), str(tmp_path / "fws")
    r_fw, r_lid = reserve_offline(ref, ref_dir)
    f_fw, f_lid = reserve_offline(fws, fws_dir)
    assert (r_fw.fw_id, r_lid) == (f_fw.fw_id, f_lid)
    r = run_fireworks_offline(ref_dir)
    assert r.returncode == 0, r.stderr[-2000:]
    f = run_fwspool(fws_dir)
    assert f.returncode in (0, 1), f.stderr[-2000:]
    recover_offline(ref)
    summary = ingest_and_push(journal_path, mongo_uri, fws.name, roots=(fws_dir,))
    return snapshot(ref, (ref_dir,)), snapshot(fws, (fws_dir,)), summary


def test_three_step_workflow_matches_recover_offline(twins, tmp_path, journal_path, mongo_uri):
    wf = lambda: three_steps(  # noqa: E731
        [ScriptTask.from_str("echo one"), PyTask(func="math.sqrt", args=[16], stored_data_varname="root")],
        spec={"_pass_job_info": True},
    )
    ref_snap, fws_snap, summary = run_twins(twins, wf, tmp_path, journal_path, mongo_uri)
    assert summary.applied > 0 and summary.superseded == 0
    assert fws_snap == ref_snap
    ref, fws = twins
    by_name = {d["name"]: d for d in fws_snap["fireworks"].values()}
    assert by_name["step1"]["state"] == "COMPLETED"
    assert by_name["step2"]["state"] == "READY"
    assert by_name["step3"]["state"] == "WAITING"
    assert by_name["step2"]["spec"]["_job_info"][0]["name"] == "step1"


def test_dynamic_workflow_additions_and_detours_match(twins, tmp_path, journal_path, mongo_uri):
    wf = lambda: three_steps([GrowTask(label="g")])  # noqa: E731
    ref_snap, fws_snap, _ = run_twins(twins, wf, tmp_path, journal_path, mongo_uri)
    assert fws_snap == ref_snap
    names = {d["name"] for d in fws_snap["fireworks"].values()}
    assert {"g-addition", "g-detour"} <= names
    assert len(fws_snap["fireworks"]) == 5


def test_fizzled_task_matches(twins, tmp_path, journal_path, mongo_uri):
    wf = lambda: three_steps([FailTask()])  # noqa: E731
    ref_snap, fws_snap, _ = run_twins(twins, wf, tmp_path, journal_path, mongo_uri)
    assert fws_snap == ref_snap
    assert {d["name"]: d for d in fws_snap["fireworks"].values()}["step1"]["state"] == "FIZZLED"
    action = fws_snap["launches"][1]["action"]
    assert action["stored_data"]["_message"] == "runtime error during task"


def test_real_timestamps_and_pings(twins, tmp_path, journal_path, mongo_uri):
    ref, fws = twins
    fws.add_wf(three_steps([ScriptTask.from_str("sleep 1")]))
    d = str(tmp_path / "fws")
    reserve_offline(fws, d)
    before = dt.datetime.now(dt.UTC)
    res = run_fwspool(d, "--ping-seconds", "0.3")
    assert res.returncode == 0, res.stderr[-2000:]
    after = dt.datetime.now(dt.UTC)
    spool = [
        json.loads(line[23:])
        for name in os.listdir(d)
        if name.endswith(".spool")
        for line in open(os.path.join(d, name), encoding="utf-8")
    ]
    started_on = next(r["event"]["started_on"] for r in spool if r["event"]["type"] == "started")
    completed_on = next(r["event"]["completed_on"] for r in spool if r["event"]["type"] == "completed")
    # Push much later than the run: the recorded times must still be the real ones.
    ingest_and_push(journal_path, mongo_uri, fws.name, roots=(d,))
    launch = fws.launches.find_one({"launch_id": 1})
    running = next(h for h in launch["state_history"] if h["state"] == "RUNNING")
    done = next(h for h in launch["state_history"] if h["state"] == "COMPLETED")

    def t(s: str) -> dt.datetime:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))

    assert t(running["created_on"]) == t(started_on)
    assert t(done["created_on"]) == t(completed_on)
    assert before <= t(running["created_on"]) <= t(running["updated_on"]) <= after
    assert t(running["updated_on"]) > t(running["created_on"])  # the last ping, not the start
    assert launch["runtime_secs"] == pytest.approx((t(completed_on) - t(started_on)).total_seconds())
    assert t(launch["time_end"]) == t(completed_on)
    assert fws.offline_runs.find_one({"launch_id": 1})["completed"] is True


def test_a_child_with_a_large_spec_changed_by_the_action_matches(twins, tmp_path, journal_path, mongo_uri):
    """The action's mod_spec/update_spec changes a child whose spec is 9 MB. A bulk completion's
    Firework carries what it replaced until its workflow is written, which would make that
    document 18 MB, over MongoDB's limit: such a workflow is completed one launch at a time
    through FireWorks' own complete_launch instead, as recover_offline does."""

    def wf() -> Workflow:
        a = Firework(GrowTask(label="g"), name="step1")
        b = Firework(
            ScriptTask.from_str("echo two"), name="step2", parents=[a], spec={"blob": "x" * 9_000_000}
        )
        return Workflow([a, b], name="large")

    ref_snap, fws_snap, summary = run_twins(twins, wf, tmp_path, journal_path, mongo_uri)
    assert summary.applied > 0 and not summary.problems
    assert fws_snap == ref_snap
    step2 = next(d for d in fws_snap["fireworks"].values() if d["name"] == "step2")
    assert step2["spec"]["history"] == ["g"] and len(step2["spec"]["blob"]) == 9_000_000


@pytest.mark.parametrize("launch_dir", ["sub/dir", "ABSOLUTE"])
def test_a_spec_launch_dir_matches(twins, tmp_path, journal_path, mongo_uri, launch_dir):
    """qlaunch moves a launch to its spec's `_launch_dir`; FireWorks' offline rocket then runs it
    where it is. fwspool's rocket moved a relative one again, into itself, and FireWorks' own check
    of it crashed: FIZZLED. An absolute one is where the launch already is."""
    # run_twins makes the reference's workflow first, then fwspool's: each its own directory.
    twin_dirs = iter([tmp_path / "ref", tmp_path / "fws"])

    def wf() -> Workflow:
        where = launch_dir if launch_dir != "ABSOLUTE" else str(next(twin_dirs))
        return three_steps([ScriptTask.from_str("echo one > out.txt")], {"_launch_dir": where})

    ref_snap, fws_snap, _ = run_twins(twins, wf, tmp_path, journal_path, mongo_uri)
    assert fws_snap == ref_snap
    assert {d["name"]: d["state"] for d in fws_snap["fireworks"].values()}["step1"] == "COMPLETED"
    assert (tmp_path / "fws" / "out.txt").read_text() == "one\n"
