"""Scenario 14: a real cluster's faults, on the network-namespace site (fwspool.testing.topology).

Each trial builds the site (a database host, a login host, two compute hosts with no route to
the database, Slurm across them) and runs a campaign there: one-per-job launches submitted with
FireWorks' own ``qlaunch -r rapidfire`` and packed ones with ``fwspool qlaunch --pack``, the
README's ``rocket_launch`` line, ``fwspool sync --watch`` on the login host. While the jobs run,
faults strike one after another at random: a compute host crashes (its slurmd and every process
on it killed; it comes back later), a compute host's cable is pulled for a while (its job is
requeued elsewhere while the stray copy runs on), the database host's cable is pulled, or the
login host drops every packet from the database. Every job can be requeued, so every Firework
must end COMPLETED.

Afterwards (the daemon stopped, one more ``fwspool sync``): (a) every record of the spool files
is in the journal exactly once (:func:`~fwspool.testing.chaos.invariants.check_journal`);
nothing is pending; every Firework is COMPLETED with its one launch, and its workflow too
(mismatched otherwise); no task ran again after a run of its launch had finished it (each task
run appends to ``runs.log`` in its launch directory: duplicated otherwise); a task that never
ran is lost.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.invariants import Check, check_journal, inventory, journal_rows
from fwspool.testing.chaos.progress import log
from fwspool.testing.chaos.trial import Scenario, ScenarioResult

NAME = "node crashes, link cuts and login-to-database cuts on a namespace cluster"
#: One-per-job Fireworks, and packed ones (PACK per job), per trial.
SINGLES, PACKED, PACK = 4, 4, 2
#: Each task run: its start and end with Slurm's restart count, then a sleep of its own.
TASK = (
    'echo "start ${SLURM_RESTART_COUNT:-0} $(date +%s.%N)" >> runs.log; sleep {sleep}; '
    'echo "end ${SLURM_RESTART_COUNT:-0} $(date +%s.%N)" >> runs.log'
)
FAULTS = ("crash", "cut_node", "cut_db", "drop_db")


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(13, NAME)
    from fwspool.testing.topology import available

    missing = available()
    if missing:
        res.check.other += 1
        res.check.note(f"cannot build the namespace cluster: {missing}")
        return res
    for t in range(trials):
        c = Check()
        root = os.path.join(cluster.root, f"s13-{t}-{rng.randrange(16**4):04x}")
        try:
            res.faults += one_trial(root, rng, c, faults=3 if full else 2)
        except Exception as exc:  # a harness-level failure is a failed trial
            c.other += 1
            c.note(f"trial s13-t{t} failed: {type(exc).__name__}: {exc}")
        res.trials += 1
        res.check.add(c)
        if not c.failed:
            shutil.rmtree(root, ignore_errors=True)
    res.detail = (
        f"{SINGLES} one-per-job and {PACKED} packed Fireworks ({PACK} per job) per trial, "
        f"{'3' if full else '2'} faults of: {', '.join(FAULTS)}"
    )
    return res


def one_trial(root: str, rng: random.Random, c: Check, *, faults: int) -> int:
    """One campaign on a fresh site; how many faults struck while jobs ran."""
    from fireworks import Firework, ScriptTask

    from fwspool.testing.launchpad import make_launchpad
    from fwspool.testing.slurm_site import BIN, Site
    from fwspool.testing.topology import Topology

    os.makedirs(root)
    with Topology(os.path.join(root, "net")) as topo, topo.entered("login"):
        assert topo.slurm is not None and topo.db is not None
        db = "chaos_cluster"
        lp = make_launchpad(topo.db_uri, db)
        names = [f"single{i}" for i in range(SINGLES)] + [f"packed{i}" for i in range(PACKED)]
        for name in names:
            lp.add_wf(
                Firework(ScriptTask.from_str(TASK.replace("{sleep}", f"{rng.uniform(4, 12):.1f}")), name=name)
            )
        rocket = f"rocket_launch: {BIN}/fwspool rlaunch -w $HOME/fw/my_fworker.yaml singleshot --offline"
        # The jobs' inbox is the default one, under this trial's own home directory.
        site = Site(Path(root), topo.db_uri, db, topo.slurm, rocket)
        (site.fw / "packed.yaml").write_text(
            'name: packed\ncategory: \'\'\nquery: \'{"name": {"$regex": "^packed"}}\'\n'
        )
        site.start_sync(interval="1")
        try:
            _submit(site, c)
            landed = _strike(topo, site, lp, rng, faults, c)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not _all_completed(lp, names):
                time.sleep(1)
        finally:
            log_text = site.stop_sync()
        if "Traceback" in log_text:
            c.other += 1
            c.note(f"sync --watch printed a traceback: {log_text[-600:]}")
        final = site.fwspool(
            "sync", "-l", str(site.launchpad_file), "--journal", str(site.journal), check=False
        )
        if final.returncode != 0:
            c.other += 1
            c.note(f"the last sync exited {final.returncode}: {final.stderr.strip()[-400:]}")
        c.add(check_journal(str(site.journal), inventory(str(site.runs)), exact=False))
        _check(lp, names, str(site.journal), c)
        lp.connection.close()
    return landed


def _submit(site: Any, c: Check) -> None:
    """The packed jobs with ``fwspool qlaunch --pack`` (a FWorker that takes only the packed
    Fireworks), then one job per remaining Firework with FireWorks' own ``qlaunch -r rapidfire``."""
    from fwspool.testing.slurm_site import BIN

    for _ in range(PACKED // PACK):
        cmd = [str(BIN / "fwspool"), "qlaunch", "-r", "-l", str(site.launchpad_file)]
        cmd += [
            "-w",
            str(site.fw / "packed.yaml"),
            "-q",
            str(site.qadapter),
            "--pack",
            str(PACK),
            "singleshot",
        ]
        res = subprocess.run(cmd, cwd=site.runs, env=site.env(), capture_output=True, text=True, timeout=180)
        if res.returncode != 0:
            c.other += 1
            c.note(f"fwspool qlaunch --pack exited {res.returncode}: {res.stderr.strip()[-400:]}")
    site.qlaunch("rapidfire", "--nlaunches", str(SINGLES), "--sleep", "0")


def _strike(topo: Any, site: Any, lp: Any, rng: random.Random, faults: int, c: Check) -> int:
    """``faults`` faults one after another while jobs run; how many struck running jobs."""
    slurm = topo.slurm
    landed = 0
    deadline = time.monotonic() + 60  # the first fault waits for a running job (a loaded machine)
    while time.monotonic() < deadline and not slurm.run("squeue", "-h", "-t", "R", check=False).stdout:
        time.sleep(0.5)
    time.sleep(rng.uniform(1, 3))
    for _ in range(faults):
        kind = rng.choice(FAULTS)
        running = slurm.run("squeue", "-h", "-t", "R", "-o", "%N", check=False).stdout.split()
        node = rng.choice(running) if running else rng.choice(("cn1", "cn2"))
        landed += bool(running)
        log(f"  s13: {kind} ({node if kind in ('crash', 'cut_node') else 'db'}); jobs running on {running}")
        if kind == "crash":
            topo.crash(node)
            time.sleep(rng.uniform(12, 20))  # Slurm notices after SlurmdTimeout (10 s) or at re-registration
            slurm.start_node(node)
        elif kind == "cut_node":
            topo.cut(node)
            time.sleep(rng.uniform(5, 20))
            topo.cut(node, up=True)
        elif kind == "cut_db":
            topo.cut("db")
            time.sleep(rng.uniform(3, 12))
            topo.cut("db", up=True)
        else:
            topo.drop("login", topo.address("db"))
            time.sleep(rng.uniform(3, 12))
            topo.drop("login", topo.address("db"), on=False)
        time.sleep(rng.uniform(1, 4))
    return landed


def _all_completed(lp: Any, names: list[str]) -> bool:
    try:
        docs = list(lp.fireworks.find({"name": {"$in": names}}, {"state": 1}))
    except Exception:  # noqa: BLE001 - the database may still be cut off: not yet
        return False
    return len(docs) == len(names) and all(d["state"] == "COMPLETED" for d in docs)


def _check(lp: Any, names: list[str], journal: str, c: Check) -> None:
    for name in names:
        fw = lp.fireworks.find_one({"name": name})
        launches = fw.get("launches") or []
        wf = lp.workflows.find_one({"nodes": fw["fw_id"]}, {"state": 1})
        if fw["state"] != "COMPLETED" or len(launches) != 1 or wf["state"] != "COMPLETED":
            c.mismatched += 1
            c.note(f"{name}: {fw['state']}, launches {launches}, workflow {wf['state']}")
        if not launches:
            continue
        launch = lp.launches.find_one({"launch_id": launches[-1]}, {"launch_dir": 1})
        log_path = os.path.join(launch.get("launch_dir") or "", "runs.log")
        lines = Path(log_path).read_text(encoding="utf-8").split("\n") if os.path.exists(log_path) else []
        starts = [float(ln.split()[2]) for ln in lines if ln.startswith("start ")]
        ends = [float(ln.split()[2]) for ln in lines if ln.startswith("end ")]
        if not starts:
            c.lost += 1
            c.note(f"{name}: its task never ran")
        elif ends and any(s > min(ends) for s in starts):
            c.duplicated += 1
            c.note(f"{name}: a run started after one had finished the task ({' | '.join(lines).strip()})")
    pending = journal_rows(journal, "SELECT count(*) AS n FROM pending_events")[0]["n"]
    if pending:
        c.pending_left += pending
        c.note(f"{pending} events still pending after the last sync")


SCENARIO = Scenario(14, NAME, (1, 5), run)
