"""The BatchSystem interface (fwspool.batch), specified once and run against every implementation:
:class:`SlurmBatch` on the private Slurm cluster, and :class:`FlakyBatch` wrapping it with no
fault armed. Then the fault FlakyBatch injects, on its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fwspool.batch import UNKNOWN_JOB, BatchQueryError, BatchSystem, FlakyBatch, SlurmBatch, job_record
from fwspool.devslurm import DevSlurm

#: Each implementation, made from the ``squeue`` it runs.
IMPLEMENTATIONS: dict[str, Callable[[str], BatchSystem]] = {
    "slurm": lambda squeue: SlurmBatch(squeue=squeue),
    "flaky_unarmed": lambda squeue: FlakyBatch(SlurmBatch(squeue=squeue)),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def make_batch(request: pytest.FixtureRequest) -> Callable[..., BatchSystem]:
    def make(squeue: str = "squeue") -> BatchSystem:
        return IMPLEMENTATIONS[request.param](squeue)

    return make


def job(slurm: DevSlurm, tmp_path: Path, body: str, state: str) -> str:
    script = tmp_path / f"job-{state.lower()}.sh"
    script.write_text(f"#!/bin/bash\n{body}\n")
    job_id = slurm.sbatch(str(script), cwd=str(tmp_path))
    slurm.wait_for_state(job_id, {state}, 30)
    return job_id


def test_it_names_its_batch_system(make_batch: Callable[..., BatchSystem]) -> None:
    assert make_batch().name == "slurm"


def test_a_running_job_is_active_and_a_finished_or_unknown_one_is_not(
    make_batch: Callable[..., BatchSystem], slurm_cluster: DevSlurm, tmp_path: Path
) -> None:
    running = job(slurm_cluster, tmp_path, "sleep 600", "RUNNING")
    try:
        finished = job(slurm_cluster, tmp_path, "true", "COMPLETED")
        batch = make_batch()
        assert batch.active_jobs({running, finished, "999999"}) == {running}
        assert batch.active_jobs({finished}) == set()
    finally:
        slurm_cluster.scancel(running)


def test_the_record_of_an_ended_job_says_why_in_slurms_terms(
    make_batch: Callable[..., BatchSystem], slurm_cluster: DevSlurm, tmp_path: Path
) -> None:
    body = "for i in $(seq 30); do echo out $i; done; echo the error >&2; exit 3"
    failed = job(slurm_cluster, tmp_path, body, "FAILED")
    out = str(tmp_path / f"slurm-{failed}.out")
    assert job_record(make_batch(), failed) == {
        "why": "failed: non-zero exit code or other failure",
        "state": "FAILED",
        "reason": "NonZeroExitCode",
        "exit_code": "3:0",
        # sbatch's default: stdout and stderr in one file. Its last 20 lines.
        "stdout": out,
        "stdout_tail": "\n".join([*(f"out {i}" for i in range(12, 31)), "the error"]),
        "stderr": out,
        "stderr_tail": "\n".join([*(f"out {i}" for i in range(12, 31)), "the error"]),
        "source": "scontrol show job",
    }
    # Unknown to slurmctld, and no accounting to ask: said so, not guessed.
    assert job_record(make_batch(), "999999") == {"why": UNKNOWN_JOB, "source": "scontrol show job, sacct"}


def test_asking_about_no_job_asks_nothing(make_batch: Callable[..., BatchSystem], tmp_path: Path) -> None:
    # No squeue at that path: an empty question must not run it.
    assert make_batch(squeue=str(tmp_path / "no-squeue")).active_jobs(set()) == set()


def test_squeue_missing_or_failing_is_a_query_error(
    make_batch: Callable[..., BatchSystem], slurm_cluster: DevSlurm, tmp_path: Path
) -> None:
    with pytest.raises(BatchQueryError, match="not found"):
        make_batch(squeue=str(tmp_path / "no-squeue")).active_jobs({"1"})
    broken = tmp_path / "squeue"
    broken.write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\nexit 1\n"
    )
    broken.chmod(0o755)
    with pytest.raises(BatchQueryError, match="Unable to contact"):
        make_batch(squeue=str(broken)).active_jobs({"1"})
    assert make_batch().active_jobs(set()) == set()


# -- FlakyBatch's fault -------------------------------------------------------------------------


def test_fail_next_fails_that_many_queries_then_answers(slurm_cluster: DevSlurm, tmp_path: Path) -> None:
    running = job(slurm_cluster, tmp_path, "sleep 600", "RUNNING")
    try:
        batch = FlakyBatch(SlurmBatch(), fail_next=2)
        for _ in range(2):
            with pytest.raises(BatchQueryError, match="injected fault"):
                batch.active_jobs({running})
        assert batch.active_jobs({running}) == {running}
        assert batch.queries == 3 and batch.fail_next == 0
    finally:
        slurm_cluster.scancel(running)
