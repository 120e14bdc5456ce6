"""End to end on the site of network namespaces (fwspool.testing.topology, issue 19).

The test itself runs on the login host (fixture ``on_login``), as the user does: FireWorks' own
``qlaunch -r`` with the README's ``rocket_launch`` line, and the README's ``fwspool sync
--watch``. The jobs run on the compute hosts, which have no route to the database: whatever
reaches the LaunchPad went through the spool and the login host.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from fireworks import Firework, ScriptTask, Workflow
from test_slurm_pack import add, jobs_of, launch, spool_started
from test_slurm_path import ROCKET_LAUNCH, fw_state, kill_rlaunch, reserved_job, sleeper, the_launch

from fwspool.testing.launchpad import make_launchpad, snapshot
from fwspool.testing.slurm_site import Site
from fwspool.testing.topology import COMPUTE, Topology
from fwspool.testing.waiting import wait_for


def on_node(node: str) -> dict[str, Any]:
    """A Firework spec that makes FireWorks' queue adapter keep its job off the other node."""
    other = {"cn1": "cn2", "cn2": "cn1"}[node]
    return {"_queueadapter": {"exclude_nodes": other}}


def site_on(topology: Topology, tmp_path: Path, db_name: str) -> tuple[Any, Site]:
    assert topology.slurm is not None
    lp = make_launchpad(topology.db_uri, db_name)
    return lp, Site(tmp_path, topology.db_uri, db_name, topology.slurm, ROCKET_LAUNCH)


def test_a_chain_runs_on_both_compute_hosts_through_a_database_outage(
    on_login: Topology, tmp_path: Path, db_name: str
) -> None:
    topology = on_login
    lp, site = site_on(topology, tmp_path, db_name)
    nodes = {1: "cn1", 2: "cn2", 3: "cn1"}
    steps = [
        Firework(ScriptTask.from_str("echo one > step.txt"), name="step1", fw_id=1, spec=on_node("cn1")),
        # Step 2 ends when the test says so (a file "go" in its launch directory): during the outage.
        Firework(
            ScriptTask.from_str("until [ -e go ]; do sleep 0.2; done"),
            name="step2",
            fw_id=2,
            spec=on_node("cn2"),
        ),
        Firework(ScriptTask.from_str("echo three > step.txt"), name="step3", fw_id=3, spec=on_node("cn1")),
    ]
    lp.add_wf(Workflow(steps, {1: [2], 2: [3]}))
    assert topology.db is not None and topology.slurm is not None
    site.start_sync()
    try:
        for fw_id in (1, 2, 3):
            d = site.runs / f"step{fw_id}"
            d.mkdir()
            site.qlaunch("singleshot", cwd=d)
            job = reserved_job(lp, fw_id)
            if fw_id == 2:
                topology.slurm.wait_for_state(job, {"RUNNING"}, 30)
                topology.db.stop()  # step 2 runs and ends on cn2 while the database is down
                (d / "go").touch()
                topology.slurm.wait_for_state(job, {"COMPLETED"}, 60)
                wait_for(
                    lambda: site.events("SELECT 1 FROM events WHERE type = 'exited' AND fw_id = 2"),
                    30,
                    "step 2's end in the journal while the database is down",
                )
                # A push blocks up to its 5 s server-selection timeout: restarting the database
                # before it gives up would let that push succeed and leave the outage unseen.
                wait_for(lambda: "cannot reach MongoDB" in site.log(), 30, "the pusher to see the outage")
                topology.db.start()
            wait_for(lambda fw_id=fw_id: fw_state(lp, fw_id) == "COMPLETED", 60, f"step {fw_id} COMPLETED")
        # The pusher writes a Firework before its workflow: wait for the workflow too.
        wait_for(
            lambda: lp.workflows.find_one({"nodes": 1})["state"] == "COMPLETED", 10, "workflow COMPLETED"
        )
    finally:
        site.stop_sync()
    for fw_id, node in nodes.items():
        launch = the_launch(lp, fw_id)
        assert launch["host"] == node, launch
        assert [h["state"] for h in launch["state_history"]] == ["RESERVED", "RUNNING", "COMPLETED"]
        record = topology.slurm.job_record(str(lp.get_reservation_id_from_fw_id(fw_id)))
        assert (record["JobState"], record["NodeList"]) == ("COMPLETED", node)
    started = [json.loads(p) for (p,) in site.events("SELECT payload FROM events WHERE type = 'started'")]
    assert sorted(st["host"] for st in started) == ["cn1", "cn1", "cn2"]
    assert (site.runs / "step3" / "step.txt").read_text() == "three\n"


def test_a_node_crash_loses_a_job_that_cannot_requeue_and_reruns_one_that_can_on_the_other_node(
    on_login: Topology, tmp_path: Path, db_name: str
) -> None:
    """The node's slurmd and every process on it are killed. Slurm marks the node DOWN after
    SlurmdTimeout: the ``--no-requeue`` job ends NODE_FAIL and its Firework is FIZZLED as lost,
    saying why in Slurm's words; the other job is requeued, runs on the other node as the same
    launch, and completes."""
    topology = on_login
    slurm = topology.slurm
    assert slurm is not None
    lp, site = site_on(topology, tmp_path, db_name)
    # The first run would sleep for ten minutes; the rerun (SLURM_RESTART_COUNT=1) ends at once.
    script = "sleep $(( ${SLURM_RESTART_COUNT:-0} ? 0 : 600 ))"
    lp.add_wf(
        Workflow(
            [Firework(ScriptTask.from_str(script), name="rerun", fw_id=1), sleeper("child", 0, fw_id=2)],
            {1: [2]},
        )
    )
    site.start_sync()
    try:
        (site.runs / "rerun").mkdir()
        site.qlaunch("singleshot", cwd=site.runs / "rerun")
        requeued = reserved_job(lp, 1)
        slurm.wait_for_state(requeued, {"RUNNING"}, 30)
        node = slurm.job_record(requeued)["NodeList"]
        [other] = set(COMPUTE) - {node}
        lp.add_wf(
            Workflow(
                [sleeper("doomed", 600, fw_id=3, **on_node(node)), sleeper("child", 0, fw_id=4)], {3: [4]}
            )
        )
        [doomed_fw] = lp.get_fw_ids({"name": "doomed"})
        (site.runs / "doomed").mkdir()
        site.qlaunch("singleshot", cwd=site.runs / "doomed", SBATCH_NO_REQUEUE="1")
        doomed = reserved_job(lp, doomed_fw)
        wait_for(
            lambda: fw_state(lp, 1) == fw_state(lp, doomed_fw) == "RUNNING", 60, "both Fireworks RUNNING"
        )
        assert topology.crash(node)
        wait_for(lambda: fw_state(lp, doomed_fw) == "FIZZLED", 60, "the job on the crashed node lost")
        wait_for(lambda: fw_state(lp, 1) == "COMPLETED", 60, "the requeued job COMPLETED on the other node")
    finally:
        site.stop_sync()
    record = slurm.job_record(doomed)
    assert (record["JobState"], record["Reason"]) == ("NODE_FAIL", "NodeDown")
    stored = the_launch(lp, doomed_fw)["action"]["stored_data"]
    said = stored["_fwspool_lost"]["batch_end"]
    assert {k: said[k] for k in ("cause", "state", "reason", "source")} == {
        "cause": "node failure",
        "state": "NODE_FAIL",
        "reason": "NodeDown",
        "source": "scontrol show job",
    }
    assert said["words"] == f"JobState=NODE_FAIL Reason=NodeDown ExitCode={record['ExitCode']}"
    # The end of the job's own output (the queue adapter's doomed-<job>.out), on the LaunchPad.
    assert said["stdout"] == str(site.runs / "doomed" / f"doomed-{doomed}.out")
    assert f"RUNNING fw_id: {doomed_fw} in directory" in said["stdout_tail"], said
    assert stored["_message"].endswith(
        f": node failure (scontrol show job: JobState=NODE_FAIL Reason=NodeDown ExitCode={record['ExitCode']})"
    ), stored["_message"]
    assert "lost (node failure: scontrol show job says" in site.log()
    # `fwspool status` says it too: the cause, Slurm's reason, the record, the exit code.
    report = json.loads(site.fwspool("status", "--json", "--no-check", "--journal", str(site.journal)).stdout)
    [why] = [x["why"] for x in report["launches"] if x["fw_id"] == doomed_fw]
    assert (why["cause"], why["reason"], why["source"]) == (
        "node failure",
        "NodeDown",
        "scontrol show job",
    ), why
    text = site.fwspool("status", "--no-check", "--journal", str(site.journal)).stdout
    assert f"why: node failure (NodeDown), says scontrol show job; exit code {why['exit_code']}" in text, text
    # The requeued job: the same launch, run again on the other node, and its child is READY.
    launch = the_launch(lp, 1)
    assert launch["host"] == other and fw_state(lp, 2) == "READY"
    assert [h["state"] for h in launch["state_history"]] == ["RESERVED", "RUNNING", "COMPLETED"]
    starts = [
        json.loads(p)
        for (p,) in site.events(
            f"SELECT payload FROM events WHERE type = 'started' AND launch_id = {launch['launch_id']} "
            "ORDER BY occurred_at"
        )
    ]
    assert [(st["host"], st["restart_count"]) for st in starts] == [(node, 0), (other, 1)]
    again = slurm.job_record(requeued)
    assert (again["JobState"], again["NodeList"], again["Restarts"]) == ("COMPLETED", other, "1")


def test_a_push_stuck_on_a_cut_link_holds_up_neither_ingest_nor_the_batch_checks(
    on_login: Topology, tmp_path: Path, db_name: str
) -> None:
    """The database host's cable is pulled at the switch (silent: no reset, no unreachable): a
    push then waits on its connection up to the uplink's socket timeout (30 s). Meanwhile ingest
    reads a job's end and the batch-system check finds a SIGKILLed job lost, each within a few
    intervals; when the cable is back, the pushes finish and the LaunchPad is complete."""
    topology = on_login
    slurm = topology.slurm
    assert slurm is not None
    lp, site = site_on(topology, tmp_path, db_name)
    # "ends" ends when the test says so (a file "go" in its launch directory): during the cut.
    gated = Firework(ScriptTask.from_str("until [ -e go ]; do sleep 0.2; done"), name="ends", fw_id=1)
    lp.add_wf(Workflow([gated, sleeper("child", 0, fw_id=2)], {1: [2]}))
    lp.add_wf(Workflow([sleeper("killed", 600, fw_id=3)], {}))
    site.start_sync(interval="1")
    try:
        jobs = {}
        for fw_id, name in ((1, "ends"), (3, "killed")):
            (site.runs / name).mkdir()
            site.qlaunch("singleshot", cwd=site.runs / name)
            jobs[fw_id] = reserved_job(lp, fw_id)
        wait_for(lambda: fw_state(lp, 1) == fw_state(lp, 3) == "RUNNING", 60, "both Fireworks RUNNING")
        topology.cut("db")
        try:
            (site.runs / "ends" / "go").touch()
            wait_for(
                lambda: site.events("SELECT 1 FROM events WHERE type = 'completed' AND fw_id = 1"),
                15,
                "the job's end in the journal during the cut",
            )
            time.sleep(1.5)  # the push of that end is under way now, on a dead connection
            kill_rlaunch(slurm, jobs[3])
            killed_at = time.monotonic()
            # squeue every second, gone for --lost-after 3 s: well before the push gives up.
            wait_for(
                lambda: site.events("SELECT 1 FROM events WHERE type = 'lost' AND fw_id = 3"),
                12,
                "the killed job found lost while the push hangs",
            )
            assert time.monotonic() - killed_at < 12
            # ... while the end read first has not reached the database: its push still hangs.
            assert site.events("SELECT pushed_at FROM events WHERE type = 'completed'") == [(None,)]
        finally:
            topology.cut("db", up=True)
        wait_for(lambda: fw_state(lp, 2) == "READY", 90, "the child READY after the cut")
        wait_for(lambda: fw_state(lp, 3) == "FIZZLED", 30, "the lost job FIZZLED")
    finally:
        site.stop_sync()
    assert fw_state(lp, 1) == "COMPLETED"
    assert the_launch(lp, 3)["action"]["stored_data"]["_fwspool_lost"]["batch_end"]["source"] == (
        "scontrol show job"
    )


def test_the_login_host_cut_off_by_a_silent_drop_push_says_one_line_and_watch_resumes(
    on_login: Topology, tmp_path: Path, db_name: str
) -> None:
    """An nft rule on the login host drops every packet from the database host: nothing answers,
    nothing is refused. A one-shot sync exits 75 with one line; ``sync --watch`` started during
    the cut retries and finishes the work once the rule is gone."""
    topology = on_login
    slurm = topology.slurm
    assert slurm is not None
    lp, site = site_on(topology, tmp_path, db_name)
    lp.add_wf(Workflow([sleeper("parent", 0, fw_id=1), sleeper("child", 0, fw_id=2)], {1: [2]}))
    site.qlaunch("singleshot")
    slurm.wait_for_state(reserved_job(lp, 1), {"COMPLETED"}, 30)
    topology.drop("login", topology.address("db"))
    try:
        once = site.fwspool(
            "sync", "-l", str(site.launchpad_file), "--journal", str(site.journal), check=False
        )
        assert once.returncode == 75, once
        [line] = once.stderr.strip().splitlines()
        assert "MongoDB at mongodb://" in line and "Traceback" not in once.stderr
        assert site.events("SELECT type FROM events WHERE pushed_at IS NULL ORDER BY occurred_at")[-1] == (
            "exited",
        )
        site.start_sync(interval="1")
        wait_for(lambda: "retrying in" in site.log(), 30, "the daemon's retry line during the cut")
    finally:
        topology.drop("login", topology.address("db"), on=False)
    try:
        wait_for(lambda: fw_state(lp, 2) == "READY", 60, "the child READY once the drop is gone")
    finally:
        site.stop_sync()
    assert fw_state(lp, 1) == "COMPLETED"
    assert site.events("SELECT count(*) FROM events WHERE pushed_at IS NULL") == [(0,)]
    # Field by field, the LaunchPad is a clean run's: the same workflow run with no cut.
    clean_lp = make_launchpad(topology.db_uri, db_name + "_c")
    clean_lp.add_wf(Workflow([sleeper("parent", 0, fw_id=1), sleeper("child", 0, fw_id=2)], {1: [2]}))
    clean = Site(tmp_path / "clean", topology.db_uri, db_name + "_c", slurm, ROCKET_LAUNCH)
    clean.qlaunch("singleshot")
    slurm.wait_for_state(reserved_job(clean_lp, 1), {"COMPLETED"}, 30)
    clean.fwspool("sync", "-l", str(clean.launchpad_file), "--journal", str(clean.journal))
    assert snapshot(lp, (str(site.runs),)) == snapshot(clean_lp, (str(clean.runs),))


def test_a_packed_job_whose_node_crashes_loses_its_running_launch_and_releases_the_rest(
    on_login: Topology, tmp_path: Path, db_name: str
) -> None:
    """docs/packing.md, "Packing many Fireworks into one job": a job killed with SIGKILL records nothing;
    its running launch is lost and its launches not started are released once the job is gone."""
    topology = on_login
    slurm = topology.slurm
    assert slurm is not None
    lp, site = site_on(topology, tmp_path, db_name)
    ids = add(lp, sleeper("done", 0), sleeper("running", 600), sleeper("r1", 0), sleeper("r2", 0))
    site.start_sync(interval="1")
    try:
        cmd = [str(site.fw / ".venv" / "bin" / "fwspool"), "qlaunch", "-r", "-l", str(site.launchpad_file)]
        cmd += ["-w", str(site.fw / "my_fworker.yaml"), "-q", str(site.qadapter), "--pack", "4", "singleshot"]
        res = subprocess.run(
            cmd,
            cwd=site.runs,
            env=site.env(SBATCH_NO_REQUEUE="1"),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        [job] = jobs_of(res.stdout)
        wait_for(lambda: spool_started(lp, ids[1]), 60, "the second Firework started")
        node = slurm.job_record(job)["NodeList"]
        assert topology.crash(node)
        wait_for(lambda: fw_state(lp, ids[1]) == "FIZZLED", 60, "the running launch lost")
        wait_for(
            lambda: all(fw_state(lp, i) == "READY" for i in ids[2:]), 30, "the launches not started released"
        )
    finally:
        site.stop_sync()
    assert fw_state(lp, ids[0]) == "COMPLETED"
    lost = launch(lp, ids[1])["action"]["stored_data"]["_fwspool_lost"]
    assert (lost["batch_job_id"], lost["batch_end"]["cause"]) == (job, "node failure")
    released = [json.loads(p) for (p,) in site.events("SELECT payload FROM events WHERE type = 'released'")]
    assert len(released) == 2 and all(r["batch_job_id"] == job for r in released)


def test_a_node_cut_off_has_its_job_requeued_and_the_stray_copy_finishing_later_changes_nothing(
    on_login: Topology, tmp_path: Path, db_name: str
) -> None:
    """The node's cable is pulled at the switch; its slurmd and the job live on. Slurm declares
    the node DOWN and requeues the job onto the other node, where it runs again as the same
    launch and completes. Then the stray first run, still running on the cut-off node, completes
    too and records its completion in the same launch directory (the filesystem is shared). The
    launch stays the run that finished first: ingest reads no more of a launch that is over."""
    topology = on_login
    slurm = topology.slurm
    assert slurm is not None
    lp, site = site_on(topology, tmp_path, db_name)
    # The rerun (SLURM_RESTART_COUNT=1) ends at once; the first run ends 5 s after it.
    script = (
        'if [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then until [ -e rerun ]; do sleep 0.2; done; sleep 5; '
        "else touch rerun; fi; echo run ${SLURM_RESTART_COUNT:-0} >> runs.txt"
    )
    lp.add_wf(
        Workflow(
            [Firework(ScriptTask.from_str(script), name="cut", fw_id=1), sleeper("child", 0, fw_id=2)],
            {1: [2]},
        )
    )
    site.start_sync(interval="1")
    runs = site.runs / "runs.txt"
    try:
        site.qlaunch("singleshot")
        job = reserved_job(lp, 1)
        wait_for(lambda: fw_state(lp, 1) == "RUNNING", 60, "the Firework RUNNING")
        node = slurm.job_record(job)["NodeList"]
        [other] = set(COMPUTE) - {node}
        topology.cut(node)
        try:
            wait_for(lambda: fw_state(lp, 1) == "COMPLETED", 60, "the rerun COMPLETED on the other node")
            first = the_launch(lp, 1)
            wait_for(lambda: runs.exists() and "run 0" in runs.read_text(), 40, "the stray run's end")
            spools = sorted(site.runs.glob("fwspool-*.spool"))
            wait_for(
                lambda: all(b'"type":"exited"' in p.read_bytes() for p in spools), 10, "both runs' exits"
            )
        finally:
            topology.cut(node, up=True)
    finally:
        site.stop_sync()
    # One more full pass after the stray run's last record: nothing changes.
    site.fwspool("sync", "-l", str(site.launchpad_file), "--journal", str(site.journal))
    assert [p.read_bytes().count(b'"type":"completed"') for p in spools] == [1, 1]
    assert runs.read_text().splitlines() == ["run 1", "run 0"]
    launch = the_launch(lp, 1)
    assert launch["host"] == other and launch == first
    assert fw_state(lp, 2) == "READY"
    assert site.events("SELECT count(*) FROM events WHERE type = 'completed' OR pushed_at IS NULL") == [(1,)]
