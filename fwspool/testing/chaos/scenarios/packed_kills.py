"""Scenario 12: ``kill -9`` of a packed job (``fwspool rlaunch --block``), then its requeue.

A block of Fireworks reserved as ``fwspool qlaunch --pack`` reserves them runs in order or two at
a time; at a random moment the whole job is SIGKILLed (its process group: a node failure, the OOM
killer), an ingest may run meanwhile, and then the job runs again in the same block (a requeue).
Afterwards: every spool event is in the journal exactly once (invariant a), nothing is left
pending, every Firework is COMPLETED with its one reservation, and no Firework whose completion
was recorded before the kill ran again (each task run appends a line to ``runs.log`` in its
launch directory).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from typing import Any

from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.invariants import Check, check_journal, inventory, journal_rows
from fwspool.testing.chaos.processes import child_env, fwspool_cmd
from fwspool.testing.chaos.trial import Scenario, ScenarioResult

NAME = "kill -9 of a packed job, then its requeue"
#: Fireworks per block.
PACK = 6


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(12, NAME)
    for t in range(trials):
        c = Check()
        root = os.path.join(cluster.root, "trials", f"s12-t{t}-{rng.randrange(16**6):06x}")
        db = f"s12_t{t}_{rng.randrange(16**6):06x}"
        try:
            if one_trial(cluster, root, db, rng, c):
                res.faults += 1
        except Exception as exc:  # a harness-level failure is a failed trial
            c.other += 1
            c.note(f"trial s12-t{t} failed: {type(exc).__name__}: {exc}")
        res.trials += 1
        res.check.add(c)
        if not c.failed:
            _drop(cluster.uri, db)
            shutil.rmtree(root, ignore_errors=True)
    res.detail = f"{PACK} Fireworks per block, SIGKILL of the job's process group, then a requeued run"
    return res


def one_trial(cluster: Cluster, root: str, db: str, rng: random.Random, c: Check) -> bool:
    """One block killed and requeued; whether the kill landed while the job ran."""
    from fireworks import Firework, FWorker, ScriptTask

    from fwspool import block, qlaunch
    from fwspool.rlaunch import recorded_events
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
        job = _start(b.block_dir, env, os.path.join(root, "run1.log"))
        time.sleep(rng.uniform(1.0, 2.5))
        landed = job.poll() is None
        if landed:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(60)
        if rng.random() < 0.5:
            _fwspool(env, root, "ingest", "--root", root)  # the login node reads the torn state
        done_before = {
            lid for _fw, lid, d in b.reserved if "completed" in recorded_events(d, lid, ("completed",))
        }
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


def _drop(uri: str, db: str) -> None:
    import pymongo

    client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
    try:
        client.drop_database(db)
    finally:
        client.close()


SCENARIO = Scenario(12, NAME, (2, 20), run)
