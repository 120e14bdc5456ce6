"""A pilot job on the compute node: ``fwspool rlaunch --pilot POOL`` runs launches from a pool
(:mod:`fwspool.pool`, ``schema/POOL.md``) until its deadline, or until the pool stays empty.

It runs launches as a packed job runs the launches of its block (:mod:`fwspool.block`: each in a
forked child running :func:`fwspool.rlaunch.run`, ``parallel`` at a time, the signals waited for
with ``sigtimedwait``), but takes them from the pool as they come, so that a child a push made
READY starts within a poll of being stocked, inside the same allocation:

- A launch is claimed only when it is about to start, and only when the time left before the job's
  deadline (walltime from ``--walltime`` counted from the pilot's start, or the batch system's own
  end time, as for a block) is at least the margin plus the launch's estimate; one that does not
  fit stays in the pool for another pilot.
- The pilot ends when no launch runs and either less than the margin is left, or the pool has had
  nothing it could take for ``idle_exit`` seconds. What it leaves in the pool is for others.
- On SIGTERM (walltime, ``scancel``) the running launches record ``exited`` with the signal and
  the pilot dies of it, as a packed job does. It holds no launch it has not started.
- Each claim is removed when its launch ends; a claim left behind (the pilot SIGKILLed) is the
  daemon's to tidy (:mod:`fwspool.stock`).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec

from fwspool.block import (
    DEFAULT_MARGIN,
    ENDING_SIGNALS,
    BlockLaunch,
    BlockResult,
    deadline_from,
    forked_launch,
    reap,
    signal_child,
    slurm_end_time,
    too_late,
    with_signals_watched,
)
from fwspool.errors import EX_OK
from fwspool.plural import counted
from fwspool.pool import PILOTS, Claim, Pool, PoolEntry, pilot_name
from fwspool.rlaunch import LaunchSettings, SchedulerJob

__all__ = ["DEFAULT_IDLE_EXIT", "PilotRunner", "run_pilot"]

#: Seconds an empty pool keeps a pilot waiting, unless ``--idle-exit`` says otherwise.
DEFAULT_IDLE_EXIT = 60.0
#: How often an idle pilot looks whether the pool's ``ready/`` changed (seconds): a stat.
LOOK_SECONDS = 0.05
#: How often it lists the pool's entries even when ``ready/`` seems unchanged (seconds).
POLL_SECONDS = 0.25


class PilotRecord(msgspec.Struct, forbid_unknown_fields=False):
    """``pilots/<pilot>.json`` while the pilot runs: the daemon counts running pilots by it."""

    pilot: str
    batch_job_id: str | None
    host: str
    pid: int
    started_on: dt.datetime


@dataclass
class PilotRunner:
    """One pilot run (:func:`run_pilot`)."""

    pool: Pool
    pilot: str
    batch_job_id: str | None
    launch_one: Callable[[BlockLaunch, str], int]
    margin: float
    parallel: int
    idle_exit: float
    deadline: float | None
    say: Callable[[str], None]
    clock: Callable[[], float] = time.time
    result: BlockResult = field(default_factory=BlockResult)

    def run(self) -> int | signal.Signals:
        running: dict[int, BlockLaunch] = {}
        claims: dict[int, Claim] = {}
        idle_since = time.monotonic()
        watched = set(ENDING_SIGNALS) | {signal.SIGCHLD}
        # Listing the pool reads every entry: done when ready/ changed, a launch ended (a slot
        # is free: entries left over may fit now) or POLL_SECONDS went by; a stat otherwise.
        stamp: int | None = None
        listed_at = -POLL_SECONDS
        ended = False
        while True:
            now_stamp = self.pool.ready_stamp()  # before the listing: a change during it shows next time
            look = ended or now_stamp != stamp or time.monotonic() - listed_at >= POLL_SECONDS
            if look:
                stamp, listed_at = now_stamp, time.monotonic()
            while look and len(running) < self.parallel:
                claim = self.pool.claim(self.pilot, self.batch_job_id, self._fits)
                if claim is None:
                    break
                e = claim.entry
                launch = BlockLaunch(e.launch_dir, e.launch_id, e.fw_id, e.estimate_seconds)
                running[self.launch_one(launch, e.launch_dir)] = launch
                claims[e.launch_id] = claim
                self.say(f"fwspool rlaunch: pilot {self.pilot}: launch {e.launch_id} (Firework {e.fw_id})")
            if running:
                idle_since = time.monotonic()
            else:
                why = self._why_end(time.monotonic() - idle_since)
                if why is not None:
                    self.say(f"fwspool rlaunch: pilot {self.pilot} ends: {why}")
                    break
            info = signal.sigtimedwait(watched, LOOK_SECONDS)
            if info is not None and info.si_signo != signal.SIGCHLD:
                ending = signal.Signals(info.si_signo)
                for pid in running:
                    signal_child(pid, ending)  # each records exited with the signal, and dies of it
                while running:
                    self._ended(reap(running, self.result, self.say), claims)
                    if running:
                        signal.sigtimedwait({signal.SIGCHLD}, 1.0)
                return ending
            ended = self._ended(reap(running, self.result, self.say), claims)
        return EX_OK if all(code == EX_OK for code in self.result.ran.values()) else 1

    def _fits(self, entry: PoolEntry) -> bool:
        return too_late(self.deadline, self.clock(), self.margin, entry.estimate_seconds) is None

    def _why_end(self, idle: float) -> str | None:
        if self.deadline is not None and self.deadline - self.clock() < self.margin:
            return f"less than the margin ({self.margin:g} s) left before the job's deadline"
        if idle >= self.idle_exit:
            return f"nothing to take for {idle:.0f} s (--idle-exit {self.idle_exit:g})"
        return None

    def _ended(self, launches: list[BlockLaunch], claims: dict[int, Claim]) -> bool:
        """Drop the claims of the launches that ended; whether any did."""
        for launch in launches:
            claim = claims.pop(launch.launch_id, None)
            if claim is not None:
                self.pool.drop(claim)
        return bool(launches)


def run_pilot(
    pool_dir: str,
    settings: LaunchSettings,
    *,
    margin: float | None = None,
    parallel: int | None = None,
    idle_exit: float | None = None,
    walltime: float | None = None,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> int:
    """Run launches from the pool in ``pool_dir`` (see the module's description); the exit code:
    0 when every launch it ran ran (COMPLETED or FIZZLED), 1 otherwise. Dies of the signal that
    ends the job."""
    from fwspool import rlaunch

    pool = Pool.existing(pool_dir)
    env = os.environ if environ is None else environ
    job = SchedulerJob.from_environ(env).job_id
    deadline = deadline_from(walltime, time.time(), slurm_end_time(env))
    name = pilot_name(job)
    import fireworks.core.rocket  # noqa: F401 - imported once, so that each forked launch starts at once

    def run_one(launch_dir: str, fw_id: int) -> int:
        return rlaunch.run(launch_dir, settings, fw_id=fw_id, environ=env)

    record = pool.path(PILOTS, f"{name}.json")
    os.makedirs(os.path.dirname(record), exist_ok=True)
    with open(record, "wb") as f:
        f.write(
            msgspec.json.encode(
                PilotRecord(name, job, os.uname().nodename, os.getpid(), dt.datetime.now(dt.UTC))
            )
        )

    def run() -> int | signal.Signals:
        runner = PilotRunner(
            pool,
            name,
            job,
            forked_launch(run_one, {signal.SIGCHLD}),
            DEFAULT_MARGIN if margin is None else margin,
            parallel or 1,
            DEFAULT_IDLE_EXIT if idle_exit is None else idle_exit,
            deadline,
            say,
        )
        until = f", until {dt.datetime.fromtimestamp(deadline, dt.UTC):%H:%M:%S} UTC" if deadline else ""
        say(f"fwspool rlaunch: pilot {name} on {pool.root}: {runner.parallel} at a time{until}")
        try:
            outcome = runner.run()
        finally:
            try:
                os.unlink(record)
            except OSError:
                pass
        ran = len(runner.result.ran)
        say(f"fwspool rlaunch: pilot {name}: {counted(ran, 'launch')} run")
        return outcome

    return with_signals_watched(run)
