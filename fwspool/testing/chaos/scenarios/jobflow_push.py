"""Scenario 16: ``kill -9`` of ``fwspool push`` at the jobflow failpoints, the database killed during pushes.

Each trial converts a jobflow ``Flow`` with ``flow_to_workflow`` onto a fresh LaunchPad of the
scenario's own server: a chain whose references go into nested output fields, one job with its
output's ``blob`` in the GridFS additional store (:mod:`fwspool.testing.jobflow_jobs`), the
JobStore a second database of the same server. It runs offline as the twin tests do
(:func:`fwspool.testing.jobflow_twins.run_offline`): each READY Firework reserved as ``qlaunch -r``
does, run by ``fwspool rlaunch``, ingested; then pushes with faults (one per Firework in the
short run, one to three with ``--full``), each one of:

- ``fwspool push`` SIGKILLed at ``push.after_store_write`` (the outputs are in the JobStore, the
  launch not yet completed) or at ``push.before_mark`` (completed, the journal not yet marked);
- the database server (the LaunchPad's and the JobStore's) SIGKILLed or stopped at a random
  moment of a push, then started again on its storage.

After each fault (the server back up), every Firework past READY must have its parents' outputs
in the JobStore: a child READY, RUNNING or COMPLETED before its inputs exist would run, or
have run, without them. A clean push then catches up before the next Firework is reserved.
At the end: every event in the journal exactly once (invariant (a)), no JobStore document twice
per ``(uuid, index)`` and no blob twice per ``blob_uuid`` (read with the driver), none lost, and
the LaunchPad and the JobStore equal to those of a clean offline run of the same flow (the
twin tests' own, made once per scenario run; :func:`~fwspool.testing.jobflow_twins.launchpad_state`, :func:`~fwspool.testing.jobflow_twins.outputs`,
:func:`~fwspool.testing.jobflow_twins.blobs`).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fwspool.testing.chaos.cluster import Cluster, drop_database
from fwspool.testing.chaos.invariants import Check, check_journal, inventory, journal_rows
from fwspool.testing.chaos.processes import child_env, fwspool_cmd, run, start
from fwspool.testing.chaos.progress import log
from fwspool.testing.chaos.scenarios.database_outages import Outages
from fwspool.testing.chaos.trial import Scenario, ScenarioResult, check_summary, expect_ok, no_traceback

NAME = "kill -9 jobflow push (store write, mark), database killed"
#: The jobflow failpoints of a push: after the JobStore write, after the completion.
KILL_POINTS = ("push.after_store_write", "push.before_mark")
FAULTS = (*KILL_POINTS, "database kill", "database stop")
#: Fireworks past READY: each needs its parents' outputs in the JobStore.
PAST_READY = ("READY", "RESERVED", "RUNNING", "COMPLETED")


def flow() -> Any:
    """make -> big (its blob in GridFS, sized by a nested field) -> add (nested references)."""
    from jobflow import Flow

    from fwspool.testing import jobflow_jobs

    first = jobflow_jobs.make(4096)
    second = jobflow_jobs.big(first.output["nested"]["deep"]["tenfold"])
    third = jobflow_jobs.add(second.output["size"], first.output["nested"]["pair"][1])
    return Flow([first, second, third])


@dataclass
class Run:
    """One offline run of :func:`flow`: its LaunchPad and JobStore databases, its directory."""

    uri: str
    root: str
    db: str

    @property
    def store_db(self) -> str:
        return self.db + "_js"

    @property
    def journal(self) -> str:
        return os.path.join(self.root, "journal.sqlite3")

    @property
    def launches(self) -> str:
        return os.path.join(self.root, "launches")

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(
            FWSPOOL_JOURNAL=self.journal,
            FWSPOOL_JOBFLOW_CACHE=os.path.join(self.root, "cache"),
            **extra,
        )

    def push(self, *extra: str) -> list[str]:
        return fwspool_cmd("push", "--uri", self.uri, "--name", self.db, *extra)

    def launchpad(self) -> Any:
        from fwspool.testing.launchpad import make_launchpad

        return make_launchpad(self.uri, self.db, reset=False)

    def drop(self) -> None:
        for db in (self.db, self.store_db):
            drop_database(self.uri, db)
        shutil.rmtree(self.root, ignore_errors=True)


#: What a run does after each Firework's ingest: its pushes (with faults or without).
Pushes = Callable[[Run, Check], None]


def add_flow(r: Run) -> Any:
    """The flow on a fresh LaunchPad, its JobStore on the same server; the LaunchPad."""
    from jobflow.managers.fireworks import flow_to_workflow

    from fwspool.testing.jobflow_twins import job_store
    from fwspool.testing.launchpad import make_launchpad

    lp = make_launchpad(r.uri, r.db)
    # A short server selection: the push of a launch whose JobStore is down waits, quickly.
    store = job_store(r.uri, r.store_db, serverSelectionTimeoutMS=3000)
    lp.add_wf(flow_to_workflow(flow(), store=store))
    return lp


def run_offline(r: Run, c: Check, pushes: Pushes) -> None:
    """The flow run as the twin tests run it offline, but for the pushes: each READY Firework
    reserved as ``qlaunch -r`` does and run by ``fwspool rlaunch``, ingested, then ``pushes``,
    until nothing is READY."""
    from fwspool.reserve import reserve_offline
    from fwspool.testing.journal_file import ingest

    lp = add_flow(r)
    try:
        n = 0
        while lp.fireworks.count_documents({"state": "READY"}):
            n += 1
            if n > 10:
                raise RuntimeError("the flow did not finish in 10 launches")
            d = os.path.join(r.launches, f"launch{n}")
            reserve_offline(lp, d)
            p = run(fwspool_cmd("rlaunch"), os.path.join(r.root, "logs"), "rlaunch", env=r.env(), cwd=d)
            expect_ok(p, c, "rlaunch")
            ingest(r.journal, r.launches)
            pushes(r, c)
    finally:
        lp.connection.close()


def run_clean(r: Run) -> None:
    """The clean run: the twin tests' own offline run (in this process but for ``rlaunch``)."""
    from fwspool.testing.jobflow_twins import run_offline as twin_run_offline

    lp = add_flow(r)
    settings = r.env()
    saved = {k: os.environ.get(k) for k in settings if k.startswith("FWSPOOL_")}
    os.environ.update({k: settings[k] for k in saved})  # the push in this process reads its cache there
    try:
        os.makedirs(r.launches)
        twin_run_offline(lp, Path(r.launches), r.journal, r.uri)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        lp.connection.close()


def clean_push(r: Run, c: Check) -> None:
    p = run(r.push("--timeout", "20"), os.path.join(r.root, "logs"), "push", timeout=200, env=r.env())
    expect_ok(p, c, "clean push")
    if journal_rows(r.journal, "SELECT 1 FROM pending_events LIMIT 1"):
        c.pending_left += 1
        c.note(f"{r.db}: events still pending after a clean push: {p.stderr.strip()[-300:]}")


def inputs_missing(r: Run) -> list[str]:
    """Fireworks past READY whose parents' outputs are not in the JobStore."""
    import pymongo

    client: Any = pymongo.MongoClient(r.uri, serverSelectionTimeoutMS=20000)
    try:
        fws = {
            d["fw_id"]: d for d in client[r.db].fireworks.find({}, {"fw_id": 1, "state": 1, "spec._tasks": 1})
        }
        links = client[r.db].workflows.find_one({}, {"links": 1})["links"]
        outputs = client[r.store_db].outputs
        missing = []
        for parent, children in links.items():
            uuid = fws[int(parent)]["spec"]["_tasks"][0]["job"]["uuid"]
            for child in children:
                if fws[child]["state"] in PAST_READY and not outputs.count_documents({"uuid": uuid}):
                    missing.append(f"Firework {child} {fws[child]['state']} without the output of {uuid}")
        return missing
    finally:
        client.close()


class Faults:
    """The pushes of a trial: each Firework's, one to three with a fault, then a clean one."""

    def __init__(self, outages: Outages, rng: random.Random, res: ScenarioResult, full: bool) -> None:
        self.outages = outages
        self.rng = rng
        self.res = res
        #: How many pushes with a fault per Firework: one in the short run (it must stay short).
        self.per_launch = (1, 1, 2, 3) if full else (1,)
        self.kinds: dict[str, int] = {}
        self.checks = 0

    def __call__(self, r: Run, c: Check) -> None:
        for _k in range(self.rng.choice(self.per_launch)):
            fault = self.rng.choice(FAULTS)
            if self.strike(r, c, fault):
                self.kinds[fault] = self.kinds.get(fault, 0) + 1
                if fault in KILL_POINTS:
                    self.res.faults += 1  # an outage counts when the database restarts (Outages)
            self.outages.back_up()
            self.checks += 1
            for line in inputs_missing(r):
                c.other += 1
                c.note(f"after a {fault}: {line}")
        clean_push(r, c)

    def strike(self, r: Run, c: Check, fault: str) -> bool:
        """One push with ``fault``; whether it landed (a kill at the failpoint, the database down
        while the push ran)."""
        logs = os.path.join(r.root, "logs")
        if fault in KILL_POINTS:
            p = run(r.push(), logs, "push", env=r.env(FWSPOOL_FAILPOINTS=f"{fault}=kill"))
            if p.popen.returncode == -signal.SIGKILL:
                return True
            # No jobflow output pending (a launch already pushed): the failpoint never struck.
            expect_ok(p, c, f"push ({fault}, not struck)")
            return False
        server = self.outages.server
        p = start(r.push("--timeout", "2"), logs, "push", env=r.env())
        time.sleep(self.rng.uniform(0.2, 1.5))
        landed = p.popen.poll() is None
        if landed:
            server.kill() if fault == "database kill" else server.stop()
            self.outages.struck.append(fault)
        p.wait(120)
        if landed:
            expect_ok(p, c, f"push during a {fault}", codes=(0, 75))
        else:
            expect_ok(p, c, f"push before a {fault}")
        no_traceback(p, c, f"push ({fault})")
        return landed


def compare(r: Run, want: dict[str, Any], c: Check) -> None:
    """The trial's JobStore and LaunchPad against the clean run's (``want``, read once)."""
    import pymongo

    from fwspool.testing.jobflow_twins import differences, duplicates

    client: Any = pymongo.MongoClient(r.uri, serverSelectionTimeoutMS=20000)
    try:
        dup = duplicates(client[r.store_db])
    finally:
        client.close()
    if dup:
        c.duplicated += len(dup)
        c.note(f"{r.db}: {dup[:3]}")
    got = read(r, (r.root, r.db, r.store_db))
    lost = len(want["outputs"]) - len(got["outputs"])
    if lost > 0:
        c.lost += lost
        c.note(f"{r.db}: {lost} outputs missing from the JobStore")
    states = [d["state"] for d in got["launchpad"]["fireworks"].values()]
    if states != ["COMPLETED"] * len(want["launchpad"]["fireworks"]):
        c.stalled += 1
        c.note(f"{r.db}: Firework states {states}")
    diff = differences(got, want, {})
    if diff:
        c.mismatched += len(diff)
        c.note(f"{r.db} differs from the clean run: {diff[:3]}")


def read(r: Run, dirs: tuple[str, ...]) -> dict[str, Any]:
    """A run's LaunchPad, JobStore documents and blobs, as the twin tests compare them."""
    from fwspool.testing.jobflow_twins import job_store, run_state

    lp = r.launchpad()
    store = job_store(r.uri, r.store_db)
    try:
        return run_state(lp, store, dirs)
    finally:
        lp.connection.close()
        store.close()


def run_scenario(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(16, NAME)
    outages = Outages(cluster.own_server("s16"), rng, res)
    server = outages.server
    faults = Faults(outages, rng, res, full)
    try:
        ref = Run(
            server.uri, os.path.join(cluster.root, "s16-clean"), f"s16_clean_{rng.randrange(16**6):06x}"
        )
        run_clean(ref)
        want = read(ref, (ref.root, ref.db, ref.store_db))
        ref.drop()
        for t in range(trials):
            outages.back_up()
            r = Run(
                server.uri, os.path.join(cluster.root, f"s16-t{t}"), f"s16_t{t}_{rng.randrange(16**6):06x}"
            )
            c = Check()
            try:
                run_offline(r, c, faults)
                c.add(check_journal(r.journal, inventory(r.launches)))
                check_summary(r.journal, c, "after the pushes killed and the clean pushes")
                compare(r, want, c)
            except Exception as exc:  # a harness-level failure is a failed trial
                c.other += 1
                c.note(f"trial s16-t{t} failed: {type(exc).__name__}: {exc}")
            res.trials += 1
            res.check.add(c)
            if c.failed:
                log(f"FAILED s16-t{t}: {c.notes[:4]}; kept {r.root} (database {r.db})")
            else:
                r.drop()
    finally:
        server.stop()
    res.detail = (
        f"a chain of 3 jobflow jobs (one GridFS blob) per trial; {faults.checks} checks of the inputs "
        "of every Firework past READY after a fault; faults landed: "
        + ", ".join(f"{k} {v}" for k, v in sorted(faults.kinds.items()))
    )
    return res


SCENARIO = Scenario(16, NAME, (1, 20), run_scenario)
