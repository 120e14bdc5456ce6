#!/usr/bin/env python3
"""Latency of the real path: from a batch job's completion to its child READY on the LaunchPad.

    python tools/bench_latency.py                    # 24 jobs, sync --watch --interval 5
    python tools/bench_latency.py --jobs 40 --interval 2 --json
    python tools/bench_latency.py --topology         # on the network-namespace site

Everything is real and started here: a throwaway MongoDB-wire server (fwspool.devserver), a
private single-node Slurm cluster (fwspool.testing.devslurm, needs root and Debian's slurm-wlm + munge),
FireWorks' own `qlaunch -r rapidfire` with a CommonAdapter SLURM queue adapter whose
`rocket_launch` is the README's line, and `fwspool sync --watch --interval S` as the README runs it.

The workload is ``--jobs`` independent parent -> child workflows; each parent sleeps 1-3 s in its
batch job. For each parent the latency is the time from its ``completed`` event (``completed_on``,
the compute node's clock: the same machine here) to the moment its child is first seen READY on
the LaunchPad (polled every 50 ms, so figures are up to 50 ms late). Target: worst <= S + 2 s.
Exit status 1 when a workflow did not finish; a missed target exits 1 only with ``--check``.

With ``--topology`` the same runs on the site of fwspool.testing.topology: the database on its
own host, ``qlaunch`` and ``sync --watch`` on the login host (this process moves there), the jobs
on two compute hosts that have no route to the database.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from fwspool.devserver import DevServer
from fwspool.events import as_utc, utcnow
from fwspool.testing.devslurm import DevSlurm, available
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import qlaunch_command, running_sync, site_files


def log(msg: str) -> None:
    print(f"[bench_latency {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole measurement, in a new work directory: a server, a Slurm cluster, the workflows,
    the daemon and ``qlaunch``; the latencies seen."""
    work = tempfile.mkdtemp(prefix="fwspool-bench-latency-")
    if args.topology:
        from fwspool.testing.topology import Topology

        with Topology(os.path.join(work, "net")) as topo, topo.entered("login"):
            assert topo.slurm is not None
            log(f"on the network-namespace site: database {topo.db_uri}, compute hosts cn1, cn2")
            return measure(args, work, topo.db_uri, topo.slurm)
    with DevServer(os.path.join(work, "mongo")) as server, DevSlurm(os.path.join(work, "slurm")) as slurm:
        return measure(args, work, server.uri, slurm)


def measure(args: argparse.Namespace, work: str, uri: str, slurm: DevSlurm) -> dict[str, Any]:
    """The workflows, the daemon and ``qlaunch`` against the LaunchPad at ``uri``; the latencies seen."""
    db = "bench_latency"
    lp = make_launchpad(uri, db)
    children = add_workflows(lp, args.jobs, args.seed)
    # The FWorker's category keeps rapidfire from reserving the children: only parents are jobs.
    files = site_files(work, uri, db, category="bench", queue_update_interval=0.2)
    env = {
        **slurm.environ(),
        "FWSPOOL_INBOX": os.path.join(work, "inbox"),
        "FW_CONFIG_FILE": files["fw_config"],
    }
    journal = os.path.join(work, "journal.sqlite3")
    with running_sync(work, files["launchpad"], journal, env, args.interval):
        log(f"{args.jobs} jobs, sync --watch --interval {args.interval}, work dir {work}")
        qlaunch = start_qlaunch(work, files, env, args.jobs)
        ready_at = watch_children_become_ready(lp, children, args.timeout)
        qlaunch.wait(60)
        return summary(args, completion_to_ready_seconds(lp, children, ready_at))


def add_workflows(lp: Any, jobs: int, seed: int) -> dict[int, int]:
    """``jobs`` parent -> child workflows, each parent sleeping 1-3 s; {parent fw_id: child fw_id}."""
    from fireworks import Firework, PyTask, Workflow

    rng = random.Random(seed)
    children = {}
    for i in range(jobs):
        parent = Firework(
            PyTask(func="time.sleep", args=[rng.uniform(1, 3)]),
            name=f"parent{i}",
            spec={"_category": "bench"},
        )
        child = Firework(PyTask(func="time.sleep", args=[0]), name=f"child{i}")
        old = (parent.fw_id, child.fw_id)  # add_wf renumbers the objects in place
        ids = lp.add_wf(Workflow([parent, child], {parent: [child]}))
        children[ids[old[0]]] = ids[old[1]]
    return children


def start_qlaunch(
    work: str, files: dict[str, str], env: dict[str, str], jobs: int
) -> subprocess.Popen[bytes]:
    """FireWorks' ``qlaunch -r rapidfire``, submitting one batch job per parent from ``work/runs``."""
    runs = os.path.join(work, "runs")
    os.makedirs(runs)
    # The FWorker's category keeps rapidfire from reserving the children: only parents are jobs.
    rapidfire = ("rapidfire", "--nlaunches", str(jobs), "--sleep", "1")
    return subprocess.Popen(
        qlaunch_command(files["launchpad"], files["fworker"], files["qadapter"], *rapidfire),
        cwd=runs,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def watch_children_become_ready(lp: Any, children: dict[int, int], timeout: float) -> dict[int, Any]:
    """When each child was first seen READY (polled every 50 ms), until all were or ``timeout``."""
    ready_at: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(ready_at) < len(children) and time.monotonic() < deadline:
        for d in lp.fireworks.find(
            {"fw_id": {"$in": list(children.values())}, "state": "READY"}, {"fw_id": 1}
        ):
            ready_at.setdefault(d["fw_id"], utcnow())
        time.sleep(0.05)
    return ready_at


def completion_to_ready_seconds(lp: Any, children: dict[int, int], ready_at: dict[int, Any]) -> list[float]:
    """Per finished workflow: from the parent's ``completed_on`` (the compute node's clock, as the
    launch's COMPLETED history entry keeps it) to its child first seen READY."""
    latencies = []
    for parent_id, child_id in children.items():
        launch = lp.launches.find_one({"fw_id": parent_id, "state": "COMPLETED"}, {"state_history": 1})
        if launch is None or child_id not in ready_at:
            continue
        done = next(h["created_on"] for h in launch["state_history"] if h["state"] == "COMPLETED")
        latencies.append((ready_at[child_id] - as_utc(done)).total_seconds())
    return latencies


def summary(args: argparse.Namespace, latencies: list[float]) -> dict[str, Any]:
    return {
        "jobs": args.jobs,
        "interval_s": args.interval,
        "finished": len(latencies),
        "median_s": round(statistics.median(latencies), 3) if latencies else None,
        "worst_s": round(max(latencies), 3) if latencies else None,
        "best_s": round(min(latencies), 3) if latencies else None,
        "target_worst_s": args.interval + 2,
        "site": "network namespaces: db, login, cn1, cn2" if args.topology else "one host",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--interval", type=float, default=5.0, help="sync --watch --interval S")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    ap.add_argument(
        "--topology", action="store_true", help="run on the network-namespace site (fwspool.testing.topology)"
    )
    args = ap.parse_args()
    if not available():
        log("Slurm is not installed: apt-get install -y slurm-wlm munge (as root)")
        return 2
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"jobs {result['jobs']}  finished {result['finished']}  interval {result['interval_s']} s  "
            f"latency median {result['median_s']} s  best {result['best_s']} s  worst {result['worst_s']} s  "
            f"(target: worst <= {result['target_worst_s']} s)"
        )
    if result["finished"] != args.jobs:
        return 1
    if args.check and (result["worst_s"] is None or result["worst_s"] > result["target_worst_s"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
