"""The private Slurm cluster (fwspool.testing.devslurm) behaves as the batch tests rely on: real jobs, no mocks.

What Slurm does to a job script is what fwspool has to survive: scancel and requeue send SIGTERM
(then SIGKILL after KillWait), a requeued job runs again in the same directory with
SLURM_RESTART_COUNT set, and the job sees the submitter's environment (sbatch --export=ALL).
The walltime kill (TIMEOUT) is not tested here: slurmctld checks time limits only every 30 s, so
even ``--time=1`` takes 60-90 s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fwspool.testing.devslurm import DevSlurm, live_processes
from fwspool.testing.waiting import wait_for

FINISHED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "GONE"}


def write_script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return str(path)


def job_processes(conf_path: str, job_id: str) -> list[int]:
    """The live processes of one job of one cluster (the script and its children)."""
    marks = (f"SLURM_CONF={conf_path}".encode(), f"SLURM_JOB_ID={job_id}".encode())
    return [pid for pid, (_sid, env) in live_processes().items() if all(m in env for m in marks)]


def test_batch_job_runs_and_leaves_the_queue(slurm_cluster: DevSlurm, tmp_path: Path) -> None:
    script = write_script(tmp_path, "hello.sh", "echo hello > out.txt\n")
    job_id = slurm_cluster.sbatch(script, cwd=str(tmp_path))
    assert slurm_cluster.wait_for_state(job_id, {"COMPLETED"} | FINISHED, timeout=30) == "COMPLETED"
    assert (tmp_path / "out.txt").read_text() == "hello\n"
    # squeue lists only pending/running jobs; a finished one is shown with -t all until MinJobAge.
    assert slurm_cluster.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout == ""
    done = slurm_cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout
    assert done.strip() == "COMPLETED"
    assert slurm_cluster.job_state("999999") is None


def test_scancel_sends_sigterm_to_the_script(slurm_cluster: DevSlurm, tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "cancel.sh",
        "trap 'echo TERM > term.txt; exit 143' TERM\ntouch started\nsleep 600 &\nwait\n",
    )
    job_id = slurm_cluster.sbatch(script, cwd=str(tmp_path))
    slurm_cluster.wait_for_state(job_id, {"RUNNING"}, timeout=30)
    wait_for((tmp_path / "started").exists, 10, "script start")
    slurm_cluster.scancel(job_id)
    assert slurm_cluster.wait_for_state(job_id, FINISHED, timeout=30) == "CANCELLED"
    wait_for((tmp_path / "term.txt").exists, 10, "TERM trap")
    assert (tmp_path / "term.txt").read_text() == "TERM\n"
    # The script's children (sleep) get the signal too: nothing of the job is left.
    wait_for(lambda: not job_processes(slurm_cluster.conf_path, job_id), 10, "end of the job's processes")


def test_requeue_runs_the_script_again_in_the_same_directory(slurm_cluster: DevSlurm, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    script = write_script(
        tmp_path,
        "requeue.sh",
        'echo "${SLURM_RESTART_COUNT-unset} $PWD" >> runs.txt\n'
        "trap 'echo TERM >> term.txt; exit 143' TERM\nsleep 600 &\nwait\n",
    )
    job_id = slurm_cluster.sbatch(script, cwd=str(tmp_path))
    wait_for(runs.exists, 30, "first run")
    started = time.monotonic()
    slurm_cluster.requeue(job_id)
    wait_for(lambda: len(runs.read_text().splitlines()) == 2, 40, "second run")
    rerun_after = time.monotonic() - started
    try:
        assert runs.read_text().splitlines() == [f"unset {tmp_path}", f"1 {tmp_path}"]
        assert (tmp_path / "term.txt").read_text() == "TERM\n"
        assert slurm_cluster.job_state(job_id) == "RUNNING"
        assert rerun_after < 20  # Slurm waits out the old credential (cred_expire=5) first
    finally:
        slurm_cluster.scancel(job_id)
    slurm_cluster.wait_for_state(job_id, FINISHED, timeout=30)


def test_job_sees_the_submitters_environment(
    slurm_cluster: DevSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOO", "bar")
    script = write_script(tmp_path, "env.sh", "env -0 > env.bin\n")
    job_id = slurm_cluster.sbatch(script, cwd=str(tmp_path))
    assert slurm_cluster.wait_for_state(job_id, FINISHED, timeout=30) == "COMPLETED"
    items = (tmp_path / "env.bin").read_bytes().decode().split("\0")
    env = dict(item.split("=", 1) for item in items if "=" in item)
    assert env["FOO"] == "bar"
    assert env["HOME"] == os.environ["HOME"]
    assert env["PATH"] == os.environ["PATH"]
    assert env["SLURM_CONF"] == slurm_cluster.conf_path
    assert env["SLURM_JOB_ID"] == job_id
    assert "SLURM_RESTART_COUNT" not in env


def test_stop_leaves_nothing_and_a_new_cluster_starts_clean(tmp_path: Path) -> None:
    """A second cluster (beside the session's, if that one is up): stop() kills its jobs too."""
    base = tmp_path / "own"
    script = write_script(tmp_path, "sleep.sh", "sleep 600\n")
    with DevSlurm(str(base)) as cluster:
        job_id = cluster.sbatch(script, cwd=str(tmp_path))
        cluster.wait_for_state(job_id, {"RUNNING"}, timeout=30)
        wait_for(lambda: bool(job_processes(cluster.conf_path, job_id)), 10, "job processes")
    assert not cluster.running
    assert not job_processes(cluster.conf_path, job_id)
    assert not [
        pid for pid, (_s, env) in live_processes().items() if f"FWSPOOL_DEVSLURM={base}".encode() in env
    ]
    cluster.stop()  # idempotent
    with DevSlurm(str(base)) as again:
        assert again.run("squeue", "-h", "-t", "all").stdout == ""  # no state carried over
        job_id = again.sbatch(write_script(tmp_path, "ok.sh", "true\n"), cwd=str(tmp_path))
        assert again.wait_for_state(job_id, FINISHED, timeout=30) == "COMPLETED"
