"""The batch system, as the login node sees it: which jobs are still queued or running.

A job killed with SIGKILL (the OOM killer, a node failure) writes nothing, and a job cancelled
while pending never starts ``fwspool rlaunch``: only the batch system knows it is gone. Ingest
asks it once per pass — one call for all open launches, never one per launch — through the
small :class:`BatchSystem` interface: :class:`SlurmBatch` is the real one (``squeue``),
:class:`FlakyBatch` fails on command for tests. A query that fails or times out decides
nothing (:class:`BatchQueryError`).

When a launch is judged lost, its job's record is asked for once (:func:`job_record`): why it
ended in the batch system's own terms (Slurm: ``scontrol show job`` State, Reason and ExitCode
while ``MinJobAge`` keeps the job, else ``sacct`` where accounting is configured), with the
last lines of the job's stdout and stderr files.
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

    def __init__(
        self,
        *,
        squeue: str = "squeue",
        scontrol: str = "scontrol",
        sacct: str = "sacct",
        timeout: float = 30.0,
    ) -> None:
        self.squeue = squeue
        self.scontrol = scontrol
        self.sacct = sacct
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

    def job_record(self, job_id: str) -> dict[str, str]:
        """The job's end in Slurm's terms, from ``scontrol show job`` (slurmctld keeps a finished
        job for ``MinJobAge`` seconds; no accounting is assumed). Raises BatchQueryError."""
        source = "scontrol show job"
        cmd = [self.scontrol, "show", "job", "--oneliner", job_id]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, check=False)
        except FileNotFoundError:
            raise BatchQueryError(f"{self.scontrol} not found: is Slurm's client on PATH?") from None
        except subprocess.TimeoutExpired:
            raise BatchQueryError(f"{self.scontrol} did not answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise BatchQueryError(f"cannot run {self.scontrol}: {exc.strerror or exc}") from None
        if out.returncode != 0:
            if "Invalid job id" in out.stderr:
                return self._accounting_record(job_id)  # past MinJobAge: only accounting remembers
            why = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
            raise BatchQueryError(f"{self.scontrol} failed: {why[:300]}")
        fields = dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)
        state = fields.get("JobState", "")
        if not state:
            return {"why": UNKNOWN_JOB, "source": source}
        record = {"state": state, "reason": fields.get("Reason", ""), "exit_code": fields.get("ExitCode", "")}
        # The job's own output, where the batch system wrote it: the user need not find the files.
        for stream, key in (("stdout", "StdOut"), ("stderr", "StdErr")):
            path = fields.get(key, "")
            tail = file_tail(path) if path else None
            if tail is not None:
                record[stream] = path
                record[f"{stream}_tail"] = tail
        return {"why": SLURM_ENDINGS.get(state, state.lower()), **record, "source": source}

    def _accounting_record(self, job_id: str) -> dict[str, str]:
        """The job from ``sacct`` (accounting), or :data:`UNKNOWN_JOB` where it has none."""
        source = "sacct"
        cmd = [self.sacct, "--noheader", "--parsable2", "-X", "--format=State,Reason,ExitCode", "-j", job_id]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return {"why": UNKNOWN_JOB, "source": "scontrol show job, sacct"}
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines or len(lines[-1].split("|")) != 3:
            return {"why": UNKNOWN_JOB, "source": "scontrol show job, sacct"}
        state, reason, exit_code = lines[-1].split("|")
        # sacct says "CANCELLED by 1234": who, where it knows.
        base = state.split()[0] if state else ""
        record = {"state": state, "reason": reason, "exit_code": exit_code}
        return {"why": SLURM_ENDINGS.get(base, base.lower()), **record, "source": source}


#: What a Slurm job state that ended a job means, in the words of Slurm's own documentation of
#: its job states (``squeue(1)``, "JOB STATE CODES"), cut short.
SLURM_ENDINGS = {
    "NODE_FAIL": "node failure",
    "TIMEOUT": "walltime: the job reached its time limit",
    "CANCELLED": "cancelled",
    "OUT_OF_MEMORY": "out of memory",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "failed to start: its node failed to boot",
    "DEADLINE": "deadline reached",
    "FAILED": "failed: non-zero exit code or other failure",
    "COMPLETED": "the job script ended with exit code zero",
}
#: ``why`` of a job the batch system has no record of (any more).
UNKNOWN_JOB = "the batch system no longer knows the job"
#: The end of a job's stdout and stderr kept in its record: at most so many lines and bytes each.
TAIL_LINES, TAIL_BYTES = 20, 4096


def file_tail(path: str, lines: int = TAIL_LINES, limit: int = TAIL_BYTES) -> str | None:
    """The last ``lines`` lines (at most ``limit`` bytes) of a file of this user's, or None."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.getuid():
                return None  # only the user's own files are read (fwspool.trust)
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            data = f.read(limit)
    except OSError:
        return None
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def job_record(system: BatchSystem, job_id: str) -> dict[str, str]:
    """Why a batch job ended, from the batch system's own record: ``{"why": ..., "source": ...}``
    plus the record's ``state``, ``reason`` and ``exit_code`` when it has them. A batch system
    fwspool cannot ask for records, or a query that fails, says so in ``why``."""
    ask = getattr(system, "job_record", None)
    if ask is None:
        return {"why": f"fwspool cannot ask {system.name} why a job ended", "source": "none"}
    try:
        return dict(ask(job_id))
    except BatchQueryError as exc:
        return {"why": f"{system.name} could not be asked why the job ended ({exc})", "source": "none"}


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

    def job_record(self, job_id: str) -> dict[str, str]:
        return job_record(self.inner, job_id)


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
