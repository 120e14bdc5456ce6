#!/usr/bin/env python3
"""Pilot jobs on the real path: a chain of 10 and a fan-out of 20, the gap from a step's end to
its child's start.

    python tools/bench_pilot.py                 # pilot, --pack and one per job, in one run
    python tools/bench_pilot.py --only pilot --json

Everything is real and started here: a throwaway MongoDB-wire server (fwspool.devserver), a
private single-node Slurm cluster (fwspool.testing.devslurm: root, slurm-wlm, munge), a
CommonAdapter SLURM queue adapter whose ``rocket_launch`` is the README's line. The same
workload (a chain of ``--chain`` Fireworks; a root with ``--fan-out`` children; each sleeping
``--seconds``) runs on a fresh LaunchPad in each mode, ingest and push every ``--interval`` s:

- ``pilot``: ``fwspool sync --watch --submit --pilot POOL --pool-size K --parallel P
  --maxjobs_queue 2`` (K: the whole workload, unless ``--pool-size``) (pilots pull children as a push makes them READY);
- ``pack``: ``fwspool sync --watch --submit --pack F --parallel P`` (one daemon, packed jobs);
- ``one_per_job``: FireWorks' ``qlaunch -r rapidfire`` and ``fwspool sync --watch``.

For each: the batch jobs used, the wall time until every Firework is COMPLETED, and the gap of
every Firework with a parent: its ``started_on`` minus its parent's ``completed_on`` (median and
worst). Target for pilots: worst and median <= interval + 2 s. Exit 1 when a run did not
finish; a missed target exits 1 only with ``--check``.

For pilots, where each gap went too (median / worst of each stage over the same steps): the
parent's end to its ``completed`` event ingested, to that event pushed (the push makes the child
READY), to the child reserved (its launch's RESERVED in ``state_history``), to the child claimed
by a pilot (its claim record's ``claimed_on``), to the child started.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from fwspool.devserver import DevServer
from fwspool.events import as_utc
from fwspool.testing.devslurm import DevSlurm, available
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import qlaunch_command, running_sync, site_files, sync_command

BIN = os.path.dirname(os.path.abspath(sys.executable))
MODES = ("pilot", "pack", "one_per_job")


def log(msg: str) -> None:
    print(f"[bench_pilot {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def workload(lp: Any, args: argparse.Namespace) -> None:
    from fireworks import Firework, PyTask, Workflow

    def step(name: str, fw_id: int) -> Firework:
        return Firework(PyTask(func="time.sleep", args=[args.seconds]), name=name, fw_id=fw_id)

    chain = [step(f"chain{i}", -(i + 1)) for i in range(args.chain)]
    lp.add_wf(Workflow(chain, {-(i + 1): [-(i + 2)] for i in range(args.chain - 1)}))
    root = step("root", -1)
    children = [step(f"child{i}", -(i + 2)) for i in range(args.fan_out)]
    lp.add_wf(Workflow([root, *children], {-1: [c.fw_id for c in children]}))


def command(mode: str, files: dict[str, str], journal: str, pool: str, args: argparse.Namespace) -> list[str]:
    daemon = sync_command(
        f"{BIN}/fwspool", files["launchpad"], journal, str(args.interval), "--lost-after", "3"
    )
    submit = ["--submit", "-q", files["qadapter"], "-w", files["fworker"], "--parallel", str(args.parallel)]
    if mode == "pilot":
        size = str(args.pool_size or args.chain + args.fan_out + 1)
        return [
            *daemon,
            *submit,
            "--pilot",
            pool,
            "--pool-size",
            size,
            "--maxjobs_queue",
            "2",
            "--idle-exit",
            "20",
        ]
    return [*daemon, *submit, "--pack", str(args.fan_out)]


def one_run(
    slurm: DevSlurm, server: DevServer, work: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    run_dir = os.path.join(work, mode)
    runs = os.path.join(run_dir, "runs")
    os.makedirs(runs)
    db = f"bench_pilot_{mode}"
    lp = make_launchpad(server.uri, db)
    workload(lp, args)
    total = args.chain + 1 + args.fan_out
    files = site_files(run_dir, server.uri, db, queue_update_interval=0)
    env = {
        **slurm.environ(),
        "FWSPOOL_INBOX": os.path.join(run_dir, "inbox"),
        "FW_CONFIG_FILE": files["fw_config"],
    }
    journal = os.path.join(run_dir, "journal.sqlite3")
    log(f"{mode}: chain of {args.chain} + fan-out of {args.fan_out}, {args.seconds:g} s each, in {run_dir}")
    start = time.monotonic()
    with open(os.path.join(run_dir, "daemon.log"), "ab") as out:
        if mode == "one_per_job":
            with running_sync(run_dir, files["launchpad"], journal, env, args.interval):
                cmd = qlaunch_command(
                    files["launchpad"], files["fworker"], files["qadapter"], "rapidfire", "--sleep", "1"
                )
                proc = subprocess.Popen(cmd, cwd=runs, env=env, stdout=out, stderr=out)
                done = wait_done(lp, total, start + args.timeout)
                proc.terminate()
                proc.wait(60)
        else:
            pool = os.path.join(run_dir, "pool")
            proc = subprocess.Popen(
                command(mode, files, journal, pool, args), cwd=runs, env=env, stdout=out, stderr=out
            )
            done = wait_done(lp, total, start + args.timeout)
            proc.terminate()
            proc.wait(120)
    wall = time.monotonic() - start
    slurm.run("scancel", "--user=root", check=False)
    gaps = step_gaps(lp)
    chain = step_gaps(lp, only_chain=True)
    return {
        "mode": mode,
        "fireworks": total,
        "completed": done,
        "batch_jobs": len(jobs_used(journal)),
        "wall_s": round(wall, 1),
        "gap_median_s": round(statistics.median(gaps), 2) if gaps else None,
        "gap_worst_s": round(max(gaps), 2) if gaps else None,
        "gap_samples": len(gaps),
        "chain_gap_median_s": round(statistics.median(chain), 2) if chain else None,
        "chain_gap_worst_s": round(max(chain), 2) if chain else None,
        "stages": stages(lp, journal) if mode == "pilot" else None,
    }


def wait_done(lp: Any, total: int, deadline: float) -> int:
    done = 0
    while time.monotonic() < deadline:
        done = lp.fireworks.count_documents({"state": "COMPLETED"})
        if done == total:
            break
        time.sleep(0.2)
    return int(done)


def jobs_used(journal: str) -> set[str]:
    """The batch jobs that started a launch, from the journal's started events."""
    rows = journal_rows(
        journal, "SELECT DISTINCT json_extract(payload, '$.batch_job_id') FROM events WHERE type = 'started'"
    )
    return {str(job) for (job,) in rows if job}


def journal_rows(journal: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of a query of the journal, read-only."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def step_gaps(lp: Any, only_chain: bool = False) -> list[float]:
    """For every Firework with parents (``only_chain``: in a workflow where each Firework has
    at most one child): its launch's start minus its parents' last end."""
    launches = {
        d["fw_id"]: d
        for d in lp.launches.find({"state": "COMPLETED"}, {"fw_id": 1, "time_start": 1, "time_end": 1})
    }
    gaps = []
    for wf in lp.workflows.find({}, {"links": 1}):
        if only_chain and any(len(children) > 1 for children in wf["links"].values()):
            continue
        parents: dict[int, list[int]] = {}
        for parent, children in wf["links"].items():
            for child in children:
                parents.setdefault(child, []).append(int(parent))
        for child, ps in parents.items():
            if child in launches and all(p in launches for p in ps):
                end = max(as_utc(launches[p]["time_end"]) for p in ps)
                gaps.append((as_utc(launches[child]["time_start"]) - end).total_seconds())
    return gaps


STAGES = (
    "ended -> ingested",
    "ingested -> pushed",
    "pushed -> reserved",
    "reserved -> claimed",
    "claimed -> started",
)


def stages(lp: Any, journal: str) -> dict[str, list[float]]:
    """For every Firework with one parent, the seconds each stage of its gap took (:data:`STAGES`,
    see the module's description), keyed by the stage; steps missing a time are left out."""
    from fwspool.pool import read_claim_record

    rows = journal_rows(
        journal,
        "SELECT fw_id, min(ingested_at), min(pushed_at) FROM events WHERE type = 'completed' GROUP BY fw_id",
    )
    completed = {int(fw): (ing, pushed) for fw, ing, pushed in rows if fw is not None}
    launches = {
        d["fw_id"]: d
        for d in lp.launches.find(
            {"state": "COMPLETED"},
            {"fw_id": 1, "time_start": 1, "time_end": 1, "state_history": 1, "launch_dir": 1},
        )
    }
    out: dict[str, list[float]] = {name: [] for name in STAGES}
    for wf in lp.workflows.find({}, {"links": 1}):
        for parent, children in wf["links"].items():
            for child in children:
                p, c = launches.get(int(parent)), launches.get(child)
                ing, pushed = completed.get(int(parent), (None, None))
                record = read_claim_record(c["launch_dir"]) if c else None
                reserved = [
                    h["created_on"] for h in (c or {}).get("state_history", []) if h["state"] == "RESERVED"
                ]
                if p is None or c is None or not (ing and pushed and record and reserved):
                    continue
                times = [p["time_end"], ing, pushed, reserved[0], record.claimed_on, c["time_start"]]
                utc = [as_utc(t) for t in times]
                for name, a, b in zip(STAGES, utc, utc[1:], strict=False):
                    out[name].append(round((b - a).total_seconds(), 3))
    return out


def stage_table(found: dict[str, list[float]]) -> str:
    lines = [
        "| pilots: stage of the gap | median | worst | n |",
        "|--------------------------|-------:|------:|--:|",
    ]
    for name in STAGES:
        xs = found[name]
        if xs:
            lines.append(f"| {name} | {statistics.median(xs):.2f} s | {max(xs):.2f} s | {len(xs)} |")
    return "\n".join(lines)


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"chain of {args.chain} + fan-out of {args.fan_out}, {args.seconds:g} s each; interval {args.interval:g} s; "
        f"P = {args.parallel}",
        "",
        "| submission | batch jobs | wall time until all COMPLETED | parent end -> child start (median / worst, n) "
        "| of which the chain (median / worst) |",
        "|------------|-----------:|------------------------------:|------------------------------------------------"
        "|-------------------------------------|",
    ]
    names = {
        "pilot": "pilots (sync --submit --pilot)",
        "pack": "packed (sync --submit --pack)",
        "one_per_job": "one per job (FireWorks' qlaunch -r)",
    }
    for r in results:
        lines.append(
            f"| {names[r['mode']]} | {r['batch_jobs']} | {r['wall_s']} s | "
            f"{r['gap_median_s']} s / {r['gap_worst_s']} s, {r['gap_samples']} | "
            f"{r['chain_gap_median_s']} s / {r['chain_gap_worst_s']} s |"
        )
    for r in results:
        if r.get("stages"):
            lines += ["", stage_table(r["stages"])]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chain", type=int, default=10)
    ap.add_argument("--fan-out", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=1.0, help="each Firework sleeps this long")
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument(
        "--pool-size", type=int, default=0, help="pilots: launches in stock [default: all the workload's]"
    )
    ap.add_argument("--interval", type=float, default=0.5, help="ingest and push every this many seconds")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--only", choices=MODES, action="append")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true", help="exit 1 when the pilot target is missed")
    args = ap.parse_args()
    if not available():
        log("Slurm is not installed: apt-get install -y slurm-wlm munge (as root)")
        return 2
    work = tempfile.mkdtemp(prefix="fwspool-bench-pilot-")
    results = []
    with DevServer(os.path.join(work, "mongo")) as server, DevSlurm(os.path.join(work, "slurm")) as slurm:
        for mode in args.only or MODES:
            results.append(one_run(slurm, server, work, mode, args))
            log(json.dumps(results[-1]))
    print(json.dumps(results, indent=2) if args.json else table(results, args))
    if any(r["completed"] != r["fireworks"] for r in results):
        return 1
    pilot = next((r for r in results if r["mode"] == "pilot"), None)
    target = args.interval + 2
    missed = pilot is not None and (pilot["gap_worst_s"] is None or pilot["gap_worst_s"] > target)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
