"""The real submission path on Grid Engine: FireWorks' own `qlaunch -r` (`_fw_q_type: SGE`), the
private Grid Engine cell, `fwspool sync --watch`.

Every test submits with the SGE queue adapter and job template of docs/batch-systems.md ("Batch systems"),
word for word but for the home directory, with the README's `rocket_launch` line; Grid Engine runs the jobs.
The cell sends SIGTERM before `-notify`'s kill (NOTIFY_KILL=TERM), as under Slurm. The LaunchPad is
checked at the end, as a user would check it; how Grid Engine says a job ended comes from `qacct`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, PyTask, ScriptTask, Workflow

from fwspool.rlaunch import SchedulerJob
from fwspool.testing.docs import doc_line
from fwspool.testing.gridengine import DevGridEngine
from fwspool.testing.gridengine_site import GridEngineSite, readme_sge_files
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.waiting import wait_for

ROCKET_LAUNCH = doc_line("rocket_launch: $HOME/fw/.venv/bin/fwspool")
QADAPTER, TEMPLATE = readme_sge_files()


def make_site(tmp_path: Path, uri: str, db: str, cell: DevGridEngine) -> GridEngineSite:
    return GridEngineSite(tmp_path, uri, db, cell, ROCKET_LAUNCH, QADAPTER, TEMPLATE)


@pytest.fixture
def site(
    tmp_path: Path, mongo_uri: str, db_name: str, gridengine_cell: DevGridEngine
) -> Iterator[GridEngineSite]:
    s = make_site(tmp_path, mongo_uri, db_name, gridengine_cell)
    yield s
    s.stop_sync()
    gridengine_cell.run("qdel", "-u", "root", check=False)


def lp_of(site: GridEngineSite, uri: str, db: str) -> Any:
    return make_launchpad(uri, db)


def fw_state(lp: Any, fw_id: int) -> str:
    return str(lp.fireworks.find_one({"fw_id": fw_id}, {"state": 1})["state"])


def the_launch(lp: Any, fw_id: int) -> dict[str, Any]:
    fw = lp.fireworks.find_one({"fw_id": fw_id})
    return dict(lp.launches.find_one({"launch_id": fw["launches"][-1]}))


def reserved_job(lp: Any, fw_id: int) -> str:
    return str(wait_for(lambda: lp.get_reservation_id_from_fw_id(fw_id), 30, f"reservation of {fw_id}"))


def sleeper(name: str, seconds: float, **spec: Any) -> Firework:
    return Firework(PyTask(func="time.sleep", args=[seconds]), name=name, spec=spec)


def signal_running_job(site: GridEngineSite, lp: Any, name: str, sig: int, *sync_args: str) -> str:
    """Run Firework ``name`` (a long sleeper) in a job under ``sync --watch SYNC_ARGS``, then send
    ``sig`` to the job's process group (its script and everything in it); returns the job id."""
    lp.add_wf(sleeper(name, 600))
    site.start_sync(*sync_args)
    site.qlaunch("singleshot")
    job = reserved_job(lp, 1)
    wait_for(lambda: fw_state(lp, 1) == "RUNNING", 60, "Firework 1 RUNNING")
    job_pid = site.cell.job_pid(job)
    assert job_pid is not None
    os.killpg(job_pid, sig)
    return job


def started_events(site: GridEngineSite) -> list[dict[str, Any]]:
    return [json.loads(p) for (p,) in site.events("SELECT payload FROM events WHERE type = 'started'")]


# -- the compute side's view of the job -----------------------------------------------------------


def test_rlaunch_reads_grid_engine_s_job_task_and_restarted_flag() -> None:
    assert SchedulerJob.from_environ(
        {"JOB_ID": "12", "SGE_TASK_ID": "undefined", "RESTARTED": "0"}
    ) == SchedulerJob("12", "sge", None, False)
    assert SchedulerJob.from_environ({"JOB_ID": "12", "SGE_TASK_ID": "3", "RESTARTED": "1"}) == SchedulerJob(
        "12.3", "sge", None, True
    )
    # Slurm's count says the same: a restart or not.
    assert SchedulerJob.from_environ({"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "2"}) == SchedulerJob(
        "7", "slurm", 2, True
    )


# -- the end-to-end paths -------------------------------------------------------------------------


def test_a_chain_advances_through_a_database_outage_and_the_job_runs_in_its_launch_directory(
    tmp_path: Path, mongo_server_factory: Any, db_name: str, gridengine_cell: DevGridEngine
) -> None:
    server = mongo_server_factory()
    lp = make_launchpad(server.uri, db_name)
    s = make_site(tmp_path, server.uri, db_name, gridengine_cell)
    first = Firework(ScriptTask.from_str("echo one > step.txt"), name="step1", fw_id=1)
    second = Firework([PyTask(func="time.sleep", args=[4])], name="step2", fw_id=2)
    lp.add_wf(Workflow([first, second], {1: [2]}))
    s.start_sync()
    try:
        for fw_id in (1, 2):
            d = s.runs / f"step{fw_id}"
            d.mkdir()
            s.qlaunch("singleshot", cwd=d)
            job = reserved_job(lp, fw_id)
            if fw_id == 2:
                gridengine_cell.wait_for_state(job, {"r"}, 30)
                server.stop()  # the job runs and ends while the database is down
                gridengine_cell.wait_for_state(job, {"GONE"}, 60)
                wait_for(
                    lambda: s.events("SELECT 1 FROM events WHERE type = 'exited' AND fw_id = 2"),
                    30,
                    "step 2's end in the journal while the database is down",
                )
                # A push blocks up to its 5 s server-selection timeout: see the outage first.
                wait_for(lambda: "cannot reach MongoDB" in s.log(), 30, "the pusher to see the outage")
                server.start()
            wait_for(lambda fw_id=fw_id: fw_state(lp, fw_id) == "COMPLETED", 90, f"step {fw_id} COMPLETED")
    finally:
        s.stop_sync()
        gridengine_cell.run("qdel", "-u", "root", check=False)
    started = sorted(started_events(s), key=lambda st: st["started_on"])
    assert [st["batch_system"] for st in started] == ["sge", "sge"]
    assert [st["restarted"] for st in started] == [False, False]
    assert [st["batch_job_id"] for st in started] == [lp.get_reservation_id_from_fw_id(i) for i in (1, 2)]
    # -cwd: FireWorks' relative -o FW_job.out is in the launch directory, not the home directory.
    assert (s.runs / "step1" / "FW_job.out").exists() and not (s.home / "FW_job.out").exists()
    assert (s.runs / "step1" / "step.txt").read_text() == "one\n"


@pytest.mark.parametrize("notify", [True, False], ids=["notify", "no_notify"])
def test_h_rt_walltime_is_recorded_with_notify_and_found_lost_as_walltime_without(
    site: GridEngineSite, mongo_uri: str, db_name: str, notify: bool
) -> None:
    lp = lp_of(site, mongo_uri, db_name)
    # (The job's clock starts with its shell: fwspool rlaunch must have started by then, on a
    # loaded machine too, or it dies of the signal before its handler is there.)
    queue = {"walltime": "00:00:12"} if notify else {"walltime": "00:00:12", "sge_options": "-r y"}
    lp.add_wf(sleeper("long", 600, _queueadapter=queue))
    site.start_sync()
    site.qlaunch("singleshot")
    job = reserved_job(lp, 1)
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the walltime kill on the LaunchPad", every=0.5)
    stored = the_launch(lp, 1)["action"]["stored_data"]
    if notify:
        # -notify: SIGTERM (NOTIFY_KILL=TERM) 10 s before the kill; fwspool rlaunch records it.
        # (The job's shell dies of the same SIGTERM: qacct's failed code then races the qmaster.)
        exit_facts = stored["_fwspool_exit"]
        assert exit_facts["signal_name"] == "SIGTERM" and "h_rt" in exit_facts["meaning"]
        assert "_fwspool_lost" not in stored
    else:
        # A hard h_rt is SIGKILL: nothing is written; qacct says why.
        [record] = site.cell.wait_for_accounting(job)
        assert record["failed"].startswith("37") and "h_rt" in record["failed"]
        end = stored["_fwspool_lost"]["batch_end"]
        assert (end["cause"], end["failed"], end["exit_status"], end["source"]) == (
            "walltime",
            37,
            137,
            "qacct -j",
        )
        assert "walltime (qacct -j: failed 37 : qmaster enforced h_rt" in stored["_message"]
        text = site.fwspool("status", "--no-check", "--journal", str(site.journal)).stdout
        assert "why: walltime, says qacct -j; exit code 137" in text, text


def test_qdel_of_a_running_job_fizzles_it_and_of_a_pending_one_releases_it(
    site: GridEngineSite, mongo_uri: str, db_name: str
) -> None:
    lp = lp_of(site, mongo_uri, db_name)
    lp.add_wf(sleeper("running", 600))
    lp.add_wf(sleeper("pending", 1))
    # Held from submission (-h): the race-free way to have a pending job to cancel.
    held = site.fw / "held_qadapter.yaml"
    held.write_text(site.qadapter.read_text().replace("sge_options: -notify -r y", "sge_options: -h"))
    site.start_sync()
    for name, qadapter in (("a", site.qadapter), ("b", held)):
        (site.runs / name).mkdir()
        site.qlaunch("singleshot", cwd=site.runs / name, qadapter=qadapter)
    running_job, pending_job = reserved_job(lp, 1), reserved_job(lp, 2)
    wait_for(lambda: fw_state(lp, 1) == "RUNNING", 60, "Firework 1 RUNNING")
    assert site.cell.job_state(pending_job) == "hqw"
    site.cell.qdel(pending_job)
    site.cell.qdel(running_job)
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the deleted running job FIZZLED")
    exit_facts = the_launch(lp, 1)["action"]["stored_data"]["_fwspool_exit"]
    assert exit_facts["signal_name"] == "SIGTERM" and "qdel" in exit_facts["meaning"]
    # Once the job is gone, qacct's record of it is added to the launch.
    wait_for(
        lambda: "batch_end" in the_launch(lp, 1)["action"]["stored_data"]["_fwspool_exit"],
        60,
        "Grid Engine's record of the deleted job on the LaunchPad",
    )
    end = the_launch(lp, 1)["action"]["stored_data"]["_fwspool_exit"]["batch_end"]
    # The job's shell dies of the same SIGTERM (failed 0, exit 143), unless the kill that follows
    # -notify's warning comes first (failed 100, exit 137): Grid Engine's words either way.
    assert end["source"] == "qacct -j" and (end["failed"], end["exit_status"]) in {(0, 143), (100, 137)}, end
    # The pending one never started: handed back, READY again, and the next job takes it.
    wait_for(lambda: fw_state(lp, 2) == "READY", 60, "the deleted pending job's Firework READY")
    assert f"batch job {pending_job}" in site.log() and "reservation is released" in site.log()
    (site.runs / "c").mkdir()
    site.qlaunch("singleshot", cwd=site.runs / "c")
    wait_for(lambda: fw_state(lp, 2) == "COMPLETED", 60, "the released Firework COMPLETED by a new job")


def test_kill_9_of_the_job_is_lost_and_grid_engine_says_killed(
    site: GridEngineSite, mongo_uri: str, db_name: str
) -> None:
    lp = lp_of(site, mongo_uri, db_name)
    job = signal_running_job(site, lp, "killed", signal.SIGKILL)
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the lost run FIZZLED")
    stored = the_launch(lp, 1)["action"]["stored_data"]
    lost = stored["_fwspool_lost"]
    assert lost["batch_job_id"] == job and lost["batch_system"] == "sge"
    # qdel and kill -9 look the same to Grid Engine (failed 100, exit 137): "killed", no more.
    assert (lost["batch_end"]["cause"], lost["batch_end"]["failed"], lost["batch_end"]["exit_status"]) == (
        "killed",
        100,
        137,
    )
    assert "is gone and the launch recorded no end: lost (killed: qacct -j says failed 100" in site.log()
    # fwspool status says it in the same words.
    res = site.fwspool("status", "--json", "--no-check", "--journal", str(site.journal))
    [mine] = [x for x in json.loads(res.stdout)["launches"] if x["fw_id"] == 1]
    assert mine["outcome"] == "lost", mine
    assert "killed (qacct -j: failed 100 : assumedly after job, exit_status 137)" in mine["outcome_detail"]


def test_a_lost_job_s_qacct_record_is_kept_when_first_seen_gone_and_used_when_qacct_fails_later(
    site: GridEngineSite, mongo_uri: str, db_name: str
) -> None:
    """As on Slurm, the job of a started launch is asked how it ended (``qacct -j``) as soon as
    it is seen gone, and the record kept; at ``--lost-after`` the accounting file is gone
    (rotated away), ``qacct`` fails, and the lost launch carries the record kept."""
    lp = lp_of(site, mongo_uri, db_name)
    job = signal_running_job(site, lp, "killed", signal.SIGKILL, "--lost-after", "3600")
    kept = wait_for(
        lambda: site.events("SELECT payload FROM events WHERE type = 'job_ended'"),
        60,
        "the job's qacct record kept as soon as the job is gone",
    )
    end = json.loads(kept[0][0])["batch_end"]
    assert (end["source"], end["cause"], end["failed"]) == ("qacct -j", "killed", 100), end
    assert fw_state(lp, 1) == "RUNNING"  # not lost yet: --lost-after has not passed
    site.stop_sync()
    accounting = os.path.join(site.cell.common, "accounting")
    os.replace(accounting, accounting + ".rotated")
    try:
        site.start_sync("--lost-after", "1")
        wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the lost run FIZZLED")
    finally:
        os.replace(accounting + ".rotated", accounting)
    assert the_launch(lp, 1)["action"]["stored_data"]["_fwspool_lost"]["batch_end"] == end
    assert f"cannot ask sge how job {job} ended" in site.log()


def test_qmod_rj_reruns_the_job_as_the_same_launch_which_ends_as_the_run_that_finished(
    site: GridEngineSite, mongo_uri: str, db_name: str
) -> None:
    lp = lp_of(site, mongo_uri, db_name)
    first, child = sleeper("rerun", 6), sleeper("child", 0)
    first.fw_id, child.fw_id = 1, 2
    lp.add_wf(Workflow([first, child], {1: [2]}))
    site.start_sync()
    site.qlaunch("singleshot")
    job = reserved_job(lp, 1)
    wait_for(lambda: fw_state(lp, 1) == "RUNNING", 60, "Firework 1 RUNNING")
    time.sleep(1)
    res = site.cell.run("qmod", "-rj", job)
    assert "not rerunable" not in res.stdout + res.stderr, res  # (rc is 0 either way)
    wait_for(lambda: fw_state(lp, 1) == "COMPLETED", 90, "the rerun COMPLETED", every=0.5)
    assert fw_state(lp, 2) == "READY"
    launch = the_launch(lp, 1)
    assert [h["state"] for h in launch["state_history"]] == ["RESERVED", "RUNNING", "COMPLETED"]
    events = site.events("SELECT event_id, type, occurred_at, payload FROM events ORDER BY occurred_at")
    interrupted_runs = launch["state_history"][1].get("interrupted_runs")
    assert interrupted_runs and len(interrupted_runs) == 1, (launch, events)
    interrupted = interrupted_runs[0]
    assert interrupted["exit"]["signal_name"] == "SIGTERM"
    runs = sorted(started_events(site), key=lambda st: st["started_on"])
    # The same job id twice; RESTARTED tells the rerun (a flag, not a count: each run has its own writer).
    assert [(st["batch_job_id"], st["restarted"]) for st in runs] == [(job, False), (job, True)]
    # Grid Engine's record: the rescheduling, then the rerun's own end (written as the job ends).
    wait_for(lambda: len(site.cell.accounting(job)) == 2, 30, "the rerun's accounting record")
    assert [r["failed"].split()[0] for r in site.cell.accounting(job)] == ["25", "0"]


def test_s_rt_is_recorded_as_grid_engine_s_soft_walltime(
    site: GridEngineSite, mongo_uri: str, db_name: str
) -> None:
    lp = lp_of(site, mongo_uri, db_name)
    lp.add_wf(sleeper("soft", 600, _queueadapter={"sge_options": "-r y -l s_rt=0:0:10"}))
    site.start_sync()
    site.qlaunch("singleshot")
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the soft walltime on the LaunchPad")
    exit_facts = the_launch(lp, 1)["action"]["stored_data"]["_fwspool_exit"]
    assert exit_facts["signal_name"] == "SIGUSR1"
    assert exit_facts["meaning"] == "Grid Engine's soft walltime (s_rt) passed"


def test_a_packed_job_s_walltime_ends_it_inside_the_pack(
    site: GridEngineSite, mongo_uri: str, db_name: str
) -> None:
    lp = lp_of(site, mongo_uri, db_name)
    short = {"walltime": "00:00:20"}
    for fw in (sleeper("done", 1, _queueadapter=short), sleeper("cut", 600, _queueadapter=short)):
        lp.add_wf(fw)
    lp.add_wf(sleeper("rest", 0, _queueadapter=short))
    site.start_sync()
    res = subprocess.run(
        [
            str(site.fw / ".venv" / "bin" / "fwspool"),
            "qlaunch",
            "-r",
            "-l",
            str(site.launchpad_file),
            "-w",
            str(site.fw / "my_fworker.yaml"),
            "-q",
            str(site.qadapter),
            "--pack",
            "3",
            "--margin",
            "0",
            "singleshot",
        ],
        cwd=site.runs,
        env=site.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for(lambda: fw_state(lp, 2) == "FIZZLED", 60, "the Firework the walltime cut FIZZLED", every=0.5)
    assert fw_state(lp, 1) == "COMPLETED"
    exit_facts = the_launch(lp, 2)["action"]["stored_data"]["_fwspool_exit"]
    assert exit_facts["signal_name"] == "SIGTERM" and "h_rt" in exit_facts["meaning"]
    # The one not started is handed back when the job ends (the block releases it).
    wait_for(lambda: fw_state(lp, 3) == "READY", 60, "the Firework the pack never started READY")


# -- fwspool doctor on a Grid Engine site -----------------------------------------------------------


def doctor_lines(site: GridEngineSite, qadapter: Path, **env: str) -> tuple[int, dict[str, str]]:
    """The documented doctor line (docs/commands.md, with this queue adapter): its exit code, and each check's line by name."""
    line = doc_line("$HOME/fw/.venv/bin/fwspool doctor").replace("$HOME/fw/my_qadapter.yaml", str(qadapter))
    res = subprocess.run(
        ["bash", "-c", line], cwd=site.fw, env=site.env(**env), capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in res.stderr, res.stderr
    found = {}
    for out in res.stdout.splitlines():
        if out[:2] in ("✓ ", "✗ ", "- "):
            found[out[2:].split(":", 1)[0].split(" /", 1)[0]] = out
    return res.returncode, found


def test_doctor_passes_the_readme_sge_site_and_wants_cwd_from_the_template_or_the_cell(
    site: GridEngineSite, mongo_uri: str, db_name: str, tmp_path: Path
) -> None:
    make_launchpad(mongo_uri, db_name).connection.close()
    code, checks = doctor_lines(site, site.qadapter)
    assert code == 0, checks
    assert (
        checks["job directory (-cwd)"]
        == f"✓ job directory (-cwd): the job template {site.fw}/SGE_template.txt has -cwd"
    )
    assert checks["batch system (sge)"].startswith(
        "✓ batch system (sge): qstat lists 0 of your jobs; queues: all.q"
    )
    # FireWorks' own SGE template has no -cwd: the cell's default options must give it.
    default_template = site.fw / "default_template_qadapter.yaml"
    default_template.write_text(
        "\n".join(
            ln for ln in site.qadapter.read_text().splitlines() if not ln.startswith("_fw_template_file")
        )
    )
    code, checks = doctor_lines(site, default_template)
    assert code == 0, checks
    sge_request = f"{site.cell.root}/{site.cell.cell}/common/sge_request"
    assert checks["job directory (-cwd)"].endswith(f"but {sge_request} gives every job -cwd")
    # A cell without that default: FW_job.out would land in the home directory. One ✗ line, exit 1.
    empty = tmp_path / "other-cell"
    (empty / "default" / "common").mkdir(parents=True)
    (empty / "default" / "common" / "sge_request").write_text("# no defaults\n-j y\n")
    code, checks = doctor_lines(site, default_template, SGE_ROOT=str(empty), SGE_CELL="default")
    assert code == 1
    line = checks["job directory (-cwd)"]
    assert (
        line.startswith("✗ job directory (-cwd): neither the job template ")
        and "FW_job.out lands there" in line
    )
    assert line.endswith(
        "; fix: add the line `#$ -cwd` to the job template (docs/batch-systems.md: SGE_template.txt)"
    )


def test_sigusr2_is_recorded_as_grid_engine_s_notify_warning(
    site: GridEngineSite, mongo_uri: str, db_name: str
) -> None:
    """A cell with the default NOTIFY_KILL sends SIGUSR2 to the job's process group before the
    kill of h_rt or qdel (this cell sends SIGTERM: the signal is sent here as that cell would)."""
    lp = lp_of(site, mongo_uri, db_name)
    job = signal_running_job(site, lp, "warned", signal.SIGUSR2)
    wait_for(lambda: fw_state(lp, 1) == "FIZZLED", 60, "the warned job FIZZLED")
    exit_facts = the_launch(lp, 1)["action"]["stored_data"]["_fwspool_exit"]
    assert exit_facts["signal_name"] == "SIGUSR2"
    assert (
        exit_facts["meaning"] == "Grid Engine's -notify warning: a kill (h_rt, qdel) or a suspension follows"
    )
    # The job's shell ignored it (the documented template): the script went on and ended on its own.
    site.cell.wait_for_state(job, {"GONE"}, 30)
    [record] = site.cell.wait_for_accounting(job)
    assert record["failed"].split()[0] == "0", record
