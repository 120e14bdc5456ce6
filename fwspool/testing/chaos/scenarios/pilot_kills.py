"""Scenario 15: pilot jobs and the stocking daemon killed at random, pool renames interrupted.

Each trial runs ``fwspool sync --watch --submit --pilot POOL`` (the one daemon: it stocks the
pool, hands stale stock back after a short ``--pool-ttl``, submits pilot jobs) on the private
Slurm (:mod:`fwspool.testing.devslurm`), for a workload of independent Fireworks and a chain.
While it runs, faults strike at random:

- a pilot is SIGKILLed (its process, by its pilot record) or ``scancel``\\ ed;
- the daemon is SIGKILLed, at a random moment or at a failpoint of its own (between a
  reservation and its entry in ``ready/``, before or after a hand-back of stale stock), and
  started again;
- a process dies holding FireWorks' own workflow lock (``WFLock`` taken, never given back), as
  the daemon does when killed inside ``reserve_fw`` or ``cancel_reservation``;
- every pool rename (``Pool.take``, by pilots and by the daemon) fails with ``ENOENT`` after it
  succeeded, half the time: NFS retried it (the failpoint ``pool.take.after_rename``).

A daemon killed inside one of FireWorks' own calls (``reserve_fw``, ``cancel_reservation``)
leaves that workflow's FireWorks lock held for good. The trial's ``FW_config.yaml`` sets what a
site that wants such locks broken sets, ``WFLOCK_EXPIRATION_KILL: true``, with a short
``WFLOCK_EXPIRATION_SECS`` (:data:`LOCK_EXPIRY`): the daemon breaks a lock seen held that long
(:class:`fwspool.launchpad.locks.LockWatch`), and never waits on one.

Then a clean daemon runs until every Firework has settled, is stopped, and one ``fwspool sync``
ingests and pushes the rest. Checked: (a) every record of the pool's spool files is in the
journal exactly once, nothing is pending; no task ran twice (each run appends to its
Firework's run log: duplicated otherwise); every Firework is COMPLETED, or FIZZLED by a kill
(a launch the batch system's check found lost or that recorded the signal), or WAITING behind
such a parent (lost otherwise); no Firework is left RESERVED with no entry for it in the pool's
``ready/`` or ``claimed/`` and no pilot alive (stalled); no launch document twice, no Firework
with more than one launch, the pool's ``claimed/`` empty (mismatched).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from fwspool.testing.chaos.cluster import Cluster, drop_database
from fwspool.testing.chaos.invariants import Check, check_journal, inventory, journal_rows
from fwspool.testing.chaos.progress import log
from fwspool.testing.chaos.trial import Scenario, ScenarioResult

NAME = "pilots and the stocking daemon killed, pool renames retried"
#: Independent Fireworks, and the length of the chain, per trial.
SINGLES, CHAIN = 6, 3
#: The daemon's own failpoints: each kills it with this probability where it strikes.
DAEMON_KILLS = ("stock.after_reserve", "stock.before_hand_back", "stock.after_hand_back")
KILL_CHANCE = 0.15
RENAME = "pool.take.after_rename"
FAULTS = ("kill_pilot", "scancel_pilot", "kill_daemon", "dead_lock")
#: WFLOCK_EXPIRATION_SECS of the trials' FireWorks (its default, 300 s, outlasts a trial).
LOCK_EXPIRY = 15


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    from fwspool.testing.devslurm import DevSlurm, available

    res = ScenarioResult(15, NAME)
    if not available():
        res.check.other += 1
        res.check.note("Slurm and munge are not installed: apt-get install slurm-wlm munge")
        return res
    # Short: munged's socket path must fit in sun_path.
    slurm_dir = tempfile.mkdtemp(prefix="s15-slurm-", dir="/tmp")
    kinds: dict[str, int] = {}
    try:
        with DevSlurm(slurm_dir) as slurm:
            slurm.start()
            for t in range(trials):
                c = Check()
                root = os.path.join(cluster.root, f"s15-t{t}-{rng.randrange(16**4):04x}")
                db = f"s15_t{t}_{rng.randrange(16**6):06x}"
                try:
                    res.faults += one_trial(
                        cluster, slurm, root, db, rng, c, kinds, seconds=40 if full else 12
                    )
                except Exception as exc:  # a harness-level failure is a failed trial
                    c.other += 1
                    c.note(f"trial s15-t{t} failed: {type(exc).__name__}: {exc}")
                finally:
                    slurm.run("scancel", "--user=root", check=False)
                res.trials += 1
                res.check.add(c)
                if not c.failed:
                    drop_database(cluster.uri, db)
                    shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(slurm_dir, ignore_errors=True)
    res.detail = f"{SINGLES} Fireworks and a chain of {CHAIN} per trial; faults landed: " + ", ".join(
        f"{k} {v}" for k, v in sorted(kinds.items())
    )
    return res


def one_trial(
    cluster: Cluster,
    slurm: Any,
    root: str,
    db: str,
    rng: random.Random,
    c: Check,
    kinds: dict[str, int],
    *,
    seconds: float,
) -> int:
    """One campaign; how many faults landed (kills of a live process, renames retried)."""
    from fireworks import Firework, ScriptTask, Workflow

    from fwspool.testing.docs import doc_line
    from fwspool.testing.launchpad import make_launchpad
    from fwspool.testing.slurm_site import Site

    os.makedirs(root)
    site = Site(Path(root), cluster.uri, db, slurm, doc_line("rocket_launch: $HOME/fw/.venv/bin/fwspool"))
    runs = Path(root) / "runs-log"
    runs.mkdir()
    struck = Path(root) / "failpoints"
    struck.mkdir()
    lp = make_launchpad(cluster.uri, db)
    with open(site.fw / "FW_config.yaml", "a") as f:
        f.write(f"WFLOCK_EXPIRATION_SECS: {LOCK_EXPIRY}\nWFLOCK_EXPIRATION_KILL: true\n")

    def step(name: str, fw_id: int | None = None) -> Firework:
        task = ScriptTask.from_str(f"echo run >> {runs}/{name}.log; sleep {rng.uniform(0.5, 2.5):.1f}")
        return Firework(task, name=name, fw_id=fw_id)

    names = [f"single{i}" for i in range(SINGLES)] + [f"chain{i}" for i in range(CHAIN)]
    for i in range(SINGLES):
        lp.add_wf(step(f"single{i}"))
    chain = [step(f"chain{i}", -(i + 1)) for i in range(CHAIN)]
    lp.add_wf(Workflow(chain, {-(i + 1): [-(i + 2)] for i in range(CHAIN - 1)}))
    pool = site.fw / "pool"
    ttl = f"{rng.uniform(4, 20):.0f}"

    def start(kills: bool) -> None:
        points = [f"{RENAME}=enoent@0.5"] + (
            [f"{p}=kill@{KILL_CHANCE}" for p in DAEMON_KILLS] if kills else []
        )
        site.start_sync(
            "--submit", "-q", str(site.qadapter), "-w", str(site.fw / "my_fworker.yaml"),
            "--pilot", str(pool), "--pool-size", "3", "--pool-ttl", ttl, "--idle-exit", "3",
            "--maxjobs_queue", "3", "--parallel", "2",
            FWSPOOL_FAILPOINTS=",".join(points), FWSPOOL_FAILPOINT_DIR=str(struck),
        )  # fmt: skip

    landed = 0
    start(kills=True)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(rng.uniform(1.0, 3.0))
            assert site.daemon is not None
            if site.daemon.poll() is not None:  # a failpoint of its own killed it
                kinds["daemon_failpoint"] = kinds.get("daemon_failpoint", 0) + 1
                landed += 1
                start(kills=True)
                continue
            kind = rng.choice(FAULTS)
            if kind == "kill_daemon":
                site.daemon.kill()
                site.daemon.wait(30)
                start(kills=True)
                hit = True
            elif kind == "dead_lock":
                hit = _leave_a_lock(lp, rng)
            else:
                hit = _strike_pilot(slurm, pool, kind, rng)
            if hit:
                kinds[kind] = kinds.get(kind, 0) + 1
                landed += 1
        # A clean daemon (renames still retried) until everything settled.
        assert site.daemon is not None
        if site.daemon.poll() is None:
            site.daemon.kill()
            site.daemon.wait(30)
        start(kills=False)
        deadline = time.monotonic() + 180
        # Settled, and the claims of killed pilots tidied (GONE_GRACE after their job is gone,
        # which may come after their launches were found lost).
        while time.monotonic() < deadline and not (_settled(lp, names) and not os.listdir(pool / "claimed")):
            time.sleep(1)
    finally:
        text = site.stop_sync() if site.daemon is not None and site.daemon.poll() is None else site.log()
    if "Traceback" in text:
        c.other += 1
        c.note(f"sync --watch printed a traceback: {text[text.index('Traceback') :][:600]}")
    retried = _lines(struck / f"{RENAME}.struck")
    kinds["rename_retried"] = kinds.get("rename_retried", 0) + retried
    landed += retried
    final = site.fwspool("sync", "-l", str(site.launchpad_file), "--journal", str(site.journal), check=False)
    if final.returncode != 0:
        c.other += 1
        c.note(f"the last sync exited {final.returncode}: {final.stderr.strip()[-400:]}")
    c.add(check_journal(str(site.journal), inventory(str(pool / "launches")), exact=False))
    pending = journal_rows(str(site.journal), "SELECT count(*) AS n FROM pending_events")[0]["n"]
    if pending:
        c.pending_left += pending
        c.note(f"{pending} events still pending after the last sync")
    _check(lp, names, runs, pool, slurm, c)
    lp.connection.close()
    log(f"  s15: faults so far {kinds}")
    return landed


def _leave_a_lock(lp: Any, rng: random.Random) -> bool:
    """Take FireWorks' lock of a random workflow not done yet, and never give it back (a
    process that died holding it); whether one was free to take."""
    from fireworks.core.launchpad import LockedWorkflowError, WFLock

    open_wfs = list(
        lp.workflows.find({"state": {"$nin": ["COMPLETED", "FIZZLED"]}, "locked": {"$exists": False}})
    )
    if not open_wfs:
        return False
    try:
        WFLock(lp, rng.choice(open_wfs)["nodes"][0], expire_secs=0).__enter__()
    except LockedWorkflowError:  # taken meanwhile
        return False
    return True


def _strike_pilot(slurm: Any, pool: Path, kind: str, rng: random.Random) -> bool:
    """SIGKILL or scancel a running pilot (by its record); whether one was running."""
    records = []
    for path in (pool / "pilots").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            records.append(json.loads(path.read_text()))
    if not records:
        return False
    record = rng.choice(records)
    if kind == "kill_pilot":
        try:
            os.kill(int(record["pid"]), signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True
    if not record.get("batch_job_id"):
        return False
    slurm.scancel(str(record["batch_job_id"]))
    return True


def _settled(lp: Any, names: list[str]) -> bool:
    docs = {
        d["name"]: d for d in lp.fireworks.find({"name": {"$in": names}}, {"name": 1, "state": 1, "fw_id": 1})
    }
    return all(_final(lp, d) for d in docs.values()) and len(docs) == len(names)


def _final(lp: Any, doc: dict[str, Any]) -> bool:
    """COMPLETED or FIZZLED, or WAITING behind a parent that will not complete."""
    if doc["state"] in ("COMPLETED", "FIZZLED"):
        return True
    if doc["state"] != "WAITING":
        return False
    wf = lp.workflows.find_one({"nodes": doc["fw_id"]}, {"links": 1, "fw_states": 1})
    parents = [int(p) for p, kids in wf["links"].items() if doc["fw_id"] in kids]
    return any(wf["fw_states"].get(str(p)) in ("FIZZLED", "WAITING") for p in parents)


def _check(lp: Any, names: list[str], runs: Path, pool: Path, slurm: Any, c: Check) -> None:
    held = {
        int(n.split(".")[0]) for sub in ("ready", "claimed") for n in os.listdir(pool / sub) if n[0].isdigit()
    }
    pilots_alive = bool(slurm.run("squeue", "-h", "-o", "%i", check=False).stdout.strip())
    for name in names:
        doc = lp.fireworks.find_one({"name": name})
        ran = _lines(runs / f"{name}.log")
        if ran > 1:
            c.duplicated += 1
            c.note(f"{name}: its task ran {ran} times")
        launches = doc.get("launches") or []
        if len(launches) > 1:
            c.mismatched += 1
            c.note(f"{name}: {len(launches)} launches {launches}")
        for lid in launches:
            if lp.launches.count_documents({"launch_id": lid}) != 1:
                c.mismatched += 1
                c.note(
                    f"{name}: launch {lid} has {lp.launches.count_documents({'launch_id': lid})} documents"
                )
        if doc["state"] == "COMPLETED" and ran != 1:
            c.lost += 1
            c.note(f"{name}: COMPLETED, its task ran {ran} times")
        elif doc["state"] == "FIZZLED" and not _killed(lp, launches):
            c.mismatched += 1
            c.note(f"{name}: FIZZLED, but no kill recorded for launches {launches}")
        elif doc["state"] == "RESERVED" and not (set(launches) & held) and not pilots_alive:
            c.stalled += 1
            c.note(f"{name}: left RESERVED (launches {launches}) with nothing in the pool and no pilot")
        elif not _final(lp, doc):
            c.lost += 1
            c.note(f"{name}: left {doc['state']} (launches {launches})")
    claimed = os.listdir(pool / "claimed")
    if claimed:
        c.mismatched += 1
        c.note(f"claimed/ still holds {claimed}")


def _killed(lp: Any, launches: list[int]) -> bool:
    """Whether a launch's end says it was killed (lost, or the signal it recorded)."""
    for lid in launches:
        launch = lp.launches.find_one({"launch_id": lid}, {"action": 1})
        stored = ((launch or {}).get("action") or {}).get("stored_data") or {}
        if "_fwspool_exit" in stored or "_fwspool_lost" in stored:
            return True
    return False


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


SCENARIO = Scenario(15, NAME, (1, 10), run)
