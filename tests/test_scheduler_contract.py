"""The Scheduler interface (fwspool.scheduler), specified once and run against every implementation:
:class:`SlurmScheduler` on the private Slurm cluster, :class:`GridEngineScheduler` on the private Grid
Engine cell, and :class:`FlakyScheduler` wrapping each with no fault armed: queued, running, gone, and
how a gone job ended. Then what only one system has (Grid Engine's array tasks, its qacct words),
and the fault FlakyScheduler injects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fwspool.scheduler import (
    GridEngineScheduler,
    Scheduler,
    SchedulerQueryError,
    SlurmScheduler,
    grid_engine_end,
)
from fwspool.testing.devslurm import DevSlurm
from fwspool.testing.faults import FlakyScheduler
from fwspool.testing.gridengine import DevGridEngine


@dataclass
class Cluster:
    """One real batch system as the contract needs it: submit a script, wait, cancel; and the
    implementation, made with its query command replaced (a missing or broken one)."""

    name: str
    #: (script, directory, hold) -> job id
    submit: Callable[[Path, Path, bool], str]
    wait_running: Callable[[str], None]
    wait_gone: Callable[[str], None]
    cancel: Callable[[str], None]
    #: The command active_jobs runs, and the implementation with it replaced.
    query_command: str
    make: Callable[[str | None], Scheduler]
    #: How_ended's cause of a running job that was cancelled.
    cancelled_cause: str


def slurm(cluster: DevSlurm) -> Cluster:
    def submit(script: Path, cwd: Path, hold: bool) -> str:
        return cluster.sbatch(str(script), *(["--hold"] if hold else []), cwd=str(cwd))

    return Cluster(
        name="slurm",
        submit=submit,
        wait_running=lambda job: cluster.wait_for_state(job, {"RUNNING"}, 30) and None,
        wait_gone=lambda job: cluster.wait_for_state(job, {"COMPLETED", "FAILED", "CANCELLED"}, 30) and None,
        cancel=cluster.scancel,
        query_command="squeue",
        make=lambda squeue: SlurmScheduler(squeue=squeue or "squeue"),
        cancelled_cause="cancelled",
    )


def gridengine(cell: DevGridEngine) -> Cluster:
    def submit(script: Path, cwd: Path, hold: bool) -> str:
        return cell.qsub(str(script), *(["-h"] if hold else []), cwd=str(cwd))

    return Cluster(
        name="sge",
        submit=submit,
        wait_running=lambda job: cell.wait_for_state(job, {"r"}, 30) and None,
        wait_gone=lambda job: cell.wait_for_state(job, {"GONE"}, 30) and None,
        cancel=cell.qdel,
        query_command="qstat",
        make=lambda qstat: GridEngineScheduler(qstat=qstat or "qstat"),
        # qdel is a SIGKILL that Grid Engine's record cannot tell from any other (failed 100).
        cancelled_cause="killed",
    )


IMPLEMENTATIONS = ["slurm", "sge", "flaky_unarmed_slurm", "flaky_unarmed_sge"]


@pytest.fixture(params=IMPLEMENTATIONS)
def real(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    kind = str(request.param)
    if kind.endswith("slurm"):
        cluster = slurm(request.getfixturevalue("slurm_cluster"))
    else:
        cluster = gridengine(request.getfixturevalue("gridengine_cell"))
    if kind.startswith("flaky"):
        inner = cluster.make
        cluster.make = lambda command: FlakyScheduler(inner(command))
    yield cluster


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.sh"
    path.write_text(f"#!/bin/bash\n{body}\n")
    return path


def test_it_names_its_batch_system(real: Cluster) -> None:
    assert real.make(None).name == real.name


def test_queued_and_running_jobs_are_active_finished_and_unknown_ones_are_not(
    real: Cluster, tmp_path: Path
) -> None:
    running = real.submit(script(tmp_path, "long", "sleep 600"), tmp_path, False)
    held = real.submit(script(tmp_path, "held", "sleep 600"), tmp_path, True)
    try:
        real.wait_running(running)
        finished = real.submit(script(tmp_path, "quick", "true"), tmp_path, False)
        real.wait_gone(finished)
        scheduler = real.make(None)
        assert scheduler.active_jobs({running, held, finished, "999999"}) == {running, held}
        assert scheduler.active_jobs({finished}) == set()
    finally:
        real.cancel(running)
        real.cancel(held)


def test_a_gone_job_says_how_it_ended(real: Cluster, tmp_path: Path) -> None:
    failing = real.submit(script(tmp_path, "fail", "exit 3"), tmp_path, False)
    ok = real.submit(script(tmp_path, "ok", "true"), tmp_path, False)
    cancelled = real.submit(script(tmp_path, "cancel", "sleep 600"), tmp_path, False)
    real.wait_running(cancelled)
    real.cancel(cancelled)
    for job in (failing, ok, cancelled):
        real.wait_gone(job)
    scheduler = real.make(None)
    failed = scheduler.how_ended(failing)
    assert failed is not None and (failed.cause, failed.exit_status) == ("exited", 3)
    completed = scheduler.how_ended(ok)
    assert completed is not None and (completed.cause, completed.exit_status) == ("completed", 0)
    killed = scheduler.how_ended(cancelled)
    assert killed is not None and killed.cause == real.cancelled_cause
    assert failed.words and failed.source and killed.words != failed.words


def test_a_slurm_jobs_end_carries_the_last_lines_of_its_output(
    slurm_cluster: DevSlurm, tmp_path: Path
) -> None:
    """Slurm's record names the job's output files: their last 20 lines go with its end, so that
    nobody has to log in and find them (``lpad get_fws -d all`` shows them)."""
    cluster = slurm(slurm_cluster)
    body = "for i in $(seq 30); do echo out $i; done; echo the error >&2; exit 3"
    failed = cluster.submit(script(tmp_path, "noisy", body), tmp_path, False)
    cluster.wait_gone(failed)
    end = SlurmScheduler().how_ended(failed)
    assert end is not None
    assert (end.cause, end.state, end.reason, end.exit_status) == ("exited", "FAILED", "NonZeroExitCode", 3)
    tail = "\n".join([*(f"out {i}" for i in range(12, 31)), "the error"])
    assert end.stdout and end.stdout_tail == tail and end.stderr_tail == tail  # sbatch: one file for both
    # Unknown to slurmctld, and no accounting to ask: nothing said, nothing guessed.
    assert SlurmScheduler().how_ended("999999") is None


def test_no_record_of_a_job_says_nothing(real: Cluster) -> None:
    assert real.make(None).how_ended("999999") is None


def test_asking_about_no_job_asks_nothing(real: Cluster, tmp_path: Path) -> None:
    # No query command at that path: an empty question must not run it.
    assert real.make(str(tmp_path / "nothing-there")).active_jobs(set()) == set()


def test_the_query_command_missing_or_failing_is_a_query_error(real: Cluster, tmp_path: Path) -> None:
    with pytest.raises(SchedulerQueryError, match="not found"):
        real.make(str(tmp_path / "nothing-there")).active_jobs({"1"})
    broken = tmp_path / real.query_command
    broken.write_text("#!/bin/sh\necho 'error: unable to contact the controller' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(SchedulerQueryError, match="unable to contact"):
        real.make(str(broken)).active_jobs({"1"})
    assert real.make(None).active_jobs(set()) == set()


# -- Grid Engine's own ---------------------------------------------------------------------------


def test_grid_engine_array_tasks_are_asked_one_by_one(gridengine_cell: DevGridEngine, tmp_path: Path) -> None:
    path = script(tmp_path, "array", '[ "$SGE_TASK_ID" = 2 ] && exit 0; sleep 600')
    job = gridengine_cell.qsub(str(path), "-t", "1-3", cwd=str(tmp_path))
    try:
        scheduler = GridEngineScheduler()
        tasks = {f"{job}.{t}" for t in (1, 2, 3, 4)}
        # Task 2 ends at once; 1 and 3 run (or still wait, listed as a range): both are active.
        wait = gridengine_cell.wait_for_accounting
        wait(job)
        assert scheduler.active_jobs(tasks) == {f"{job}.1", f"{job}.3"}
        ended = scheduler.how_ended(f"{job}.2")
        assert ended is not None and ended.cause == "completed"
        assert scheduler.how_ended(f"{job}.1") is None  # still running: no record of it yet
    finally:
        gridengine_cell.qdel(job)


def test_grid_engine_qstat_answering_garbage_is_a_query_error(tmp_path: Path) -> None:
    garbage = tmp_path / "qstat"
    garbage.write_text("#!/bin/sh\necho '<job_info><queue_info>'\n")
    garbage.chmod(0o755)
    with pytest.raises(SchedulerQueryError, match="no readable XML"):
        GridEngineScheduler(qstat=str(garbage)).active_jobs({"1"})


@pytest.mark.parametrize(
    ("failed", "exit_status", "cause"),
    [
        ("0", "0", "completed"),
        ("0", "3", "exited"),
        ("37  : qmaster enforced h_rt limit", "137                  (Killed)", "walltime"),
        ("37  : qmaster enforced h_vmem limit", "137", "limit"),
        ("100 : assumedly after job", "137                  (Killed)", "killed"),
        ("25  : rescheduling", "0", "rescheduled"),
        ("26  : opening input/output file", "0", "failed to start"),
    ],
)
def test_grid_engine_failed_codes_in_fwspools_words(failed: str, exit_status: str, cause: str) -> None:
    end = grid_engine_end({"failed": failed, "exit_status": exit_status})
    assert end.cause == cause
    assert end.words.startswith(f"failed {failed.split()[0]}") and end.exit_status == int(
        exit_status.split()[0]
    )


# -- FlakyScheduler's fault -------------------------------------------------------------------------


def test_fail_next_fails_that_many_queries_then_answers(slurm_cluster: DevSlurm, tmp_path: Path) -> None:
    running = slurm_cluster.sbatch(str(script(tmp_path, "long", "sleep 600")), cwd=str(tmp_path))
    slurm_cluster.wait_for_state(running, {"RUNNING"}, 30)
    try:
        scheduler = FlakyScheduler(SlurmScheduler(), fail_next=2)
        with pytest.raises(SchedulerQueryError, match="injected fault"):
            scheduler.active_jobs({running})
        with pytest.raises(SchedulerQueryError, match="injected fault"):
            scheduler.how_ended(running)
        assert scheduler.active_jobs({running}) == {running}
        assert scheduler.queries == 3 and scheduler.fail_next == 0
    finally:
        slurm_cluster.scancel(running)
