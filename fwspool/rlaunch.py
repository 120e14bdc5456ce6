"""``fwspool rlaunch``: run a reserved Firework on a compute node, recording to the spool.

The directory was prepared on the login node by ``qlaunch -r`` (``FW.json`` and
``FW_offline.json`` with the launch id). FireWorks' own :class:`~fireworks.core.rocket.Rocket`
runs the Firework in its *online* code path, given :class:`SpoolLaunchPad` — a stand-in for the
LaunchPad that implements the few methods the Rocket calls by appending spool events. So tasks,
checkpoints, FWActions, ``_pass_job_info``, ``FWAction.json`` files and pings behave exactly as
in FireWorks, no database connection is ever opened, and FireWorks' offline branch (which
rewrites files in place, and crashes with current monty) is never used.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from types import FrameType
from typing import Any

from fwspool import inbox
from fwspool.errors import (
    EX_CONFIG,
    EX_DATAERR,
    EX_IOERR,
    EX_NOINPUT,
    EX_OK,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_USAGE,
    ConfigError,
    DataError,
    FwspoolError,
    InputError,
)
from fwspool.events import (
    Checkpoint,
    Completed,
    Exited,
    JobOutputs,
    LaunchDirChanged,
    Ping,
    Record,
    Released,
    Started,
    as_utc,
    tag_nonfinite,
    utcnow,
)
from fwspool.spool import SPOOL_NAME_RE, OsSourceFile, SpoolReader, SpoolWriter

#: The Rocket did not run the Firework (``Rocket.run`` returned False). A FIZZLED Firework is not
#: this: as with FireWorks' ``rlaunch``, it exits 0.
EX_NOT_RUN = 1

#: ``fwspool rlaunch``'s exit codes, the one description of them: ``fwspool rlaunch --help`` prints
#: them from here, and the README ("Exit codes") lists the same (tests/test_readme.py checks it).
#: A batch job's script and its dependents (``afterok``) see these, so they follow FireWorks'
#: ``rlaunch`` where it has one; errors before the Firework runs are the FwspoolError's own code.
EXIT_CODES: dict[int, str] = {
    EX_OK: "the Rocket ran the Firework, COMPLETED or FIZZLED, as FireWorks' rlaunch (the state is in "
    "the spool); or an earlier run of the requeued job had completed the launch; with --block: each "
    "launch of the block ran, was released, or had run before",
    EX_NOT_RUN: "the Rocket did not run the Firework (with --block: some launch of the block)",
    EX_USAGE: "bad command-line usage",
    EX_DATAERR: "FW_offline.json or FW.json malformed, a task class this node cannot import, or a --fw_id "
    "that is not the Firework reserved in the launch directory",
    EX_NOINPUT: "the launch directory, FW_offline.json, FW.json or the FWorker file missing or unreadable",
    EX_SOFTWARE: "the Rocket crashed outside the Firework's tasks (a bug: the traceback follows)",
    EX_IOERR: "the spool file cannot be written",
    EX_TEMPFAIL: "a jobflow job whose inputs are not in the output cache: not run, its reservation handed "
    "back (docs/jobflow.md)",
    EX_CONFIG: "an unusable FWorker file",
}

#: Where each batch system puts the job id, in the order they are looked for: ``JOB_ID`` (Grid
#: Engine) is a generic name some other environments set too, so it comes last.
SCHEDULER_JOB_VARIABLES = (
    ("SLURM_JOB_ID", "slurm"),
    ("PBS_JOBID", "pbs"),
    ("LSB_JOBID", "lsf"),
    ("COBALT_JOBID", "cobalt"),
    ("JOB_ID", "sge"),
)


@dataclass(frozen=True, slots=True)
class SchedulerJob:
    """The batch job this process runs in, as its environment tells."""

    job_id: str | None = None
    system: str | None = None
    #: ``SLURM_RESTART_COUNT``: 0 for the first run, 1 after one requeue...; None when unknown.
    restart_count: int | None = None
    #: Whether this run is a restart (Slurm: a restart count above 0; Grid Engine: ``RESTARTED=1``).
    restarted: bool | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SchedulerJob:
        for variable, system in SCHEDULER_JOB_VARIABLES:
            job_id = environ.get(variable)
            if job_id:
                if system == "sge":
                    # An array job's task: JOB_ID.SGE_TASK_ID, as qstat and qacct name it.
                    task = environ.get("SGE_TASK_ID", "undefined")
                    if task.isdigit():
                        job_id = f"{job_id}.{task}"
                    flag = environ.get("RESTARTED")
                    return cls(job_id, system, restarted=flag == "1" if flag in ("0", "1") else None)
                if system != "slurm":
                    return cls(job_id, system)
                # Slurm sets SLURM_RESTART_COUNT only from the first requeue on: unset means 0.
                restarts = environ.get("SLURM_RESTART_COUNT", "0")
                count = int(restarts) if restarts.isdigit() else None
                return cls(job_id, system, count, None if count is None else count > 0)
        return cls()


#: The signals that end a run: the handler records ``exited`` with the signal and its meaning,
#: then the process dies of it (a packed job's runner watches the same: :mod:`fwspool.block`).
ENDING_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGXCPU,
)

#: What each ending signal means, by batch system (``None``: any other, or none).
SIGNAL_MEANINGS: dict[signal.Signals, dict[str | None, str]] = {
    signal.SIGTERM: {
        None: "the batch system ended the job (walltime, a cancel, preemption or a requeue)",
        "sge": "Grid Engine ended the job: h_rt or qdel of a -notify job (NOTIFY_KILL=TERM), or its "
        "terminate_method",
    },
    signal.SIGINT: {None: "interrupted"},
    signal.SIGHUP: {None: "the job's session hung up"},
    signal.SIGUSR1: {
        None: "the batch system's warning signal: the job's end is near",
        "sge": "Grid Engine's soft walltime (s_rt) passed",
    },
    signal.SIGUSR2: {
        None: "the batch system's warning signal: the job's end is near",
        "sge": "Grid Engine's -notify warning: a kill (h_rt, qdel) or a suspension follows",
    },
    signal.SIGXCPU: {None: "the job's CPU-time limit passed"},
}


def signal_meaning(signum: int, system: str | None) -> str | None:
    """What ``signum`` means on ``system`` (:data:`SIGNAL_MEANINGS`)."""
    try:
        meanings = SIGNAL_MEANINGS[signal.Signals(signum)]
    except (KeyError, ValueError):
        return None
    return meanings.get(system) or meanings[None]


def jsonable(value: Any) -> Any:
    """FireWorks' own serialisation (``recursive_dict``): what it would store in MongoDB, with
    NaN and ±Infinity spelled so that JSON keeps them (:func:`fwspool.events.tag_nonfinite`)."""
    from fireworks.utilities.fw_serializers import recursive_dict

    return tag_nonfinite(recursive_dict(value))


def _unreadable(what: str, exc: OSError) -> InputError:
    """A file given to rlaunch that is there but cannot be read (permissions, I/O): one line."""
    return InputError(f"cannot read {what}: {exc.strerror or exc}")


def read_launch_id(launch_dir: str) -> int:
    """The launch id that ``qlaunch -r`` wrote to ``FW_offline.json`` (or ``.json.gz``)."""
    import gzip

    from fwspool.offline import find_offline_file

    path = find_offline_file(launch_dir)
    if path is None:
        raise InputError(f"no FW_offline.json in {launch_dir}: was it prepared by `qlaunch -r`?")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                data = json.load(f)
        else:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        return int(data["launch_id"])
    except (gzip.BadGzipFile, EOFError, ValueError, KeyError, TypeError) as exc:
        # BadGzipFile is an OSError, but it means malformed data, not a missing file.
        raise DataError(f"{path} has no readable launch_id: {exc}") from exc
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def preload_task_classes(launch_dir: str) -> None:
    """Read the Firework in ``launch_dir`` once in this process, and drop it.

    FireWorks finds a task's class by walking every module of its ``USER_PACKAGES`` the first
    time a process meets the class's name (0.15 s of CPU for a ``PyTask``, seconds when ten
    launches do it at once on a busy node). A process that forks launches (a pilot, a packed
    job) calls this before each fork: the walk is done once, in the parent, and every forked
    launch inherits the class found. Any error is left for the launch itself to record.
    """
    try:
        read_firework(launch_dir)
    except Exception:  # noqa: BLE001 - the forked launch reads FW.json again and records why it failed
        pass


def read_firework(launch_dir: str) -> Any:
    """The reserved Firework that ``qlaunch -r`` wrote to ``FW.json``.

    A task class that cannot be imported (the module is not on this node's ``PYTHONPATH``) is a
    one-line error here, where FireWorks' own offline rocket dies with a traceback.
    """
    from fireworks.core.firework import Firework
    from fireworks.utilities.exceptions import FWError

    fw_path = os.path.join(launch_dir, "FW.json")
    try:
        return Firework.from_file(fw_path)
    except FileNotFoundError as exc:
        raise InputError(f"no FW.json in {launch_dir}: was it prepared by `qlaunch -r`?") from exc
    except OSError as exc:
        raise _unreadable(fw_path, exc) from exc
    except ImportError as exc:
        from fwspool.jobstore import MISSING_EXTRA, JobflowMissing, names_jobflow

        if names_jobflow(exc):
            raise JobflowMissing(f"{fw_path}: {MISSING_EXTRA}") from exc
        raise DataError(f"{fw_path} names a task this node cannot import ({exc}): check PYTHONPATH") from exc
    except (FWError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{fw_path} is not a readable Firework: {exc}") from exc


def resolve_fworker_file(fworker_file: str | None, config_dir: str | None) -> str | None:
    """The FWorker file ``rlaunch`` would use: ``-w``, else ``my_fworker.yaml`` in the config dir
    (``-c``, default FireWorks' ``CONFIG_FILE_DIR``), else FireWorks' ``FWORKER_LOC``."""
    from fireworks import fw_config

    if fworker_file:
        return fworker_file
    in_config_dir = os.path.join(config_dir or fw_config.CONFIG_FILE_DIR, "my_fworker.yaml")
    if os.path.exists(in_config_dir):
        return in_config_dir
    return fw_config.FWORKER_LOC


def read_fworker(fworker_file: str | None) -> Any:
    from fireworks.core.fworker import FWorker

    if not fworker_file:
        return FWorker()
    if not os.path.exists(fworker_file):
        raise InputError(f"FWorker file {fworker_file} does not exist")
    try:
        return FWorker.from_file(fworker_file)
    except OSError as exc:
        raise _unreadable(f"FWorker file {fworker_file}", exc) from exc
    except KeyError as exc:
        raise ConfigError(f"FWorker file {fworker_file} lacks the key {exc} (name, category, query)") from exc
    except Exception as exc:  # YAML/JSON syntax errors have no common base class
        raise ConfigError(f"FWorker file {fworker_file} is unusable: {exc}") from exc


@dataclass(eq=False)
class SpoolLaunchPad:
    """What :class:`~fireworks.core.rocket.Rocket` needs of a LaunchPad, recorded to a spool.

    ``checkout_fw`` hands back the reserved Firework from ``FW.json`` and records ``started``;
    ``ping_launch`` records pings and checkpoints; ``change_launch_dir`` and ``complete_launch``
    record their events. Nothing here reads or writes a database.

    The Rocket's ping thread pings once more when it is told to stop, racing the main thread's
    ``complete_launch``: a ping after the launch reached its final state is dropped (FireWorks'
    own ``ping_launch`` ignores a launch that is no longer RUNNING), so the spool never holds a
    ping after ``completed``, nor a write after :meth:`finish`.
    """

    writer: SpoolWriter
    firework: Any
    launch_id: int
    _: KW_ONLY
    host: str
    ip: str
    batch_job: SchedulerJob = field(default_factory=SchedulerJob)
    #: What the Firework's jobflow tasks wrote to their spooled JobStore (:mod:`fwspool.jobstore`),
    #: carried by the completion.
    job_outputs: list[JobOutputs] = field(default_factory=list)
    logdir: None = field(default=None, init=False)
    completed_state: str | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _finished: bool = field(default=False, init=False, repr=False)

    def get_logdir(self) -> None:
        return None

    def checkout_fw(
        self,
        fworker: Any,
        launch_dir: str,
        fw_id: int | None = None,
        host: Any = None,
        ip: Any = None,
        state: str = "RUNNING",
    ) -> tuple[Any, int]:
        # The Firework keeps the state FW.json gives it (RESERVED), as in FireWorks' offline
        # rocket: ``_pass_job_info`` records that state in ``_job_info``.
        self.writer.append(
            Started(
                started_on=utcnow(),
                host=host or self.host,
                ip=ip or self.ip,
                fworker=jsonable(fworker.to_dict()) if fworker is not None else None,
                batch_job_id=self.batch_job.job_id,
                batch_system=self.batch_job.system,
                restart_count=self.batch_job.restart_count,
                launch_dir=launch_dir,
                restarted=self.batch_job.restarted,
            )
        )
        spec = self.firework.spec
        if "_launch_dir" in spec and not os.path.isabs(os.path.expandvars(spec["_launch_dir"])):
            # qlaunch already resolved it (from its own directory) and moved the launch there. The
            # Rocket, with a LaunchPad, would move again: FireWorks makes the relative directory
            # inside itself, then its own check of it crashes (FIZZLED). FireWorks' offline rocket
            # runs the launch where it is; pinned to that directory, so does this one. An absolute
            # one the Rocket moves to, as FireWorks' online rocket (where qlaunch put it already).
            spec["_launch_dir"] = launch_dir
        return self.firework, self.launch_id

    def change_launch_dir(self, launch_id: int, launch_dir: str) -> None:
        # The Rocket has already moved into it: a relative path means the current directory.
        path = launch_dir if os.path.isabs(launch_dir) else os.getcwd()
        self.writer.append(LaunchDirChanged(launch_dir=path))

    def ping_launch(
        self, launch_id: int, ptime: Any = None, checkpoint: dict[str, Any] | None = None
    ) -> None:
        when = as_utc(ptime) if ptime is not None else utcnow()
        with self._lock:
            if self._finished:
                return
            if checkpoint is not None:
                # Serialised now: the Rocket keeps mutating the dicts the checkpoint refers to.
                self.writer.append(Checkpoint(checkpoint=jsonable(checkpoint), ping_time=when))
            else:
                self.writer.append(Ping(ping_time=when))

    def complete_launch(self, launch_id: int, action: Any = None, state: str = "COMPLETED") -> dict[str, Any]:
        action_dict = jsonable(action.to_dict()) if action is not None else {}
        with self._lock:
            self.writer.append(
                Completed(
                    state=state,  # type: ignore[arg-type]
                    action=action_dict,
                    completed_on=utcnow(),
                    job_outputs=list(self.job_outputs) or None,
                )
            )
            self.completed_state = state
            self._finished = True
        return {"launch_id": launch_id, "state": state}

    def restore_backup_data(self, launch_id: int, fw_id: int) -> None:
        # The Rocket restores the database copies it changed; this stand-in changed none.
        return None

    def finish(self) -> None:
        """No more events from the Rocket (its ping thread may outlive :meth:`Rocket.run`)."""
        with self._lock:
            self._finished = True


@dataclass(frozen=True, slots=True)
class LaunchSettings:
    """How a launch runs, the same for one per job and for every launch of a block: the options
    of ``fwspool rlaunch`` that are not about which launch."""

    #: The FWorker file (-w); None: as FireWorks' rlaunch finds it (:func:`resolve_fworker_file`).
    fworker_file: str | None = None
    #: FireWorks' config directory (-c), where ``my_fworker.yaml`` may be.
    config_dir: str | None = None
    #: Seconds between pings; None: FireWorks' PING_TIME_SECS.
    ping_seconds: float | None = None
    #: Mode of the spool files (0600; 0640 with --group-readable).
    spool_mode: int = 0o600
    #: Where the launch announces itself; None: :func:`fwspool.inbox.default_inbox`.
    inbox_dir: str | None = None


def run(
    launch_dir: str,
    settings: LaunchSettings = LaunchSettings(),
    *,
    install_signal_handlers: bool = True,
    fw_id: int | None = None,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> int:
    """Run the Firework reserved in ``launch_dir``; returns the process exit code, :data:`EX_OK`
    or :data:`EX_NOT_RUN`; the other codes of :data:`EXIT_CODES` are those of the errors it raises. The FWorker
    is found as ``rlaunch`` finds it (see :func:`resolve_fworker_file`).

    ``fw_id`` is what ``qlaunch -r`` appends to the line (``--fw_id N``): it must be the reserved
    Firework's. Any error before the Firework runs (a bad ``FW.json``, an unimportable task, a
    wrong ``fw_id``, an unusable FWorker file) is raised as usual *and* recorded as an ``exited``
    event with the error, so the login node reports it instead of leaving the Firework RESERVED.

    A batch system that requeues the job runs this again in the same directory: a launch whose
    spool already holds its completion is not run a second time (0, and a line saying so); one
    that was interrupted runs again as the same launch (docs/batch-systems.md, "Walltime, cancelled jobs,
    requeue and lost runs").
    """
    launch_dir = os.path.abspath(launch_dir)
    if not os.path.isdir(launch_dir):
        raise InputError(f"launch directory {launch_dir} does not exist")
    launch_id = read_launch_id(launch_dir)
    reserved = _reserved_fw_id(launch_dir, fw_id)
    spool_mode = settings.spool_mode
    _announce(settings.inbox_dir or inbox.default_inbox(), launch_id, reserved, launch_dir, spool_mode, say)
    try:
        firework = _read_reserved_firework(launch_dir, fw_id)
        fworker = read_fworker(resolve_fworker_file(settings.fworker_file, settings.config_dir))
    except FwspoolError as exc:
        _record_failed_start(launch_dir, launch_id, reserved, exc, spool_mode)
        raise
    _set_ping_interval(settings.ping_seconds)
    if completed_before(launch_dir, launch_id):
        say(
            f"fwspool rlaunch: launch {launch_id} (Firework {firework.fw_id}) already completed in an "
            "earlier run of this job; not running it again"
        )
        return EX_OK
    batch_job = SchedulerJob.from_environ(os.environ if environ is None else environ)
    job_outputs: list[JobOutputs] = []
    try:
        _spool_job_tasks(firework, launch_dir, launch_id, job_outputs.append, spool_mode)
    except FwspoolError as exc:
        _record_failed_start(launch_dir, launch_id, reserved, exc, spool_mode, batch_job)
        raise
    return _run_rocket(
        launch_dir, launch_id, firework, fworker, batch_job, spool_mode, install_signal_handlers, job_outputs
    )


def _spool_job_tasks(
    firework: Any, launch_dir: str, launch_id: int, record: Callable[[JobOutputs], None], mode: int
) -> None:
    """jobflow tasks run against a spooled JobStore (:mod:`fwspool.jobstore.spooled`); a Firework
    without one does not import jobflow."""
    from fwspool.jobstore import is_job_task

    if not any(is_job_task(t) for t in firework.tasks):
        return
    from fwspool.jobstore.cache import cache_dir
    from fwspool.jobstore.spooled import spool_job_tasks

    spool_job_tasks(firework, launch_dir, launch_id, cache_dir(), record, mode)


def _reserved_fw_id(launch_dir: str, fw_id: int | None) -> int | None:
    """FW.json's fw_id (the reserved Firework), else ``--fw_id``: read once, before FW.json is
    parsed as a Firework, so that the inbox pointer and a failed start can name it even when
    that parse fails."""
    from fwspool.offline import read_fw_id
    from fwspool.spool import DEFAULT_MAX_RECORD

    reserved = read_fw_id(launch_dir, DEFAULT_MAX_RECORD)
    return fw_id if reserved is None else reserved


def _read_reserved_firework(launch_dir: str, fw_id: int | None) -> Any:
    """The Firework in ``FW.json``, which must be Firework ``fw_id`` when ``qlaunch -r`` gave one."""
    firework = read_firework(launch_dir)
    if fw_id is not None and firework.fw_id != fw_id:
        raise DataError(
            f"--fw_id {fw_id} is not the Firework reserved in {launch_dir} (its FW.json holds "
            f"Firework {firework.fw_id})"
        )
    return firework


def _set_ping_interval(ping_seconds: float | None) -> None:
    if ping_seconds is None:
        return
    if not ping_seconds > 0:
        raise ValueError(f"ping_seconds must be positive, got {ping_seconds}")
    from fireworks.core import rocket as fw_rocket

    # The Rocket reads this module constant (FW_config.yaml's PING_TIME_SECS) at each wait.
    fw_rocket.PING_TIME_SECS = ping_seconds


def _run_rocket(
    launch_dir: str,
    launch_id: int,
    firework: Any,
    fworker: Any,
    batch_job: SchedulerJob,
    spool_mode: int,
    install_signal_handlers: bool,
    job_outputs: list[JobOutputs] | None = None,
) -> int:
    """FireWorks' Rocket run in ``launch_dir`` against a :class:`SpoolLaunchPad`; the exit code.

    Whatever happens, the spool ends with ``exited``: written here after a run or a crash, or by
    the signal handlers when the batch system ends the job.
    """
    from fireworks.core import rocket as fw_rocket
    from fireworks.utilities.fw_utilities import get_my_host, get_my_ip

    host, ip = get_my_host(), get_my_ip()
    writer = SpoolWriter(launch_dir, launch_id, firework.fw_id, mode=spool_mode)
    lp = SpoolLaunchPad(
        writer,
        firework,
        launch_id,
        host=host,
        ip=ip,
        batch_job=batch_job,
        job_outputs=[] if job_outputs is None else job_outputs,
    )
    restore = (
        _install_exit_recorder(
            launch_dir, launch_id, firework.fw_id, spool_mode, writer.writer_id, batch_job.system
        )
        if install_signal_handlers
        else None
    )
    cwd = os.getcwd()
    try:
        os.chdir(launch_dir)
        ok = fw_rocket.Rocket(lp, fworker, firework.fw_id).run()
        lp.finish()
        # As FireWorks' rlaunch: 0 once the Rocket ran, FIZZLED or not (batch scripts and job
        # dependencies written for rlaunch must not change behaviour); the state is in the spool.
        code = EX_OK if ok else EX_NOT_RUN
        writer.append(Exited(returncode=code))
        return code
    except BaseException as exc:
        lp.finish()
        # A crash outside the tasks (the Rocket catches task errors itself) still ends the record.
        if not isinstance(exc, KeyboardInterrupt | SystemExit):
            writer.append(Exited(returncode=EX_SOFTWARE))
        raise
    finally:
        os.chdir(cwd)
        writer.close()
        if restore is not None:
            restore()


def _announce(
    inbox_dir: str, launch_id: int, fw_id: int | None, launch_dir: str, mode: int, say: Callable[[str], None]
) -> None:
    """Leave the inbox pointer (:mod:`fwspool.inbox`). Not fatal: without it the login node still
    finds the launch through the LaunchPad's registry once the database answers."""
    try:
        inbox.write_pointer(inbox_dir, launch_id, fw_id, launch_dir, mode=mode)
    except OSError as exc:
        say(
            f"fwspool rlaunch: warning: cannot write to the inbox {inbox_dir} ({exc.strerror or exc}); "
            "the login node finds this launch once the database is reachable"
        )


def _record_failed_start(
    launch_dir: str,
    launch_id: int,
    fw_id: int | None,
    exc: FwspoolError,
    mode: int,
    batch_job: SchedulerJob | None = None,
) -> None:
    """Why the launch did not start, in the spool: an exit with the line (the Firework becomes
    FIZZLED), or, for a jobflow job whose inputs are not there yet, its reservation handed back."""
    from fwspool.jobstore import MissingInputs

    try:
        with SpoolWriter(launch_dir, launch_id, fw_id, mode=mode) as w:
            if isinstance(exc, MissingInputs):
                w.append(Released(reason=exc.message, batch_job_id=(batch_job or SchedulerJob()).job_id))
            else:
                w.append(Exited(returncode=exc.exit_code, error=exc.message))
    except OSError:
        pass  # the directory cannot be written: the batch system's view (lost runs) is all there is


def completed_before(launch_dir: str, launch_id: int) -> bool:
    """Whether a spool file in ``launch_dir`` already holds this launch's ``completed`` event (an
    earlier run of a requeued job finished it)."""
    return "completed" in recorded_events(launch_dir, launch_id, ("completed",))


def recorded_events(launch_dir: str, launch_id: int, types: tuple[str, ...]) -> set[str]:
    """Which of the event ``types`` the spool files in ``launch_dir`` hold for this launch (a
    requeued job looks for the ``completed`` and ``released`` its earlier run recorded)."""
    import msgspec

    found: set[str] = set()
    try:
        names = os.listdir(launch_dir)
    except OSError:
        return found
    for name in names:
        if not SPOOL_NAME_RE.match(name):
            continue
        try:
            src = OsSourceFile(os.path.join(launch_dir, name))
        except OSError:
            continue
        try:
            for res in SpoolReader(src, 0):
                for frame in res.frames:
                    try:
                        rec = msgspec.json.decode(frame.payload, type=Record)
                    except (msgspec.DecodeError, ValueError):
                        continue
                    tag = str(type(rec.event).__struct_config__.tag)
                    if rec.launch_id == launch_id and tag in types:
                        found.add(tag)
        except OSError:
            continue
        finally:
            src.close()
    return found


def _install_exit_recorder(
    launch_dir: str,
    launch_id: int,
    fw_id: int | None,
    mode: int,
    run: str | None = None,
    system: str | None = None,
) -> Callable[[], None]:
    """On an ending signal (:data:`ENDING_SIGNALS`: batch-system walltime, cancel, warning),
    record ``exited`` with the signal and what it means on ``system``, then die of that same signal.

    The record goes to a spool file of its own: the main writer may be in the middle of a
    record (or hold its lock) when the signal arrives, and one file has only one writer.
    """
    signals = ENDING_SIGNALS
    previous = {sig: signal.getsignal(sig) for sig in signals}
    dying: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if dying:
            # A second signal while the first is being recorded: the first one's kill follows.
            return
        dying.append(signum)
        try:
            with SpoolWriter(launch_dir, launch_id, fw_id, mode=mode) as w:
                w.append(
                    Exited(
                        signal=signum,
                        signal_name=signal.Signals(signum).name,
                        run=run,
                        meaning=signal_meaning(signum, system),
                    )
                )
        finally:
            signal.signal(signum, signal.SIG_DFL)
            sys.stderr.flush()
            os.kill(os.getpid(), signum)

    for sig in signals:
        signal.signal(sig, handler)
    # A packed job's launch is forked with these signals blocked (fwspool.block): one that
    # arrived meanwhile is delivered now, to the handler.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
