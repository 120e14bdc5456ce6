"""jobflow and atomate2 flows offline (docs/jobflow.md): a ``JobFiretask``'s JobStore spooled.

On the compute node (:mod:`~fwspool.jobstore.spooled`) the task runs against a JobStore of
fwspool's own: its references resolve from the outputs the login node left in the shared cache
(:mod:`~fwspool.jobstore.cache`), and its writes become part of the launch's ``completed`` event
(:class:`fwspool.events.JobOutputs`, large ones in side files: :mod:`~fwspool.jobstore.outputs`).
On the login node, the push writes them to the real JobStore and to the cache before it
completes the launch (:mod:`fwspool.launchpad.job_outputs`), so a child becomes READY only once
its inputs are in both.

jobflow is the optional extra ``fwspool[jobflow]``: nothing here imports it at module level,
and without it fwspool runs every other Firework as before.
"""

from __future__ import annotations

from typing import Any

from fwspool.errors import EX_DATAERR, EX_TEMPFAIL, DataError, FwspoolError

#: The FireWorks name of jobflow's task (``_fw_name`` in a Firework's spec).
JOB_TASK_NAME = "{{jobflow.managers.fireworks.JobFiretask}}"

#: The one line for a jobflow Firework where jobflow is not installed.
MISSING_EXTRA = "this Firework runs a jobflow job (JobFiretask) and jobflow is not installed here: pip install 'fwspool[jobflow]'"


class JobflowMissing(DataError):
    """A ``JobFiretask`` met where jobflow cannot be imported (exit 65, as any unimportable task)."""


def is_job_task(task: Any) -> bool:
    """Whether a FireTask (an object, or its dict form) is jobflow's ``JobFiretask``."""
    if isinstance(task, dict) and task.get("_fw_name") == JOB_TASK_NAME:
        return True
    return type(task).__name__ == "JobFiretask" and type(task).__module__ == "jobflow.managers.fireworks"


def names_jobflow(exc: BaseException) -> bool:
    """Whether an import error is jobflow (or its maggma) missing."""
    name = getattr(exc, "name", None) or ""
    return name.split(".")[0] in ("jobflow", "maggma") or "jobflow" in str(exc)


class MissingInputs(FwspoolError):
    """A job's references name outputs the shared cache does not have: the job is not run, its
    reservation is handed back (a ``released`` event), and the Firework is READY again at the
    next push."""

    exit_code = EX_TEMPFAIL


#: What ``fwspool rlaunch`` exits with for a jobflow Firework, beyond its own codes
#: (docs/jobflow.md lists the same; a test checks it).
EXIT_CODES: dict[int, str] = {
    EX_DATAERR: "a JobFiretask where jobflow is not installed (pip install 'fwspool[jobflow]'), or a job "
    "with expose_store=True: the Firework becomes FIZZLED with that line",
    EX_TEMPFAIL: "the outputs the job's references name are not in the jobflow output cache: the job did "
    "not run, and its reservation is handed back (the Firework is READY again at the next push)",
}
