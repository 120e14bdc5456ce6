#!/usr/bin/env python3
"""Job packing on the real path: N short Fireworks one per batch job, then K per job.

    python tools/bench_pack.py                          # 200 Fireworks, K = 25, P = 4
    python tools/bench_pack.py --fireworks 60 --pack 10 --parallel 2 --json

Everything is real and started here: a throwaway MongoDB-wire server (fwspool.devserver), a
private single-node Slurm cluster (fwspool.testing.devslurm, needs root and Debian's slurm-wlm + munge),
a CommonAdapter SLURM queue adapter whose ``rocket_launch`` is the README's line, and
``fwspool sync --watch --interval 0.5``. The same workload (``--fireworks`` Fireworks, each
sleeping ``--seconds``) runs twice on fresh LaunchPads:

- one per job: FireWorks' own ``qlaunch -r rapidfire`` (what offline mode does today);
- packed: ``fwspool qlaunch --pack K --parallel P rapidfire``.

For each: the batch jobs used, the wall time from the first submission until every Firework is
COMPLETED on the LaunchPad, and — packed — the idle time inside a job between one Firework's end
(``completed_on``) and the start (``started_on``) of the next one started in its slot (median and
worst, from the journal). Targets: K x fewer jobs; median idle <= 0.5 s. Exit status 1 when a
run did not finish; a missed target exits 1 only with ``--check``.
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
from fwspool.testing.slurm_site import qlaunch_command, running_sync, site_files

BIN = os.path.dirname(os.path.abspath(sys.executable))


def log(msg: str) -> None:
    print(f"[bench_pack {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def one_run(
    slurm: DevSlurm, server: DevServer, work: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    from fireworks import Firework, PyTask

    run_dir = os.path.join(work, mode)
    os.makedirs(os.path.join(run_dir, "runs"))
    db = f"bench_pack_{mode}"
    lp = make_launchpad(server.uri, db)
    for i in range(args.fireworks):
        lp.add_wf(Firework(PyTask(func="time.sleep", args=[args.seconds]), name=f"fw{i}"))
    files = site_files(run_dir, server.uri, db, queue_update_interval=0)
    env = {
        **slurm.environ(),
        "FWSPOOL_INBOX": os.path.join(run_dir, "inbox"),
        "FW_CONFIG_FILE": files["fw_config"],
    }
    journal = os.path.join(run_dir, "journal.sqlite3")
    if mode == "one_per_job":
        cmd = qlaunch_command(
            files["launchpad"], files["fworker"], files["qadapter"], "rapidfire", "--sleep", "1"
        )
    else:
        cmd = [
            f"{BIN}/fwspool",
            "qlaunch",
            "-r",
            "-l",
            files["launchpad"],
            "-w",
            files["fworker"],
            "-q",
            files["qadapter"],
            "--pack",
            str(args.pack),
            "--parallel",
            str(args.parallel),
            "rapidfire",
            "--sleep",
            "1",
        ]
    with running_sync(run_dir, files["launchpad"], journal, env, 0.5):
        log(f"{mode}: {args.fireworks} Fireworks of {args.seconds:g} s, work dir {run_dir}")
        start = time.monotonic()
        with open(os.path.join(run_dir, "qlaunch.log"), "ab") as out:
            qlaunch = subprocess.Popen(
                cmd, cwd=os.path.join(run_dir, "runs"), env=env, stdout=out, stderr=out
            )
        deadline = start + args.timeout
        done = 0
        while time.monotonic() < deadline:
            done = lp.fireworks.count_documents({"state": "COMPLETED"})
            if done == args.fireworks:
                break
            time.sleep(0.1)
        wall = time.monotonic() - start
        qlaunch.wait(120)
    jobs = {
        h.get("reservation_id")
        for d in lp.launches.find({}, {"state_history": 1})
        for h in d["state_history"]
        if h.get("reservation_id")
    }
    result: dict[str, Any] = {
        "mode": mode,
        "fireworks": args.fireworks,
        "completed": done,
        "batch_jobs": len(jobs),
        "wall_s": round(wall, 1),
    }
    if mode == "packed":
        gaps = idle_gaps(journal, args.parallel)
        result["idle_median_s"] = round(statistics.median(gaps), 3) if gaps else None
        result["idle_worst_s"] = round(max(gaps), 3) if gaps else None
        result["idle_samples"] = len(gaps)
    return result


def idle_gaps(journal: str, parallel: int) -> list[float]:
    """Per block (a launch directory's parent), in start order: each start after the first
    ``parallel`` minus the end, in that block, that freed its slot (the latest end before it
    that no earlier start had taken)."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT l.launch_dir, e.type, e.payload FROM events AS e JOIN launches AS l USING (launch_id) "
            "WHERE e.type IN ('started', 'completed')"
        ).fetchall()
    finally:
        db.close()
    blocks: dict[str, dict[str, list[Any]]] = {}
    for launch_dir, kind, payload in rows:
        p = json.loads(payload)
        b = blocks.setdefault(os.path.dirname(launch_dir), {"started": [], "completed": []})
        b[kind].append(as_utc(p["started_on"] if kind == "started" else p["completed_on"]))
    gaps = []
    for b in blocks.values():
        starts = sorted(b["started"])
        ends = sorted(b["completed"])
        for k, st in enumerate(starts[parallel:]):
            # The slot this start took was freed by the k-th end (ends and starts pair in order).
            if k < len(ends):
                gaps.append((st - ends[k]).total_seconds())
    return gaps


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"{args.fireworks} Fireworks of {args.seconds:g} s; packed: K = {args.pack}, P = {args.parallel}",
        "",
        "| submission | batch jobs | wall time until all COMPLETED | idle between Fireworks in a job (median / worst) |",
        "|------------|-----------:|------------------------------:|--------------------------------------------------|",
    ]
    for r in results:
        idle = f"{r['idle_median_s']} s / {r['idle_worst_s']} s" if r["mode"] == "packed" else "(one per job)"
        name = (
            "one per job (FireWorks' qlaunch -r)" if r["mode"] == "one_per_job" else "fwspool qlaunch --pack"
        )
        lines.append(f"| {name} | {r['batch_jobs']} | {r['wall_s']} s | {idle} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fireworks", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=1.0, help="each Firework sleeps this long")
    ap.add_argument("--pack", type=int, default=25)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--skip-one-per-job", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    if not available():
        log("Slurm is not installed: apt-get install -y slurm-wlm munge (as root)")
        return 2
    work = tempfile.mkdtemp(prefix="fwspool-bench-pack-")
    results = []
    with DevServer(os.path.join(work, "mongo")) as server, DevSlurm(os.path.join(work, "slurm")) as slurm:
        modes = ("packed",) if args.skip_one_per_job else ("packed", "one_per_job")
        for mode in modes:
            results.append(one_run(slurm, server, work, mode, args))
            log(json.dumps(results[-1]))
    print(json.dumps(results, indent=2) if args.json else table(results, args))
    if any(r["completed"] != r["fireworks"] for r in results):
        return 1
    packed = results[0]
    missed = packed["idle_median_s"] is None or packed["idle_median_s"] > 0.5
    expected_jobs = -(-args.fireworks // args.pack)
    missed = missed or packed["batch_jobs"] > expected_jobs
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
