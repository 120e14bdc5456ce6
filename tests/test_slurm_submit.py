"""`fwspool sync --watch --submit`, the one login-node daemon, on the real submission path: the
systemd unit's ExecStart line of docs/pilots.md, a real Slurm, a database stopped in the middle."""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path
from typing import Any

from fireworks import Firework, ScriptTask, Workflow
from test_slurm_path import fw_state, launchpad_of, site_with_own_server, sleeper

from fwspool.testing.devslurm import DevSlurm
from fwspool.testing.docs import doc_line
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import Site
from fwspool.testing.waiting import wait_for


def exec_start() -> str:
    """The systemd unit's ExecStart line in docs/pilots.md ("One daemon"), verbatim."""
    return doc_line("ExecStart=%h/fw/.venv/bin/fwspool sync --watch --submit")[len("ExecStart=") :]


#: What the test adds after the unit's words: a short interval, a quick lost-job verdict, and
#: the journal the Site reads.
TEST_ONLY = ("--interval", "0.5", "--lost-after", "3")


def start_unit(site: Site, line: str, *extra: str) -> None:
    """The unit's command as systemd runs it (%h is the home directory), logging to sync.log."""
    words = shlex.split(line.replace("%h", str(site.home)))
    site.start_daemon([*words, *TEST_ONLY, "--journal", str(site.journal), *extra], cwd=site.home)


def queue(slurm: DevSlurm) -> list[str]:
    return slurm.run("squeue", "--noheader", "--format=%i").stdout.split()


def test_the_unit_line_runs_a_workflow_from_an_empty_queue_through_a_database_outage(
    tmp_path: Path, mongo_server_factory: Any, db_name: str, slurm_cluster: DevSlurm
) -> None:
    server, lp, site = site_with_own_server(tmp_path, mongo_server_factory, db_name, slurm_cluster)
    steps = [
        Firework(ScriptTask.from_str("echo one > step.txt"), name="step1", fw_id=1),
        sleeper("step2", 8, fw_id=2),
        Firework(ScriptTask.from_str("echo three > step.txt"), name="step3", fw_id=3),
    ]
    lp.add_wf(Workflow(steps, {1: [2], 2: [3]}))
    assert queue(slurm_cluster) == []
    start_unit(site, exec_start())
    try:
        wait_for(lambda: fw_state(lp, 1) == "COMPLETED", 90, "step 1 COMPLETED")
        job = str(wait_for(lambda: lp.get_reservation_id_from_fw_id(2), 60, "step 2 submitted"))
        slurm_cluster.wait_for_state(job, {"RUNNING"}, 60)
        server.stop()  # step 2 runs and ends while the database is down
        wait_for(
            lambda: site.events("SELECT 1 FROM events WHERE type = 'exited' AND fw_id = 2"),
            60,
            "step 2's end in the journal while the database is down",
        )
        wait_for(lambda: "submit: cannot reach MongoDB" in site.log(), 90, "the submitter's outage line")
        assert site.daemon is not None and site.daemon.poll() is None, site.log()
        server.start()
        wait_for(lambda: fw_state(lp, 3) == "COMPLETED", 120, "step 3 COMPLETED")
    finally:
        site.stop_sync()
        slurm_cluster.run("scancel", "--user=root", check=False)
    assert lp.workflows.find_one({"nodes": 1})["state"] == "COMPLETED"
    log = site.log()
    assert "submits (--pack 10, at most 4 jobs queued)" in log
    # One line per failed round, never a traceback.
    assert "Traceback" not in log
    outage = [ln for ln in log.splitlines() if "submit: cannot reach MongoDB" in ln]
    assert outage and all("retrying in" in ln for ln in outage)
    status = site.fwspool("status", "--json", "--no-check", "--journal", str(site.journal))
    submitted = json.loads(status.stdout)["submitted"]
    assert (submitted["jobs"], submitted["fireworks"]) == (3, 3)
    assert [j["fw_ids"] for j in submitted["recent"]] == [[1], [2], [3]]
    assert {j["batch_job_id"] for j in submitted["recent"]} == {
        str(lp.get_reservation_id_from_fw_id(i)) for i in (1, 2, 3)
    }
    table = site.fwspool("status", "--no-check", "--journal", str(site.journal)).stdout
    assert "submitted by the daemon: 3 jobs, 3 Fireworks" in table
    [step3] = [p for p in site.runs.rglob("step.txt") if p.read_text() == "three\n"]


def test_a_refused_submission_is_one_line_and_retried(site: Site) -> None:
    """Slurm refuses the job (no such partition): one line per try, backing off, reservations
    handed back each time; with a good queue adapter (the daemon restarted) it runs."""
    lp = make_launchpad(*launchpad_of(site))
    slurm = site.slurm
    lp.add_wf(sleeper("refused", 0, fw_id=1))
    bad = site.write_qadapter(name="bad_qadapter.yaml")
    bad.write_text(bad.read_text().replace("queue: debug", "queue: nosuchpartition"))
    line = exec_start().replace("my_qadapter.yaml", "bad_qadapter.yaml")
    start_unit(site, line)
    try:
        wait_for(lambda: site.log().count("submit: ") >= 2, 60, "two failed rounds")
        assert fw_state(lp, 1) == "READY"
        assert queue(slurm) == []
    finally:
        site.daemon.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        site.daemon.wait(60)  # type: ignore[union-attr]
        site.daemon = None
    failures = [ln for ln in site.log().splitlines() if "submit: " in ln]
    assert all("handed back" in ln and "retrying in" in ln for ln in failures), failures
    assert all("the queue said:" in ln and "nosuchpartition" in ln for ln in failures), failures
    assert "Traceback" not in site.log() and "ERROR" not in site.log()  # FireWorks' error block folded in
    status = json.loads(site.fwspool("status", "--json", "--no-check", "--journal", str(site.journal)).stdout)
    assert status["submitted"]["jobs"] == 0 and "handed back" in status["submitted"]["last_failure"]
    start_unit(site, exec_start())
    try:
        wait_for(lambda: fw_state(lp, 1) == "COMPLETED", 90, "the Firework COMPLETED")
    finally:
        site.stop_sync()


def test_a_workflow_locked_for_good_neither_holds_up_the_daemon_nor_is_reserved_until_unlocked(
    site: Site,
) -> None:
    """A process killed inside FireWorks' WFLock leaves a workflow locked. FireWorks'
    reservation would wait 300 s on it in every round; the daemon leaves that workflow's
    Firework READY, submits the others, and takes it once `lpad admin unlock` frees it."""
    from fireworks.core.launchpad import WFLock

    from fwspool.testing.commands import fireworks_command

    lp = make_launchpad(*launchpad_of(site))
    lp.add_wf(sleeper("locked", 0, fw_id=1))
    lp.add_wf(sleeper("free", 0, fw_id=2))
    WFLock(lp, 1).__enter__()  # and the process that took it dies: no __exit__
    start_unit(site, exec_start())
    try:
        wait_for(lambda: fw_state(lp, 2) == "COMPLETED", 90, "the free Firework COMPLETED")
        assert fw_state(lp, 1) == "READY"
        assert "FireWorks' lock" not in site.log()  # not yet past WFLOCK_EXPIRATION_SECS
        unlock = [fireworks_command("lpad"), "-l", str(site.launchpad_file), "admin", "unlock", "-i", "1"]
        res = site.as_user(unlock)
        assert res.returncode == 0, res.stderr
        wait_for(lambda: fw_state(lp, 1) == "COMPLETED", 90, "the unlocked Firework COMPLETED")
    finally:
        site.stop_sync()
    assert "Traceback" not in site.log()
