"""Scenario 8: a compute node's clock hours off, and stepping back mid-run.

Every time a node records (a record's ``at`` and the event's own times) is hours off either way;
half the nodes also step back by hours mid-run. Ingest and push run while the launches run. The
LaunchPad must equal a clean run of the same events written by nodes whose clocks are right, and
every launch's history must stay in causal order.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from typing import Any

import msgspec

from fwspool.events import Record
from fwspool.spool import encode_record, scan
from fwspool.testing.chaos.cluster import Cluster, Instance
from fwspool.testing.chaos.invariants import Check, check_db, check_journal, inventory
from fwspool.testing.chaos.processes import fwspool_cmd
from fwspool.testing.chaos.trial import Scenario, ScenarioResult, expect_ok, paced, trial, wait_all
from fwspool.testing.chaos.workload import (
    LaunchInfo,
    Stream,
    Template,
    read_spool_files,
    start_rlaunch,
    start_writers,
)

NAME = "compute-node clocks hours off"
#: A node's clock, per launch id: (seconds off, the record after which it steps back, by how much).
Skews = dict[int, tuple[float, int, float]]
NEVER = 10**9


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(8, NAME)
    tpl = cluster.template(seed=88, n_chain=8, n_pair=4)
    for t in range(trials):
        skews: Skews = {}
        for li in tpl.launches:
            # Hours off either way; half the nodes also step back by hours after record `step`.
            skews[li.launch_id] = (
                rng.choice((-1, 1)) * rng.uniform(1, 12) * 3600,
                rng.randint(1, 4) if rng.random() < 0.5 else NEVER,
                rng.uniform(1, 3) * 3600,
            )

        def skewed(li: LaunchInfo, s: Stream, skews: Skews = skews) -> Stream:
            return skewed_stream(skews[li.launch_id], s)

        res.faults += len(skews) + sum(1 for _o, step, _b in skews.values() if step < NEVER)
        inst = cluster.instance(tpl, f"s8-t{t}", spool=False)
        with trial(cluster, res, inst) as c:
            writers = start_writers(
                tpl, inst.root, inst.logdir, procs=2, pace=paced(tpl, 2, 4.0), seed=800 + t, transform=skewed
            )
            writers += start_rlaunch(tpl, inst.root, inst.logdir)
            # Ingest and push while the launches are running: each push sees part of the story.
            for _ in range(3):
                time.sleep(rng.uniform(0.5, 1.5))
                expect_ok(inst.run(inst.ingest(), "ingest"), c, "ingest")
                expect_ok(inst.run(inst.push("--timeout", "20"), "push", timeout=200), c, "push")
            wait_all(writers, c)
            expect_ok(inst.run(inst.ingest(), "ingest-final"), c, "final ingest")
            c.add(check_journal(inst.journal, inventory(inst.launches_root)))
            expect_ok(inst.run(inst.push("--timeout", "20"), "push-final", timeout=200), c, "final push")
            c.add(
                check_db(
                    inst, cluster.reference(tpl, right_clocks(tpl, read_spool_files(inst.launches_root)))
                )
            )
            check_sane_times(inst, c, skews)
            p = inst.run(fwspool_cmd("status", "--json", "--no-check"), "status")
            expect_ok(p, c, "status with clocks hours off")
    res.detail = (
        "clocks 1-12 h off either way, half of them stepping back 1-3 h mid-run; pushes while running"
    )
    return res


def skewed_stream(skew: tuple[float, int, float], s: Stream) -> Stream:
    """The node's clock: every time it records (``at`` and the event's own times) is off by
    hours; after a step back, by hours less."""
    off, step, back = skew
    after_main = s.get("after") is not None
    recs = []
    for i, (at, ev, durable) in enumerate(s["records"]):
        stepped = step < NEVER and (i >= step or after_main)
        shift = dt.timedelta(seconds=off - (back if stepped else 0))
        event = json.loads(ev)
        for k in ("started_on", "ping_time", "completed_on"):
            if event.get(k):
                event[k] = (dt.datetime.fromisoformat(event[k].replace("Z", "+00:00")) + shift).isoformat()
        recs.append([(dt.datetime.fromisoformat(at) + shift).isoformat(), json.dumps(event), durable])
    return dict(s, records=recs)


def right_clocks(tpl: Template, files: dict[str, bytes]) -> dict[str, bytes]:
    """The clean run: the same events, written by a node whose clock is right. Only what nothing
    but the node's clock dates (a walltime kill's exit) keeps the node's time."""
    fixed: dict[str, bytes] = {}
    plan_at = {
        (s["writer"], i + 1): at
        for li in tpl.launches
        for s in li.streams
        for i, (at, _ev, _d) in enumerate(s["records"])
    }
    walltime = {li.launch_id for li in tpl.launches if li.outcome == "walltime"}
    for rel, data in files.items():
        out = []
        for fr in scan(data, at_eof=True).frames:
            rec = msgspec.json.decode(fr.payload, type=Record)
            at = plan_at.get((rec.writer, rec.seq))
            if at is not None and not (rec.launch_id in walltime and type(rec.event).__name__ == "Exited"):
                rec.at = dt.datetime.fromisoformat(at)
            out.append(encode_record(rec))
        fixed[rel] = b"".join(out)
    return fixed


def check_sane_times(inst: Instance, c: Check, skews: Skews) -> None:
    """The history in causal order, no negative run time, no time invented."""
    import pymongo

    client: Any = pymongo.MongoClient(inst.uri)
    for d in client[inst.db].launches.find({}):
        states = [h["state"] for h in d.get("state_history", [])]
        if states and states[0] != "RESERVED" or ("RUNNING" in states and states.index("RUNNING") != 1):
            c.other += 1
            c.note(f"launch {d['launch_id']}: state history {states}")
        stepped_back = skews.get(d["launch_id"], (0, NEVER, 0))[1] < NEVER
        if d.get("runtime_secs") is not None and d["runtime_secs"] < 0 and not stepped_back:
            c.other += 1
            c.note(f"launch {d['launch_id']}: runtime_secs {d['runtime_secs']}")
    client.close()


SCENARIO = Scenario(8, NAME, (1, 12), run)
