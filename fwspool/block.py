"""A packed batch job on the compute node: the launches of one block, run by ``fwspool rlaunch``.

``fwspool qlaunch --pack K`` (:mod:`fwspool.qlaunch`) reserves K Fireworks, each in its own
launch directory (``FW.json``, ``FW_offline.json``) under one block directory, and writes the
block's manifest there (:data:`MANIFEST_NAME`, ``schema/BLOCK.md``). The job runs
``fwspool rlaunch --block DIR``, which is :func:`run_block`:

- Each launch runs exactly as a single ``fwspool rlaunch`` runs one (:func:`fwspool.rlaunch.run`:
  the same events, the same FWAction semantics, its own spool writer), in a child process of its
  own, forked from this one so that FireWorks is imported once: in the manifest's order, or
  ``parallel`` at a time. One launch fizzling or failing to start does not stop the others.
- Before starting a launch, the time left before the job's deadline (its walltime from the
  manifest counted from the block's start, or the batch system's own end time when it is
  earlier) must be at least the margin plus the launch's estimate; otherwise the launch is
  *released*: a ``released`` event in its own spool, so the next push hands its reservation back
  (:mod:`fwspool.launchpad.release`) and the next job takes the Firework.
- On SIGTERM (walltime, ``scancel``, preemption) the running launches record ``exited`` with the
  signal (their own handlers; the signal is passed on to them) and every launch not started is
  released; then this process dies of the signal, as a single ``fwspool rlaunch`` does.
- A requeued block resumes: a launch whose spool holds its completion is not run again, nor one
  that was released (its Firework may already be reserved by another job); an interrupted one
  runs again as the same launch, as a single requeued launch does.

The parent never runs a Firework and never writes a spool file except a ``released`` event; it
waits for its children and for signals with ``sigtimedwait`` (the signals blocked), so no
asynchronous handler runs in it.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from fwspool import inbox
from fwspool.errors import EX_OK, EX_SOFTWARE, DataError, FwspoolError, InputError
from fwspool.events import Released
from fwspool.plural import counted
from fwspool.rlaunch import ENDING_SIGNALS as RLAUNCH_ENDING_SIGNALS
from fwspool.rlaunch import LaunchSettings, SchedulerJob

#: The manifest's file name in the block directory.
MANIFEST_NAME = "fwspool-block.json"
#: The manifest format this code writes (``schema/BLOCK.md``).
MANIFEST_VERSION = 1
#: Seconds before the deadline under which no launch starts, unless ``--margin`` says otherwise.
DEFAULT_MARGIN = 60.0
#: The spec key of a Firework's own estimate of its run time, in seconds (optional).
ESTIMATE_KEY = "_fwspool_estimate"
#: The signals that end a job (as :func:`fwspool.rlaunch._install_exit_recorder` records them).
ENDING_SIGNALS = frozenset(RLAUNCH_ENDING_SIGNALS)
#: The exit code of a block in which some launch did not run (see :data:`fwspool.rlaunch.EXIT_CODES`).
EX_SOME_NOT_RUN = 1


class BlockLaunch(msgspec.Struct, forbid_unknown_fields=False):
    """One launch of a block, as ``fwspool qlaunch`` reserved it."""

    #: The launch directory: relative to the block directory, or absolute (``_launch_dir``).
    launch_dir: str
    launch_id: int
    fw_id: int
    #: The Firework's spec ``_fwspool_estimate`` (seconds), if it gives one.
    estimate_seconds: float | None = None


class BlockManifest(msgspec.Struct, forbid_unknown_fields=False):
    """``fwspool-block.json``: what one packed batch job runs (``schema/BLOCK.md``)."""

    format: Literal["fwspool-block"]
    version: int
    created_on: dt.datetime
    #: In the order they run.
    launches: list[BlockLaunch]
    #: The job's walltime as submitted (the queue adapter's ``walltime`` after the Fireworks'
    #: ``_queueadapter``), in seconds; None when unknown.
    walltime_seconds: float | None = None
    #: How many launches run at once.
    parallel: int = 1
    #: No launch starts with less than this many seconds left (``fwspool rlaunch --margin`` wins).
    margin_seconds: float = DEFAULT_MARGIN
    #: The batch job id, once submitted (informative: the job knows its own from its environment).
    batch_job_id: str | None = None


def manifest_path(block_dir: str) -> str:
    return os.path.join(block_dir, MANIFEST_NAME)


def write_manifest(block_dir: str, manifest: BlockManifest) -> str:
    """Write the manifest under a temporary name, fsync, rename: a job never reads half of one."""
    path = manifest_path(block_dir)
    tmp = f"{path}.tmp-{os.getpid()}"
    data = msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read_manifest(block_dir: str) -> BlockManifest:
    path = manifest_path(block_dir)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise InputError(f"no {MANIFEST_NAME} in {block_dir}: was it prepared by `fwspool qlaunch`?") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        manifest = msgspec.json.decode(data, type=BlockManifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DataError(f"{path} is not a readable block manifest: {exc}") from exc
    if manifest.version > MANIFEST_VERSION:
        raise DataError(f"{path} has version {manifest.version}; this fwspool knows {MANIFEST_VERSION}")
    if manifest.parallel < 1:
        raise DataError(f"{path}: parallel must be at least 1, not {manifest.parallel}")
    return manifest


def launch_path(block_dir: str, launch: BlockLaunch) -> str:
    return os.path.normpath(os.path.join(block_dir, launch.launch_dir))


# -- the deadline ------------------------------------------------------------------------------


def slurm_end_time(environ: Mapping[str, str], *, timeout: float = 10.0) -> float | None:
    """The batch system's own end time of this job (epoch seconds), when Slurm can tell it:
    ``SLURM_JOB_END_TIME`` (Slurm 23.02 on), else ``squeue -j $SLURM_JOB_ID -o %e``."""
    job = environ.get("SLURM_JOB_ID")
    if not job:
        return None
    end = environ.get("SLURM_JOB_END_TIME", "")
    if end.isdigit():
        return float(end)
    try:
        out = subprocess.run(
            ["squeue", "--noheader", "--jobs", job, "--format=%e"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    if out.returncode != 0 or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.splitlines()[0]).timestamp()  # local time, as squeue shows
    except ValueError:
        return None  # "N/A", "Unknown": no time limit


def deadline_of(manifest: BlockManifest, started: float, batch_end: float | None) -> float | None:
    """The job's end as this block sees it: the walltime counted from ``started``, or the batch
    system's end time when it is earlier (the job waited, or started before this process)."""
    return deadline_from(manifest.walltime_seconds, started, batch_end)


def deadline_from(walltime: float | None, started: float, batch_end: float | None) -> float | None:
    """The earlier of ``started`` + ``walltime`` and the batch system's end time (either may be
    unknown: None); a pilot job's deadline too (:mod:`fwspool.pilot`)."""
    candidates = [batch_end] if batch_end is not None else []
    if walltime is not None:
        candidates.append(started + walltime)
    return min(candidates) if candidates else None


def too_late(deadline: float | None, now: float, margin: float, estimate: float | None) -> str | None:
    """Why a launch with this ``estimate`` must not start now, or None: less than the margin
    plus the estimate left before the deadline."""
    if deadline is None:
        return None
    left = deadline - now
    estimate = estimate or 0.0
    if left >= margin + estimate:
        return None
    needed = f"the margin ({margin:g} s)" + (f" + its estimate ({estimate:g} s)" if estimate else "")
    return f"not started: {max(left, 0):.0f} s left before the job's deadline, less than {needed}"


# -- running a block ---------------------------------------------------------------------------


@dataclass(slots=True)
class BlockResult:
    """What became of each launch of a block run (by launch id)."""

    ran: dict[int, int] = field(default_factory=dict)  # exit code, or -signal
    skipped: dict[int, str] = field(default_factory=dict)  # completed or released before
    released: dict[int, str] = field(default_factory=dict)  # released now, and why


@dataclass
class BlockRunner:
    """One run of a block (:func:`run_block`)."""

    block_dir: str
    manifest: BlockManifest
    launch_one: Callable[[BlockLaunch, str], int]
    margin: float
    deadline: float | None
    batch_job_id: str | None
    spool_mode: int
    inbox_dir: str
    say: Callable[[str], None]
    clock: Callable[[], float] = time.time
    result: BlockResult = field(default_factory=BlockResult)

    def run(self) -> int | signal.Signals:
        """Run the block; the exit code, or the signal that ended it (the caller dies of it)."""
        from fwspool.rlaunch import recorded_events

        waiting: deque[BlockLaunch] = deque()
        for launch in self.manifest.launches:
            before = recorded_events(
                launch_path(self.block_dir, launch), launch.launch_id, ("completed", "released")
            )
            if before:
                what = "completed" if "completed" in before else "released"
                self.result.skipped[launch.launch_id] = what
                self.say(
                    f"fwspool rlaunch: launch {launch.launch_id} (Firework {launch.fw_id}) was {what} "
                    "by an earlier run of this job; not running it again"
                )
            else:
                waiting.append(launch)
        running: dict[int, BlockLaunch] = {}
        ending: signal.Signals | None = None
        watched = set(ENDING_SIGNALS) | {signal.SIGCHLD}
        while waiting or running:
            while ending is None and waiting and len(running) < self.manifest.parallel:
                launch = waiting.popleft()
                late = self._too_late(launch)
                if late is not None:
                    self._release(launch, late)
                    continue
                pid = self.launch_one(launch, launch_path(self.block_dir, launch))
                running[pid] = launch
            if not running:
                break
            info = signal.sigtimedwait(watched, 1.0)
            if info is not None and info.si_signo != signal.SIGCHLD and ending is None:
                ending = signal.Signals(info.si_signo)
                for pid in running:
                    signal_child(pid, ending)  # each records exited with the signal, and dies of it
                for launch in waiting:
                    self._release(
                        launch, f"the batch job was ended ({ending.name}) before the launch started"
                    )
                waiting.clear()
            self._reap(running)
        if ending is not None:
            return ending
        return EX_OK if all(code == EX_OK for code in self.result.ran.values()) else EX_SOME_NOT_RUN

    def _too_late(self, launch: BlockLaunch) -> str | None:
        return too_late(self.deadline, self.clock(), self.margin, launch.estimate_seconds)

    def _release(self, launch: BlockLaunch, reason: str) -> None:
        from fwspool.spool import SpoolWriter

        path = launch_path(self.block_dir, launch)
        try:
            with SpoolWriter(path, launch.launch_id, launch.fw_id, mode=self.spool_mode) as w:
                w.append(Released(reason=reason, batch_job_id=self.batch_job_id))
        except OSError as exc:
            self.say(
                f"fwspool rlaunch: cannot record the release of launch {launch.launch_id} in {path} "
                f"({exc.strerror or exc}); the login node releases it once the job is gone"
            )
            return
        try:
            inbox.write_pointer(self.inbox_dir, launch.launch_id, launch.fw_id, path, mode=self.spool_mode)
        except OSError:
            pass  # found through the LaunchPad's registry once the database answers
        self.result.released[launch.launch_id] = reason
        self.say(f"fwspool rlaunch: launch {launch.launch_id} (Firework {launch.fw_id}) released: {reason}")

    def _reap(self, running: dict[int, BlockLaunch]) -> None:
        reap(running, self.result, self.say)


def reap(
    running: dict[int, BlockLaunch], result: BlockResult, say: Callable[[str], None]
) -> list[BlockLaunch]:
    """Collect the launches of ``running`` (by pid) that ended, into ``result``; those launches."""
    ended: list[BlockLaunch] = []
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            ended += running.values()
            running.clear()
            break
        if pid == 0:
            break
        launch = running.pop(pid, None)
        if launch is None:
            continue  # not a launch of ours (a grandchild reparented to us cannot be: no subreaper)
        ended.append(launch)
        code = os.waitstatus_to_exitcode(status)
        result.ran[launch.launch_id] = code
        if code != EX_OK:
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
            say(f"fwspool rlaunch: launch {launch.launch_id} (Firework {launch.fw_id}) {how}")
    return ended


def signal_child(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def forked_launch(
    run_one: Callable[[str, int], int], unblocked: set[signal.Signals]
) -> Callable[[BlockLaunch, str], int]:
    """Start one launch in a forked child running ``run_one(launch_dir, fw_id)``; its pid.

    The child keeps the ending signals blocked until :func:`fwspool.rlaunch.run` has installed
    its handlers (it unblocks them then): a SIGTERM passed on at any moment is recorded. The
    Firework's task classes are looked up here first (:func:`fwspool.rlaunch.preload_task_classes`),
    so that no child pays FireWorks' first lookup.
    """
    from fwspool.rlaunch import preload_task_classes

    def start(launch: BlockLaunch, launch_dir: str) -> int:
        preload_task_classes(launch_dir)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code = EX_SOFTWARE
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, unblocked)
            code = run_one(launch_dir, launch.fw_id)
        except FwspoolError as exc:
            print(f"fwspool: {exc.message}", file=sys.stderr)
            code = exc.exit_code
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else EX_SOFTWARE
        except BaseException:
            print("fwspool: internal error, please report:", file=sys.stderr)
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    return start


def run_block(
    block_dir: str,
    settings: LaunchSettings,
    *,
    margin: float | None = None,
    parallel: int | None = None,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> int:
    """Run the block in ``block_dir`` (see the module's description); returns the exit code:
    0 when every launch ran (COMPLETED or FIZZLED), was released, or had run before; 1 when some
    launch did not run. Dies of the signal that ends the job."""
    from fwspool import rlaunch

    block_dir = os.path.abspath(block_dir)
    if not os.path.isdir(block_dir):
        raise InputError(f"block directory {block_dir} does not exist")
    manifest = read_manifest(block_dir)
    if parallel is not None:
        manifest.parallel = parallel
    env = os.environ if environ is None else environ
    started = time.time()
    deadline = deadline_of(manifest, started, slurm_end_time(env))
    # Imported once here, so that each forked launch starts at once.
    import fireworks.core.rocket  # noqa: F401

    def run_one(launch_dir: str, fw_id: int) -> int:
        return rlaunch.run(launch_dir, settings, fw_id=fw_id, environ=env)

    def run() -> int | signal.Signals:
        runner = BlockRunner(
            block_dir,
            manifest,
            forked_launch(run_one, {signal.SIGCHLD}),
            manifest.margin_seconds if margin is None else margin,
            deadline,
            SchedulerJob.from_environ(env).job_id,
            settings.spool_mode,
            settings.inbox_dir or inbox.default_inbox(),
            say,
        )
        until = f", until {dt.datetime.fromtimestamp(deadline, dt.UTC):%H:%M:%S} UTC" if deadline else ""
        say(
            f"fwspool rlaunch: block {block_dir}: {counted(len(manifest.launches), 'launch')}, "
            f"{manifest.parallel} at a time{until}"
        )
        return runner.run()

    return with_signals_watched(run)


def with_signals_watched(run: Callable[[], int | signal.Signals]) -> int:
    """``run()`` with the ending signals and SIGCHLD blocked (it waits for them with
    ``sigtimedwait``); its exit code, or this process dies of the signal it returns."""
    watched = set(ENDING_SIGNALS) | {signal.SIGCHLD}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        outcome = run()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    if isinstance(outcome, signal.Signals):
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(outcome, signal.SIG_DFL)
        os.kill(os.getpid(), outcome)
        time.sleep(5)  # the signal is delivered at once; this is not reached
        return 128 + int(outcome)
    return outcome
