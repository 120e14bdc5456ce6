"""The batch system, as the login node sees it: which jobs are still queued or running.

A job killed with SIGKILL (the OOM killer, a node failure) writes nothing, and a job cancelled
while pending never starts ``fwspool rlaunch``: only the batch system knows it is gone. Ingest
asks it once per pass — one call for all open launches, never one per launch — through the
small :class:`Scheduler` interface: :class:`SlurmScheduler` (``squeue``) and
:class:`GridEngineScheduler` (``qstat -xml``) are the real ones (a double that fails on command,
for tests, is :class:`fwspool.testing.faults.FlakyScheduler`). A query that fails or times out decides nothing (:class:`SchedulerQueryError`).
Of a job that is gone, the batch system's own record says how it ended (:meth:`Scheduler.how_ended`:
``scontrol show job``, ``qacct -j``); no record says nothing yet.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from collections.abc import Collection
from typing import Protocol
from xml.etree import ElementTree

from fwspool.config import load_settings_file
from fwspool.errors import ConfigError, InputError
from fwspool.events import JobEnd

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


class SchedulerQueryError(Exception):
    """The batch system could not be asked (command missing, failed, timed out): decide nothing."""


class Scheduler(Protocol):
    #: ``slurm``, ``pbs``...: the name the ``started`` event's ``batch_system`` uses.
    name: str

    def active_jobs(self, job_ids: Collection[str]) -> set[str]:
        """The ids among ``job_ids`` that are still queued or running. Raises SchedulerQueryError."""

    def how_ended(self, job_id: str) -> JobEnd | None:
        """How a job that is no longer queued or running ended, from the batch system's own
        record of it; None when there is no record (yet). Raises SchedulerQueryError."""


def _run(cmd: list[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a batch-system command; one that cannot run or does not answer is a SchedulerQueryError."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SchedulerQueryError(f"{cmd[0]} not found: is {what}'s client on PATH?") from None
    except subprocess.TimeoutExpired:
        raise SchedulerQueryError(f"{cmd[0]} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise SchedulerQueryError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None


def _failed(cmd: list[str], out: subprocess.CompletedProcess[str]) -> SchedulerQueryError:
    why = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
    return SchedulerQueryError(f"{cmd[0]} failed: {why[:300]}")


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


class SlurmScheduler:
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
        cmd = [self.squeue, "--noheader", "--array", "--format=%i %T", f"--user={_user()}", "--states=all"]
        out = _run(cmd, "Slurm", self.timeout)
        if out.returncode != 0:
            raise _failed(cmd, out)
        wanted = set(job_ids)
        alive = set()
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in wanted and parts[1] in SLURM_ALIVE:
                alive.add(parts[0])
        return alive

    def how_ended(self, job_id: str) -> JobEnd | None:
        """``scontrol show job``: the controller keeps a finished job for ``MinJobAge`` seconds."""
        cmd = [self.scontrol, "show", "job", "-o", job_id]
        out = _run(cmd, "Slurm", self.timeout)
        if out.returncode != 0:
            if "Invalid job id" in out.stderr:
                return self._accounting_end(job_id)  # past MinJobAge: only accounting remembers
            raise _failed(cmd, out)
        fields = dict(re.findall(r"\b(JobState|Reason|ExitCode|StdOut|StdErr)=(\S+)", out.stdout))
        state = fields.get("JobState")
        if state is None or state in SLURM_ALIVE:
            return None
        code, _, sig = fields.get("ExitCode", "").partition(":")
        exit_status = int(code) if code.isdigit() else None
        if sig.isdigit() and int(sig):
            exit_status = 128 + int(sig)
        words = f"JobState={state} Reason={fields.get('Reason')} ExitCode={fields.get('ExitCode')}"
        # The job's own output, where Slurm wrote it: the user need not find the files.
        tails: dict[str, str | None] = {}
        for stream, key in (("stdout", "StdOut"), ("stderr", "StdErr")):
            path = fields.get(key)
            tail = file_tail(path) if path else None
            if tail is not None:
                tails[stream], tails[f"{stream}_tail"] = path, tail
        return JobEnd(
            cause=SLURM_CAUSES.get(state, state.lower()),
            words=words,
            source="scontrol show job",
            exit_status=exit_status,
            state=state,
            reason=fields.get("Reason"),
            stdout=tails.get("stdout"),
            stdout_tail=tails.get("stdout_tail"),
            stderr=tails.get("stderr"),
            stderr_tail=tails.get("stderr_tail"),
        )

    def _accounting_end(self, job_id: str) -> JobEnd | None:
        """The job from ``sacct`` (accounting, where configured), or None where it has none."""
        cmd = [self.sacct, "--noheader", "--parsable2", "-X", "--format=State,Reason,ExitCode", "-j", job_id]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines or len(lines[-1].split("|")) != 3:
            return None
        state, reason, exit_code = lines[-1].split("|")
        base = state.split()[0] if state else ""  # sacct says "CANCELLED by 1234": who, where it knows
        code, _, sig = exit_code.partition(":")
        exit_status = (
            128 + int(sig) if sig.isdigit() and int(sig) else (int(code) if code.isdigit() else None)
        )
        return JobEnd(
            cause=SLURM_CAUSES.get(base, base.lower()),
            words=f"State={state} Reason={reason} ExitCode={exit_code}",
            source="sacct",
            exit_status=exit_status,
            state=base,
            reason=reason,
        )


#: What fwspool says of a job the batch system has no record of (past ``MinJobAge``, no
#: accounting; a Grid Engine job deleted while pending).
NO_RECORD = "the batch system no longer knows the job"


def no_record() -> JobEnd:
    """The end of a job the batch system has no record of: ``cause`` ``unknown``."""
    return JobEnd(cause="unknown", words=NO_RECORD, source="no record")


#: The end of a job's stdout and stderr kept with its end: at most so many lines and bytes each.
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


#: Slurm's end states in fwspool's words (:class:`fwspool.events.JobEnd`).
SLURM_CAUSES = {
    "COMPLETED": "completed",
    "FAILED": "exited",
    "TIMEOUT": "walltime",
    "DEADLINE": "walltime",
    "CANCELLED": "cancelled",
    "NODE_FAIL": "node failure",
    "OUT_OF_MEMORY": "out of memory",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "failed to start",
}


class GridEngineScheduler:
    """Grid Engine (SGE, SoGE, OGS, UGE) through ``qstat -xml``, which lists every job of this user
    at once (it cannot filter by id), and ``qacct -j`` for a job that is gone (``SGE_ROOT``,
    ``SGE_CELL`` and the rest of the environment as the user's own commands see them).

    Every job ``qstat`` lists may still run the launch: queued, held, running, rescheduled,
    suspended, in error, or being deleted (``dr``: a ``-notify`` job has its warning signal and
    still runs). A job id is Grid Engine's ``JOB_ID``, or ``JOB_ID.SGE_TASK_ID`` for a task of
    an array job.
    """

    name = "sge"

    def __init__(self, *, qstat: str = "qstat", qacct: str = "qacct", timeout: float = 30.0) -> None:
        self.qstat = qstat
        self.qacct = qacct
        self.timeout = timeout

    def active_jobs(self, job_ids: Collection[str]) -> set[str]:
        if not job_ids:
            return set()
        cmd = [self.qstat, "-xml", "-u", _user()]
        out = _run(cmd, "Grid Engine", self.timeout)
        if out.returncode != 0:
            raise _failed(cmd, out)
        try:
            root = ElementTree.fromstring(out.stdout)
        except ElementTree.ParseError as exc:
            raise SchedulerQueryError(f"{self.qstat} -xml answered no readable XML: {exc}") from None
        listed: dict[str, list[str | None]] = {}
        for job in root.iter("job_list"):
            number = (job.findtext("JB_job_number") or "").strip()
            if number:
                listed.setdefault(number, []).append(job.findtext("tasks"))
        alive = set()
        for job_id in job_ids:
            number, _, task = job_id.partition(".")
            if number in listed and (not task or any(_has_task(t, task) for t in listed[number])):
                alive.add(job_id)
        return alive

    def how_ended(self, job_id: str) -> JobEnd | None:
        """The last ``qacct -j`` record of the job (a rescheduled job has one per run). The
        accounting file can lag behind ``qstat``, and a job deleted while pending has none."""
        number, _, task = job_id.partition(".")
        cmd = [self.qacct, "-j", number]
        out = _run(cmd, "Grid Engine", self.timeout)
        if out.returncode != 0:
            if "not found" in out.stderr:
                return None
            raise _failed(cmd, out)
        records = [r for r in parse_qacct(out.stdout) if not task or r.get("taskid") == task]
        return grid_engine_end(records[-1]) if records else None


def _has_task(tasks: str | None, task: str) -> bool:
    """Whether ``qstat``'s ``<tasks>`` (``3``, ``1-10:1``, ``4,7-9:2``) includes the task."""
    if tasks is None:
        return True  # the whole job is listed (qstat lists a pending array's tasks as one entry)
    if not task.isdigit():
        return False
    n = int(task)
    for part in tasks.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:-(\d+)(?::(\d+))?)?\s*", part)
        if match is None:
            continue
        first = int(match.group(1))
        last = int(match.group(2) or first)
        step = int(match.group(3) or 1)
        if first <= n <= last and (n - first) % step == 0:
            return True
    return False


def parse_qacct(text: str) -> list[dict[str, str]]:
    """``qacct -j``'s records (separated by a line of ``=``), each as field name -> value."""
    records: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("=========="):
            current = {}
            records.append(current)
            continue
        name, _, value = line.partition(" ")
        if current is not None and name:
            current[name] = value.strip()
    return records


def grid_engine_end(record: dict[str, str]) -> JobEnd:
    """A ``qacct`` record in fwspool's words. ``failed 0``: the job ended on its own; 37: a
    limit the qmaster enforced (``h_rt``: walltime); 100 with exit 137: ``qdel`` or a SIGKILL
    (Grid Engine cannot tell them apart: killed); 25: rescheduled (``qmod -rj``); 1-24 and
    26-29: the job could not be started."""
    code_text, _, text = record.get("failed", "").partition(":")
    code = int(code_text) if code_text.strip().isdigit() else None
    status_text = record.get("exit_status", "").split()
    exit_status = int(status_text[0]) if status_text and status_text[0].isdigit() else None
    text = text.strip()
    if code == 0:
        cause = "completed" if exit_status == 0 else "exited"
    elif code == 37:
        cause = "walltime" if "h_rt" in text else "limit"
    elif code == 25:
        cause = "rescheduled"
    elif code == 100:
        cause = "killed"
    elif code is not None and code < 30:
        cause = "failed to start"
    else:
        cause = "failed"
    words = f"failed {code if code is not None else '?'}" + (f" : {text}" if text else "")
    words += f", exit_status {exit_status if exit_status is not None else '?'}"
    return JobEnd(cause=cause, words=words, source="qacct -j", exit_status=exit_status, failed=code)


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


def available_systems() -> dict[str, Scheduler]:
    """The batch systems fwspool can ask (Slurm and Grid Engine; PBS, LSF and Cobalt not)."""
    return {"slurm": SlurmScheduler(), "sge": GridEngineScheduler()}
