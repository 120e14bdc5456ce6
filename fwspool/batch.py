"""The batch system, as the login node sees it: which jobs are still queued or running.

A job killed with SIGKILL (the OOM killer, a node failure) writes nothing, and a job cancelled
while pending never starts ``fwspool rlaunch``: only the batch system knows it is gone. Ingest
asks it once per pass — one call for all open launches, never one per launch — through the
small :class:`BatchSystem` interface: :class:`SlurmBatch` is the real one (``squeue``),
:class:`FlakyBatch` fails on command for tests. A query that fails or times out decides
nothing (:class:`BatchQueryError`).
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Collection
from typing import Protocol

from fwspool.config import load_settings_file
from fwspool.errors import ConfigError, InputError

#: Slurm job states in which the job may still run the launch (``squeue --states``).
SLURM_ALIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
        "SPECIAL_EXIT",
    }
)

#: FireWorks' ``_fw_q_type`` names, and the first line of a job script's directives, per system.
Q_TYPES = {"SLURM": "slurm", "PBS": "pbs", "LoadSharingFacility": "lsf", "SGE": "sge", "Cobalt": "cobalt"}
DIRECTIVES = (("#SBATCH", "slurm"), ("#PBS", "pbs"), ("#BSUB", "lsf"), ("#COBALT", "cobalt"), ("#$", "sge"))
#: The job script ``qlaunch`` writes in each launch directory (FireWorks' ``SUBMIT_SCRIPT_NAME``).
SUBMIT_SCRIPT = "FW_submit.script"


class BatchQueryError(Exception):
    """The batch system could not be asked (command missing, failed, timed out): decide nothing."""


class BatchSystem(Protocol):
    #: ``slurm``, ``pbs``...: the name the ``started`` event's ``batch_system`` uses.
    name: str

    def active_jobs(self, job_ids: Collection[str]) -> set[str]:
        """The ids among ``job_ids`` that are still queued or running. Raises BatchQueryError."""


class SlurmBatch:
    """Slurm through ``squeue``: one call lists every job of this user (``SLURM_CONF`` and the
    rest of the environment as the user's own Slurm commands see it)."""

    name = "slurm"

    def __init__(self, *, squeue: str = "squeue", timeout: float = 30.0) -> None:
        self.squeue = squeue
        self.timeout = timeout

    def active_jobs(self, job_ids: Collection[str]) -> set[str]:
        if not job_ids:
            return set()
        user = pwd.getpwuid(os.getuid()).pw_name
        cmd = [self.squeue, "--noheader", "--array", "--format=%i %T", f"--user={user}", "--states=all"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, check=False)
        except FileNotFoundError:
            raise BatchQueryError(f"{self.squeue} not found: is Slurm's client on PATH?") from None
        except subprocess.TimeoutExpired:
            raise BatchQueryError(f"{self.squeue} did not answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise BatchQueryError(f"cannot run {self.squeue}: {exc.strerror or exc}") from None
        if out.returncode != 0:
            why = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
            raise BatchQueryError(f"{self.squeue} failed: {why[:300]}")
        wanted = set(job_ids)
        alive = set()
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in wanted and parts[1] in SLURM_ALIVE:
                alive.add(parts[0])
        return alive


class FlakyBatch:
    """Wraps a batch system and fails the next ``fail_next`` queries (tests)."""

    def __init__(self, inner: BatchSystem, *, fail_next: int = 0) -> None:
        self.inner = inner
        self.name = inner.name
        self.fail_next = fail_next
        self.queries = 0

    def active_jobs(self, job_ids: Collection[str]) -> set[str]:
        self.queries += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise BatchQueryError("injected fault: squeue timed out")
        return self.inner.active_jobs(job_ids)


def system_of_queue_adapter(path: str) -> str:
    """The batch system a FireWorks queue adapter file is for (its ``_fw_q_type``)."""
    data = load_settings_file(path, "queue adapter file", missing=InputError)
    q_type = data.get("_fw_q_type") if isinstance(data, dict) else None
    if q_type not in Q_TYPES:
        raise ConfigError(
            f"queue adapter file {path} has _fw_q_type {q_type!r}; fwspool knows {', '.join(sorted(Q_TYPES))}"
        )
    return Q_TYPES[q_type]


def system_of_launch_dir(launch_dir: str) -> str | None:
    """The batch system of the job script ``qlaunch`` left in a launch directory, or that
    ``fwspool qlaunch --pack`` left in its block directory (the parent, with a block manifest)."""
    from fwspool.block import MANIFEST_NAME

    system = _system_of_script(os.path.join(launch_dir, SUBMIT_SCRIPT))
    block_dir = os.path.dirname(launch_dir)
    if system is None and os.path.exists(os.path.join(block_dir, MANIFEST_NAME)):
        system = _system_of_script(os.path.join(block_dir, SUBMIT_SCRIPT))
    return system


def _system_of_script(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(16384)
    except OSError:
        return None
    for line in head.splitlines():
        for directive, system in DIRECTIVES:
            if line.startswith(directive):
                return system
    return None


def available_systems() -> dict[str, BatchSystem]:
    """The batch systems fwspool can ask (Slurm; PBS, LSF, SGE and Cobalt not yet)."""
    return {"slurm": SlurmBatch()}
