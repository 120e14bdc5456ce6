"""The real submission path: FireWorks' own `qlaunch -r`, a real Slurm, `fwspool sync --watch`.

Every test here submits with FireWorks' own `qlaunch` (its CommonAdapter, `_fw_q_type: SLURM`)
and the `rocket_launch` line of the README's quick start, word for word; Slurm runs the jobs, and the jobs find
`fwspool` by that line's absolute path only (their PATH is the login shell's, without the venv).
The LaunchPad is checked at the end, as a user would check it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, PyTask, ScriptTask, Workflow

from fwspool.testing.devslurm import DevSlurm, live_processes
from fwspool.testing.docs import doc_line
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import Site
from fwspool.testing.waiting import wait_for

BIN = Path(sys.executable).parent
TESTS_DIR = Path(__file__).resolve().parent


ROCKET_LAUNCH = doc_line("rocket_launch: $HOME/fw/.venv/bin/fwspool")


def fw_state(lp: Any, fw_id: int) -> str:
    return str(lp.fireworks.find_one({"fw_id": fw_id}, {"state": 1})["state"])


def the_launch(lp: Any, fw_id: int) -> dict[str, Any]:
    fw = lp.fireworks.find_one({"fw_id": fw_id})
    assert len(fw["launches"]) == 1 and not fw.get("archived_launches"), fw  # no second reservation
    return dict(lp.launches.find_one({"launch_id": fw["launches"][0]}))


def reserved_job(lp: Any, fw_id: int) -> str:
    return str(wait_for(lambda: lp.get_reservation_id_from_fw_id(fw_id), 30, f"reservation of {fw_id}"))


def sleeper(name: str, seconds: float, fw_id: int | None = None, **spec: Any) -> Firework:
    return Firework(PyTask(func="time.sleep", args=[seconds]), name=name, spec=spec, fw_id=fw_id)


def chain(parent: Firework, child: Firework) -> Workflow:
    """parent -> child, as Fireworks 1 and 2 of a fresh LaunchPad (add_wf renumbers in id order)."""
    parent.fw_id, child.fw_id = 1, 2
    return Workflow([parent, child], {1: [2]})


def site_with_own_server(
    tmp_path: Path, mongo_server_factory: Any, db_name: str, slurm: DevSlurm
) -> tuple[Any, Any, Site]:
    """A site whose database the test stops and starts: a server of its own."""
    server = mongo_server_factory()
    return (
        server,
        make_launchpad(server.uri, db_name),
        Site(tmp_path, server.uri, db_name, slurm, ROCKET_LAUNCH),
    )


def test_a_three_step_workflow_advances_with_sync_watch_alone_through_a_database_restart(
    tmp_path: Path, mongo_server_factory: Any, db_name: str, slurm_cluster: DevSlurm
) -> None:
    server, lp, s = site_with_own_server(tmp_path, mongo_server_factory, db_name, slurm_cluster)
    steps = [
        Firework(ScriptTask.from_str("echo one > step.txt"), name="step1", fw_id=1),
        sleeper("step2", 6, fw_id=2),
        Firework(ScriptTask.from_str("echo three > step.txt"), name="step3", fw_id=3),
    ]
    lp.add_wf(Workflow(steps, {1: [2], 2: [3]}))
    # The default inbox already holds another LaunchPad's pointers with launch ids 1, 2 and 3.
    others = s.leave_other_launchpads_pointers()
    s.start_sync()
    try:
        for fw_id in (1, 2, 3):
            d = s.runs / f"step{fw_id}"
            d.mkdir()
            s.qlaunch("singleshot", cwd=d)
            job = reserved_job(lp, fw_id)
            if fw_id == 2:
                slurm_cluster.wait_for_state(job, {"RUNNING"}, 30)
                server.stop()  # the job runs and ends while the database is down
                slurm_cluster.wait_for_state(job, {"COMPLETED", "GONE"}, 60)
                wait_for(
                    lambda: s.events("SELECT 1 FROM events WHERE type = 'exited'  AND fw_id = 2"),
                    30,
                    "step 2's end in the journal while the database is down",
                )
                # A push blocks up to its 5 s server-selection timeout: see the outage first.
                wait_for(lambda: "cannot reach MongoDB" in s.log(), 30, "the pusher to see the outage")
                server.start()
            wait_for(lambda fw_id=fw_id: fw_state(lp, fw_id) == "COMPLETED", 90, f"step {fw_id} COMPLETED")
        # The workflow's own state is written after its Fireworks' (as FireWorks' refresh does).
        wait_for(
            lambda: lp.workflows.find_one({"nodes": 1})["state"] == "COMPLETED", 30, "the workflow COMPLETED"
        )
    finally:
        s.stop_sync()
    # The other LaunchPad's pointers stay for its own journal; none was applied here.
    assert others <= set(os.listdir(s.home / ".fwspool" / "inbox"))
    applied_from_others = (
        "SELECT count(*) FROM events AS e JOIN sources AS s ON s.source_id = e.source_id "
        "WHERE s.path LIKE '%/other-launchpad/%' AND e.push_outcome = 'applied'"
    )
    assert s.events(applied_from_others) == [(0,)]
    # What was read of them before the LaunchPad said whose launches 1-3 are is kept, set aside;
    # nothing of this LaunchPad's own jobs is.
    set_aside_of_ours = (
        "SELECT count(*) FROM events AS e JOIN sources AS s ON s.source_id = e.source_id "
        "WHERE e.push_outcome = 'stray' AND s.path NOT LIKE '%/other-launchpad/%'"
    )
    assert s.events(set_aside_of_ours) == [(0,)]
    started = [
        json.loads(p)
        for (p,) in s.events(
            "SELECT payload FROM events WHERE type = 'started' AND push_outcome IS NOT 'stray' ORDER BY fw_id"
        )
    ]
    assert [st["batch_system"] for st in started] == ["slurm"] * 3
    assert [st["restart_count"] for st in started] == [0] * 3
    assert [st["batch_job_id"] for st in started] == [lp.get_reservation_id_from_fw_id(i) for i in (1, 2, 3)]
    assert (s.runs / "step3" / "step.txt").read_text() == "three\n"


def test_rapidfire_with_the_venv_activated_in_pre_rocket(site: Site) -> None:
    """The README's other way for the job to find fwspool; each job in its launcher directory."""
    lp = make_launchpad(*launchpad_of(site))
    for i in range(3):
        lp.add_wf(Firework(ScriptTask.from_str(f"echo {i} > out.txt"), name=f"fw{i}"))
    (site.fw / ".venv" / "bin" / "activate").symlink_to(BIN / "activate")
    pre_rocket = doc_line("pre_rocket: source $HOME/fw/.venv/bin/activate")
    line = doc_line("rocket_launch: fwspool rlaunch")
    qadapter = site.fw / "activating_qadapter.yaml"
    qadapter.write_text(
        site.qadapter.read_text().replace(ROCKET_LAUNCH, line).replace("pre_rocket: null", pre_rocket)
    )
    site.start_sync()
    site.qlaunch("rapidfire", "--nlaunches", "3", "--sleep", "1", qadapter=qadapter)
    for fw_id in (1, 2, 3):
        wait_for(lambda fw_id=fw_id: fw_state(lp, fw_id) == "COMPLETED", 90, f"Firework {fw_id} COMPLETED")
    dirs = sorted(the_launch(lp, i)["launch_dir"] for i in (1, 2, 3))
    assert all(re.search(r"/block_[^/]+/launcher_[^/]+$", d) for d in dirs), dirs
    assert len(set(dirs)) == 3


def launchpad_of(site: Site) -> tuple[str, str]:
    text = site.launchpad_file.read_text()
    uri = re.search(r"host: '([^']+)'", text).group(1)  # type: ignore[union-attr]
    name = re.search(r"name: (\S+)", text).group(1)  # type: ignore[union-attr]
    return uri, name


def test_walltime_kill_by_slurm_fizzles_the_firework_at_once_with_the_signal(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    lp.add_wf(chain(sleeper("long", 600, _queueadapter={"walltime": "00:01:00"}), sleeper("after", 1)))
    site.start_sync()
    site.qlaunch("singleshot")
    job = reserved_job(lp, 1)
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 180, "the walltime kill on the LaunchPad", every=1)
    assert site.slurm.job_state(job) in ("TIMEOUT", None)
    stored = the_launch(lp, 1)["action"]["stored_data"]
    assert stored["_fwspool_exit"]["signal_name"] == "SIGTERM"
    assert stored["_message"] == "fwspool: the job was killed by SIGTERM before the Firework completed"
    assert fw_state(lp, 2) == "WAITING"
    # Slurm's record says why the signal came, once the job is gone: the walltime.
    wait_for(
        lambda: "batch_end" in the_launch(lp, 1)["action"]["stored_data"]["_fwspool_exit"],
        60,
        "Slurm's record of the job on the LaunchPad",
    )
    end = the_launch(lp, 1)["action"]["stored_data"]["_fwspool_exit"]["batch_end"]
    assert (end["cause"], end["state"], end["reason"]) == ("walltime", "TIMEOUT", "TimeLimit"), end


def test_scancel_of_a_running_job_fizzles_and_of_a_pending_one_releases_the_reservation(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    lp.add_wf(sleeper("running", 600))
    lp.add_wf(sleeper("pending", 1))
    site.start_sync()
    (site.runs / "a").mkdir()
    (site.runs / "b").mkdir()
    site.qlaunch("singleshot", cwd=site.runs / "a")
    running_job = reserved_job(lp, 1)
    wait_for(lambda: fw_state(lp, 1) == "RUNNING", 60, "Firework 1 RUNNING")
    site.slurm.run("scontrol", "update", f"PartitionName={site.slurm.partition}", "State=DOWN")
    try:
        site.qlaunch("singleshot", cwd=site.runs / "b")
        pending_job = reserved_job(lp, 2)
        assert site.slurm.job_state(pending_job) == "PENDING"
        site.slurm.scancel(pending_job)
    finally:
        site.slurm.run("scontrol", "update", f"PartitionName={site.slurm.partition}", "State=UP")
    site.slurm.scancel(running_job)
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the cancelled running job FIZZLED")
    assert the_launch(lp, 1)["action"]["stored_data"]["_fwspool_exit"]["signal_name"] == "SIGTERM"
    # Once the job is gone, ingest asks Slurm once how it ended (a job_ended event), and the push
    # adds the answer to the launch its signal FIZZLED: FireWorks' own lpad shows why.
    wait_for(
        lambda: "batch_end" in the_launch(lp, 1)["action"]["stored_data"]["_fwspool_exit"],
        60,
        "Slurm's record of the cancelled job on the LaunchPad",
    )
    shown_text = site.lpad("get_fws", "-i", "1", "-d", "all")  # docs/network.md's example
    # lpad prints the Firework as JSON, after any warning FireWorks logs on import.
    [shown] = json.loads(shown_text[re.search(r"^\{", shown_text, re.M).start() :])["launches"]  # type: ignore[union-attr]
    end = shown["action"]["stored_data"]["_fwspool_exit"]["batch_end"]
    assert (end["cause"], end["source"], end["state"]) == ("cancelled", "scontrol show job", "CANCELLED"), end
    assert end["exit_status"] == 128 + signal.SIGTERM and "ExitCode=0:15" in end["words"], end
    # The pending one never started: handed back (FireWorks' cancel_reservation), READY again.
    wait_for(lambda: fw_state(lp, 2) == "READY", 60, "the cancelled pending job's Firework READY")
    assert "reservation is released" in site.log()
    # cancel_reservation and forget_offline are two writes: the second may land a moment later.
    wait_for(
        lambda: lp.offline_runs.find_one({"fw_id": 2})["deprecated"] is True,
        30,
        "the released offline run forgotten",
    )

    # `fwspool status` tells the two apart, each with its real batch job.
    def outcomes() -> dict[int, tuple[Any, ...]]:
        res = site.fwspool("status", "--json", "--no-check", "--journal", str(site.journal))
        return {
            x["fw_id"]: (x["state"], x["outcome"], x["outcome_detail"], x["batch_job_id"])
            for x in json.loads(res.stdout)["launches"]
        }

    wait_for(lambda: outcomes()[2][1] == "released", 30, "the release in the journal")
    assert outcomes() == {
        1: ("FIZZLED", "killed", "killed by SIGTERM", running_job),
        2: ("READY", "released", f"batch job {pending_job} ended without starting the launch", pending_job),
    }
    # And so does `fwspool status`: the cause, which record said it, the exit code.
    res = site.fwspool("status", "--json", "--no-check", "--journal", str(site.journal))
    why = {x["fw_id"]: x["why"] for x in json.loads(res.stdout)["launches"]}
    assert why[2] is None
    assert (why[1]["cause"], why[1]["source"], why[1]["exit_code"]) == ("cancelled", "scontrol show job", 143)
    text = site.fwspool("status", "--no-check", "--journal", str(site.journal)).stdout
    assert doc_line("why: cancelled, says scontrol") in [ln.strip() for ln in text.splitlines()], (
        text
    )  # as documented
    assert end["words"] not in text  # the record's own words (and the output's tails) are in --json
    (site.runs / "c").mkdir()
    site.qlaunch("singleshot", cwd=site.runs / "c")  # and the next job takes it
    wait_for(lambda: fw_state(lp, 2) == "COMPLETED", 60, "the released Firework COMPLETED by a new job")


@pytest.mark.parametrize("pushing", ["throughout", "only_at_the_end"])
def test_a_requeued_job_continues_its_launch_and_ends_as_the_run_that_finished(
    site: Site, pushing: str
) -> None:
    lp = make_launchpad(*launchpad_of(site))
    lp.add_wf(chain(sleeper("requeued", 6), sleeper("child", 0)))
    if pushing == "throughout":
        site.start_sync()
    site.qlaunch("singleshot")
    job = reserved_job(lp, 1)
    launch_dir = Path(the_launch(lp, 1)["launch_dir"])
    wait_for(lambda: list(launch_dir.glob("fwspool-*.spool")), 60, "the first run's spool file")
    if pushing == "throughout":
        wait_for(lambda: fw_state(lp, 1) == "RUNNING", 60, "Firework 1 RUNNING")
    time.sleep(1)
    site.slurm.requeue(job)
    if pushing == "throughout":
        wait_for(lambda: fw_state(lp, 1) == "COMPLETED", 90, "the rerun COMPLETED")
        site.stop_sync()
    else:
        site.slurm.wait_for_state(job, {"COMPLETED"}, 90)
        site.fwspool("sync", "-l", str(site.launchpad_file), "--journal", str(site.journal))
    assert fw_state(lp, 1) == "COMPLETED" and fw_state(lp, 2) == "READY"
    launch = the_launch(lp, 1)
    assert [h["state"] for h in launch["state_history"]] == ["RESERVED", "RUNNING", "COMPLETED"]
    running = launch["state_history"][1]
    [interrupted] = running["interrupted_runs"]
    assert interrupted["exit"]["signal_name"] == "SIGTERM"
    starts = {
        json.loads(p)["restart_count"]: json.loads(p)["started_on"]
        for (p,) in site.events("SELECT payload FROM events WHERE type = 'started'")
    }
    assert set(starts) == {0, 1}
    # The times are the run that finished: its start, not the interrupted one's.
    assert _same(running["created_on"], starts[1]) and _same(interrupted["started_on"], starts[0])
    assert launch["runtime_secs"] < 30
    if pushing == "throughout":
        # The interrupted run's end was pushed before the rerun started: the inferred FIZZLED
        # was on the LaunchPad and was undone (fwspool.runs), not merely never written.
        [(exit_pushed,)] = site.events(
            "SELECT pushed_at FROM events WHERE type = 'exited' AND payload LIKE '%SIGTERM%'"
        )
        [(rerun_pushed,)] = site.events(
            "SELECT pushed_at FROM events WHERE type = 'started' AND json_extract(payload, '$.restart_count') = 1"
        )
        assert exit_pushed < rerun_pushed


def _same(a: Any, b: str) -> bool:
    from fwspool.events import as_utc

    return as_utc(a) == as_utc(b)


def kill_rlaunch(slurm: DevSlurm, job: str) -> None:
    """SIGKILL the job's `fwspool rlaunch` process; the job script then ends with 137."""
    marks = (f"SLURM_CONF={slurm.conf_path}".encode(), f"SLURM_JOB_ID={job}".encode())
    victims = []
    for pid, (_sid, env) in live_processes().items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if all(m in env for m in marks) and b"rlaunch" in cmdline and b"python" in cmdline:
            victims.append(pid)
    assert victims, f"no rlaunch process of job {job}"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)


def test_a_sigkilled_job_is_lost_then_its_late_real_result_still_wins(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    lp.add_wf(chain(sleeper("killed", 600), sleeper("child", 0)))
    site.start_sync()
    site.qlaunch("singleshot")
    job = reserved_job(lp, 1)
    wait_for(lambda: fw_state(lp, 1) == "RUNNING", 60, "Firework 1 RUNNING")
    kill_rlaunch(site.slurm, job)  # as the OOM killer does: SIGKILL, nothing is written
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the lost run FIZZLED")
    stored = the_launch(lp, 1)["action"]["stored_data"]
    assert stored["_fwspool_lost"]["batch_job_id"] == job
    assert stored["_message"].startswith(
        f"fwspool: the job vanished before the Firework completed: batch job {job} is no longer queued"
    )
    assert "is gone and the launch recorded no end: lost" in site.log()
    # The job's last records arrive late (an NFS cache): the real result wins.
    launch_dir = the_launch(lp, 1)["launch_dir"]
    data = json.dumps({"state": "COMPLETED", "action": {"stored_data": {"late": True}}})
    site.fwspool("emit", "--launch-dir", launch_dir, "completed", "--data", data)
    wait_for(lambda: fw_state(lp, 1) == "COMPLETED", 60, "the late result on the LaunchPad")
    assert the_launch(lp, 1)["action"]["stored_data"] == {"late": True}
    assert fw_state(lp, 2) == "READY"


def test_a_lost_job_forgotten_by_slurm_before_lost_after_still_gets_its_record(site: Site) -> None:
    """Slurm forgets a finished job ``MinJobAge`` after its end (30 s on this cluster, 300 s by
    default: as long as the default ``--lost-after``), and this one has no accounting. The job is
    asked as soon as it is seen gone; that record, kept, is the one the lost launch carries."""
    lp = make_launchpad(*launchpad_of(site))
    lp.add_wf(sleeper("killed", 600))
    site.start_sync("--lost-after", "3600")
    site.qlaunch("singleshot")
    job = reserved_job(lp, 1)
    wait_for(lambda: fw_state(lp, 1) == "RUNNING", 60, "Firework 1 RUNNING")
    kill_rlaunch(site.slurm, job)  # nothing is written: the launch will be lost
    kept = wait_for(
        lambda: site.events("SELECT type, payload FROM events WHERE type = 'job_ended'"),
        60,
        "the job's record kept as soon as the job is gone",
    )
    assert json.loads(kept[0][1])["batch_end"]["source"] == "scontrol show job", kept
    site.slurm.wait_for_state(job, {"GONE"}, 180)  # past MinJobAge: scontrol no longer knows it
    assert fw_state(lp, 1) == "RUNNING"  # not lost yet: --lost-after has not passed
    site.stop_sync()
    site.start_sync("--lost-after", "1")  # it has now
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the lost run FIZZLED")
    lost = the_launch(lp, 1)["action"]["stored_data"]["_fwspool_lost"]
    end = lost["batch_end"]
    assert (end["source"], end["state"]) == ("scontrol show job", "FAILED"), end
    assert end["exit_status"] == 128 + signal.SIGKILL, end  # the job script, its rlaunch SIGKILLed
    res = site.fwspool("status", "--json", "--no-check", "--journal", str(site.journal))
    [why] = [x["why"] for x in json.loads(res.stdout)["launches"]]
    assert (why["source"], why["state"]) == ("scontrol show job", "FAILED"), why


def test_a_job_that_cannot_load_its_firework_is_reported_not_left_reserved(site: Site) -> None:
    """pre_rocket drops PYTHONPATH, so the job cannot import the task class FW.json names."""
    from fw_tasks import ActionTask

    lp = make_launchpad(*launchpad_of(site))
    lp.add_wf(Firework(ActionTask(dynamic=False), name="unimportable"))
    broken = site.write_qadapter(pre_rocket="unset PYTHONPATH", name="broken_qadapter.yaml")
    site.qlaunch("singleshot", qadapter=broken, PYTHONPATH=str(TESTS_DIR))  # the login node imports it
    site.slurm.wait_for_state(reserved_job(lp, 1), {"COMPLETED", "FAILED", "GONE"}, 60)
    # A login node that cannot import the task class either: one line, not a traceback.
    res = site.fwspool("sync", "-l", str(site.launchpad_file), "--journal", str(site.journal), check=False)
    assert res.returncode == 78 and "cannot import fw_tasks" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and fw_state(lp, 1) == "RESERVED"
    site.start_sync(PYTHONPATH=str(TESTS_DIR))
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the failed start on the LaunchPad")
    message = the_launch(lp, 1)["action"]["stored_data"]["_message"]
    assert "exited with return code 65" in message and "PYTHONPATH" in message


def cron_command() -> str:
    """The README's cron line without its five schedule fields."""
    line = doc_line("*/5 * * * * ")
    return line.split(None, 5)[5]


def systemd_exec_start(home: Path) -> list[str]:
    line = doc_line("ExecStart=%h/fw/.venv/bin/fwspool sync --watch --interval")
    return shlex.split(line[len("ExecStart=") :].replace("%h", str(home)))


def test_the_readme_cron_and_systemd_lines_recover_a_job_reserved_just_before_an_outage(
    tmp_path: Path, mongo_server_factory: Any, db_name: str, slurm_cluster: DevSlurm
) -> None:
    server, lp, s = site_with_own_server(tmp_path, mongo_server_factory, db_name, slurm_cluster)
    lp.add_wf(chain(sleeper("before-outage", 1), sleeper("child", 0)))
    s.qlaunch("singleshot")
    server.stop()  # reserved and submitted, then the database goes down: no registry pull ever saw it
    job = reserved_job_offline(s)
    slurm_cluster.wait_for_state(job, {"COMPLETED", "GONE"}, 60)
    env = s.env()
    down = subprocess.run(
        ["bash", "-c", cron_command()], env=env, capture_output=True, text=True, timeout=120
    )
    assert down.returncode == 75, down
    log = (s.fw / "sync.log").read_text()
    assert "1 launch from the inbox" in log and "cannot reach MongoDB" in log
    server.start()
    daemon = subprocess.Popen(
        systemd_exec_start(s.home), cwd=s.fw, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        # The completion writes the parent, then its child (half a millisecond later): wait for both.
        both = ("COMPLETED", "READY")
        wait_for(
            lambda: (fw_state(lp, 1), fw_state(lp, 2)) == both, 60, "the Firework COMPLETED, its child READY"
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, out
    again = subprocess.run(
        ["bash", "-c", cron_command()], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, (s.fw / "sync.log").read_text()


def reserved_job_offline(site: Site) -> str:
    """The job id from the submission script's directory (the database is down: not from it)."""
    out = site.slurm.run("squeue", "-h", "-t", "all", "-o", "%i").stdout.split()
    assert out, "no job in the queue"
    return out[-1]
