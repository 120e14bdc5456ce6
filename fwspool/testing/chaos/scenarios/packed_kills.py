"""Scenario 12: ``kill -9`` of a packed job (``fwspool rlaunch --block``), then its requeue.

A block of Fireworks reserved as ``fwspool qlaunch --pack`` reserves them runs in order or two at
a time; at a random moment the whole job is SIGKILLed (its process group: a node failure, the OOM
killer), an ingest may run meanwhile, and then the job runs again in the same block (a requeue).
Every other trial runs the block as a real Grid Engine job (a private cell,
:mod:`fwspool.testing.gridengine`, submitted ``-r y``): ``qmod -rj`` is the kill (SIGKILL to the
job's process group, no ``-notify``) and Grid Engine's requeue, as the same job id with
``RESTARTED=1``; the ingests ask the cell (``qstat -xml``) about the job.
Afterwards: every spool event is in the journal exactly once (invariant a), nothing is left
pending, every Firework is COMPLETED with its one reservation, and no Firework whose completion
was recorded before the kill ran again (each task run appends a line to ``runs.log`` in its
launch directory).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

from fwspool.testing.chaos.cluster import Cluster, drop_database
from fwspool.testing.chaos.invariants import Check, check_journal, inventory, journal_rows
from fwspool.testing.chaos.processes import child_env, fwspool_cmd
from fwspool.testing.chaos.trial import Scenario, ScenarioResult

if TYPE_CHECKING:
    from fwspool.testing.gridengine import DevGridEngine

NAME = "kill -9 of a packed job, then its requeue"
#: Fireworks per block.
PACK = 6


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    from fwspool.testing.gridengine import DevGridEngine

    res = ScenarioResult(12, NAME)
    cell: DevGridEngine | None = None
    landed = {"direct": 0, "sge": 0}
    try:
        for t in range(trials):
            c = Check()
            root = os.path.join(cluster.root, "trials", f"s12-t{t}-{rng.randrange(16**6):06x}")
            db = f"s12_t{t}_{rng.randrange(16**6):06x}"
            on = "sge" if t % 2 else "direct"
            try:
                if on == "sge" and cell is None:
                    cell = DevGridEngine(
                        os.path.join(cluster.root, f"s12-sge-{rng.randrange(16**6):06x}")
                    ).start()
                if one_trial(cluster, root, db, rng, c, cell if on == "sge" else None):
                    res.faults += 1
                    landed[on] += 1
            except Exception as exc:  # a harness-level failure is a failed trial
                c.other += 1
                c.note(f"trial s12-t{t} ({on}) failed: {type(exc).__name__}: {exc}")
            res.trials += 1
            res.check.add(c)
            if not c.failed:
                drop_database(cluster.uri, db)
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if cell is not None:
            cell.stop()
    res.detail = (
        f"{PACK} Fireworks per block, SIGKILL of the job's process group, then a requeued run; "
        f"kills landed: {landed['direct']} run directly, {landed['sge']} as Grid Engine jobs (qmod -rj)"
    )
    return res


def one_trial(
    cluster: Cluster, root: str, db: str, rng: random.Random, c: Check, cell: DevGridEngine | None = None
) -> bool:
    """One block killed and requeued (by Grid Engine when ``cell``); whether the kill landed
    while the job ran."""
    from fireworks import Firework, FWorker, ScriptTask

    from fwspool import block, qlaunch
    from fwspool.testing.launchpad import make_launchpad

    os.makedirs(root)
    lp = make_launchpad(cluster.uri, db)
    try:
        for i in range(PACK):
            task = ScriptTask.from_str(f"echo run >> runs.log && sleep {rng.uniform(0.3, 1.0):.2f}")
            lp.add_wf(Firework(task, name=f"packed-{i}"))
        b = qlaunch.reserve_block(lp, FWorker(), root, PACK)
        assert b is not None and len(b.reserved) == PACK
        parallel = rng.choice((1, 2))
        block.write_manifest(b.block_dir, b.manifest(walltime_seconds=None, parallel=parallel, margin=0))
        env = child_env(
            FWSPOOL_INBOX=os.path.join(root, "inbox"),
            FWSPOOL_JOURNAL=os.path.join(root, "journal", "journal.sqlite3"),
            FWSPOOL_MONGODB_URI=cluster.uri,
            FWSPOOL_MONGODB_NAME=db,
        )
        if cell is not None:
            env.update(cell.env)
            landed, done_before = _on_grid_engine(cell, b.block_dir, b.reserved, env, root, rng, c)
        else:
            job = _start(b.block_dir, env, os.path.join(root, "run1.log"))
            time.sleep(rng.uniform(1.0, 2.5))
            landed = job.poll() is None
            if landed:
                os.killpg(job.pid, signal.SIGKILL)
            job.wait(60)
            if rng.random() < 0.5:
                _fwspool(env, root, "ingest", "--root", root)  # the login node reads the torn state
            done_before = _completed(b.reserved)
            rerun = _start(b.block_dir, env, os.path.join(root, "run2.log"))  # the requeue
            if rerun.wait(120) != 0:
                c.other += 1
                c.note(f"the requeued block exited {rerun.returncode}: {_tail(root, 'run2.log')}")
        _fwspool(env, root, "ingest", "--root", root)
        c.add(check_journal(env["FWSPOOL_JOURNAL"], inventory(root)))
        _fwspool(env, root, "push", "--timeout", "20")
        _check_launchpad(lp, b.reserved, done_before, env["FWSPOOL_JOURNAL"], c)
    finally:
        lp.connection.close()
    return landed


def _completed(reserved: list[tuple[Any, int, str]]) -> set[int]:
    """The launches whose spool holds their completion."""
    from fwspool.rlaunch import recorded_events

    return {lid for _fw, lid, d in reserved if "completed" in recorded_events(d, lid, ("completed",))}


def _on_grid_engine(
    cell: DevGridEngine,
    block_dir: str,
    reserved: list[tuple[Any, int, str]],
    env: dict[str, str],
    root: str,
    rng: random.Random,
    c: Check,
) -> tuple[bool, set[int]]:
    """The block as a rerunnable Grid Engine job: ``qmod -rj`` at a random moment (SIGKILL of its
    process group, and the requeue as the same job id), the rerun held while the torn state is
    read, then released; waits for the rerun's end. Whether the kill landed while the job ran,
    and the launches completed before it."""
    script = os.path.join(block_dir, "job.sh")
    command = " ".join(
        shlex.quote(w) for w in fwspool_cmd("rlaunch", "singleshot", "--offline", "--block", block_dir)
    )
    with open(script, "w", encoding="utf-8") as f:
        f.write(f"#!/bin/bash\n{command}\n")
    os.chmod(script, 0o755)
    # -V: the job sees the trial's environment (its inbox, the cell), as its child processes do.
    # (Not a real Slurm job's settings, should the harness run in one: the job is Grid Engine's.)
    job_env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    job = cell.qsub(script, "-V", "-r", "y", "-o", "job.out", "-j", "y", cwd=block_dir, env=job_env)
    cell.wait_for_state(job, {"r"}, 60)
    time.sleep(rng.uniform(1.0, 2.5))
    landed = False
    if cell.job_state(job) == "r":
        cell.run("qmod", "-rj", job)
        # Held as soon as it is rescheduled: the first run is over, the rerun not begun. (The
        # job may have ended on its own just before: then there is nothing to rerun.)
        landed = cell.wait_for_state(job, {"Rq", "GONE"}, 60) == "Rq"
        if landed:
            cell.run("qhold", job)
    if rng.random() < 0.5:
        _fwspool(env, root, "ingest", "--root", root)  # the login node reads the torn state
    done_before = _completed(reserved)
    if landed:
        cell.run("qrls", job)
    cell.wait_for_state(job, {"GONE"}, 120)
    ends = [
        (r.get("failed", "").split()[:1], r.get("exit_status", "").split()[:1])
        for r in cell.wait_for_accounting(job)
    ]
    rescheduled = any(failed == ["25"] for failed, _ in ends[:-1])
    if ends[-1] != (["0"], ["0"]) or rescheduled != landed:
        c.other += 1
        c.note(f"Grid Engine job {job} ended {ends} (landed: {landed}): {_tail(block_dir, 'job.out')}")
    return landed, done_before


def _check_launchpad(
    lp: Any, reserved: list[tuple[Any, int, str]], done_before: set[int], journal: str, c: Check
) -> None:
    for fw, launch_id, launch_dir in reserved:
        doc = lp.fireworks.find_one({"fw_id": fw.fw_id})
        if doc["state"] != "COMPLETED" or doc["launches"] != [launch_id]:
            c.mismatched += 1
            c.note(
                f"Firework {fw.fw_id}: {doc['state']}, launches {doc['launches']} (want COMPLETED, [{launch_id}])"
            )
        with open(os.path.join(launch_dir, "runs.log"), encoding="utf-8") as f:
            runs = len(f.read().splitlines())
        if launch_id in done_before and runs != 1:
            c.duplicated += 1
            c.note(f"launch {launch_id} completed before the kill but its task ran {runs} times")
        if runs == 0:
            c.lost += 1
            c.note(f"launch {launch_id}: its task never ran")
    pending = journal_rows(journal, "SELECT count(*) AS n FROM pending_events")[0]["n"]
    if pending:
        c.pending_left += pending
        c.note(f"{pending} events still pending after the push")


def _start(block_dir: str, env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            fwspool_cmd("rlaunch", "singleshot", "--offline", "--block", block_dir),
            cwd=block_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill takes the whole job
        )


def _fwspool(env: dict[str, str], root: str, *args: str) -> None:
    res = subprocess.run(fwspool_cmd(*args), env=env, capture_output=True, text=True, timeout=240)
    if res.returncode != 0 or "Traceback" in res.stderr:
        raise RuntimeError(f"fwspool {args[0]} exited {res.returncode}: {res.stderr.strip()[-500:]}")


def _tail(root: str, name: str) -> str:
    with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
        return f.read()[-500:]


SCENARIO = Scenario(12, NAME, (2, 20), run)
