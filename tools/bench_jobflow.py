#!/usr/bin/env python3
"""Benchmark of what fwspool adds to a jobflow job: reference resolution from the output cache,
the spooled JobStore, and the store push; against the same job run online.

    python tools/bench_jobflow.py                 # a small output and a 20 MiB blob
    python tools/bench_jobflow.py --repeat 3 --blob-mib 5

One throwaway SecantusDB server (``fwspool.devserver.DevServer``) holds a MongoStore JobStore with
a GridFS additional store ``data``. Each repetition runs a parent job (its output: a small dict,
or a dict whose ``blob`` goes to ``data``) and a child that references the parent's whole output
(so the blob is loaded to resolve it), twice:

* **online**: ``JobFiretask.run_task`` against the real JobStore (what FireWorks' rlaunch runs);
* **offline**: the same task as ``fwspool rlaunch`` prepares it (``spool_job_tasks``: the spooled
  store, loaded from the cache), its writes recorded (side files for the blob), then the push's
  step (``JobStores.write``: the real JobStore, then the cache), parent then child.

Printed per output size: the medians of each phase in milliseconds and the ratio of offline
(compute + push) to online. The jobs themselves do nothing: the ratio is fwspool's cost over
jobflow's own store traffic, not over a calculation; the absolute numbers are what a real job
(minutes to hours) pays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from jobflow import Flow, JobStore, job
from jobflow.managers.fireworks import flow_to_workflow
from maggma.stores import GridFSStore, MongoStore

from fwspool.devserver import DevServer
from fwspool.jobstore.outputs import read_write
from fwspool.jobstore.real import JobStores
from fwspool.jobstore.spooled import spool_job_tasks


@job(data="blob")
def produce(n: int) -> dict[str, Any]:
    return {"blob": "x" * n, "size": n} if n else {"value": 1, "nested": {"size": n}}


@job
def consume(parent_output: dict[str, Any]) -> int:
    return len(parent_output.get("blob", "")) + 1


def job_store(port: int, database: str) -> JobStore:
    common = {"database": database, "host": "127.0.0.1", "port": port}
    return JobStore(
        MongoStore(collection_name="outputs", **common),
        {"data": GridFSStore(collection_name="blobs", **common)},
    )


def tasks(store: JobStore, n: int) -> tuple[Any, Any]:
    """The parent's and the child's Fireworks, as flow_to_workflow makes them."""
    parent = produce(n)
    child = consume(parent.output)
    wf = flow_to_workflow(Flow([parent, child]), store=store)
    by_name = {fw.name: fw for fw in wf.fws}
    return by_name["produce"], by_name["consume"]


def run_online(store: JobStore, n: int) -> dict[str, float]:
    parent, child = tasks(store, n)
    t0 = time.perf_counter()
    parent.tasks[0].run_task({})
    t1 = time.perf_counter()
    child.tasks[0].run_task({})
    t2 = time.perf_counter()
    return {"online parent": t1 - t0, "online child": t2 - t1}


def run_offline(store: JobStore, stores: JobStores, n: int, work: str) -> dict[str, float]:
    parent, child = tasks(store, n)
    times: dict[str, float] = {}
    for name, fw in (("parent", parent), ("child", child)):
        launch_dir = tempfile.mkdtemp(dir=work)
        recorded: list[Any] = []
        t0 = time.perf_counter()
        spool_job_tasks(fw, launch_dir, 1, stores.cache, recorded.append)  # resolution from the cache
        t1 = time.perf_counter()
        fw.tasks[0].run_task({})  # the job, its writes recorded (side files)
        t2 = time.perf_counter()
        for outputs in recorded:  # the push: real JobStore, then the cache
            stores.write(outputs, [(w.store, w.key, read_write(w, [launch_dir])) for w in outputs.writes])
        t3 = time.perf_counter()
        times[f"{name}: inputs from cache"] = t1 - t0
        times[f"{name}: run, spooled store"] = t2 - t1
        times[f"{name}: store push"] = t3 - t2
    return times


def main() -> int:
    import jobflow

    jobflow.initialize_logger = lambda *args, **kwargs: None  # JobFiretask's INFO lines: not measured
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--blob-mib", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, DevServer(os.path.join(work, "db")) as server:
        port = int(server.port)
        online_store, offline_store = job_store(port, "online"), job_store(port, "offline")
        online_store.connect()
        stores = JobStores(os.path.join(work, "cache"))
        for label, n in (
            ("small output", 0),
            (f"{args.blob_mib:g} MiB blob", int(args.blob_mib * 1024 * 1024)),
        ):
            samples: dict[str, list[float]] = {}
            for _ in range(args.repeat):
                for k, v in {
                    **run_online(online_store, n),
                    **run_offline(offline_store, stores, n, work),
                }.items():
                    samples.setdefault(k, []).append(v)
            med = {k: statistics.median(v) for k, v in samples.items()}
            online = med["online parent"] + med["online child"]
            offline = sum(v for k, v in med.items() if not k.startswith("online"))
            print(f"{label} (medians of {args.repeat}, ms):")
            for k, v in med.items():
                print(f"  {k:<28} {v * 1000:9.1f}")
            print(f"  {'online, both jobs':<28} {online * 1000:9.1f}")
            print(f"  {'offline, both jobs':<28} {offline * 1000:9.1f}   ratio {offline / online:.2f}")
        stores.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
