"""Scenario 2: ``kill -9`` of ``fwspool push`` at random moments, at database writes, between write and mark.

A push is killed by a timer, at its N-th database write (before it is sent or once it is
acknowledged), or at a failpoint inside a bulk completion; sometimes a rocket elsewhere then takes
a READY Firework. The recovery push must reach the clean run's LaunchPad and undo no rocket.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

from fwspool.testing.chaos.cluster import Cluster, Instance
from fwspool.testing.chaos.invariants import Check, check_db, check_journal, inventory
from fwspool.testing.chaos.processes import killer_cmd
from fwspool.testing.chaos.trial import (
    Scenario,
    ScenarioResult,
    check_summary,
    count_push_writes,
    expect_ok,
    no_traceback,
    trial,
)
from fwspool.testing.chaos.workload import launchpad

NAME = "kill -9 push (random, at DB writes, before mark)"


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(2, NAME)
    tpl = cluster.template(seed=22, n_chain=8, n_pair=4)
    total, took = count_push_writes(cluster, tpl)
    want = cluster.reference(tpl, tpl.golden)
    modes: dict[str, int] = {}
    for t in range(trials):
        inst = cluster.instance(tpl, f"s2-t{t}")
        with trial(cluster, res, inst) as c:
            expect_ok(inst.run(inst.ingest(), "ingest"), c, "ingest")
            for _k in range(rng.choice((1, 1, 2, 3))):
                mode = rng.choice(
                    (
                        "timer",
                        "write-started",
                        "write-succeeded",
                        "before_mark",
                        "after_launches",
                        "after_fireworks",
                        "before_promote",
                    )
                )
                if mode == "timer":
                    p = inst.start(inst.push(), "push")
                    time.sleep(rng.uniform(0.3, took * 1.1))
                    landed = p.kill()
                elif mode in ("before_mark", "after_launches", "after_fireworks", "before_promote"):
                    point = "push.before_mark" if mode == "before_mark" else f"bulk.{mode}"
                    p = inst.run(inst.push(), "push", env=inst.env(FWSPOOL_FAILPOINTS=f"{point}=kill"))
                    landed = p.popen.returncode == -signal.SIGKILL
                else:
                    n = rng.randint(1, max(1, total))
                    p = inst.run(killer_cmd(n, mode.split("-")[1], *inst.push()[3:]), "push-killer")
                    landed = p.popen.returncode == -signal.SIGKILL
                if landed:
                    res.faults += 1
                    modes[mode] = modes.get(mode, 0) + 1
                else:
                    expect_ok(p, c, f"push ({mode}, not killed)")
                no_traceback(p, c, f"push ({mode})")
            skip: frozenset[tuple[str, Any]] = frozenset()
            rocket = None
            if rng.random() < 0.5:
                # Meanwhile a rocket takes a READY Firework (maybe one the killed push made READY):
                # the recovery push must not undo that.
                rocket = rocket_takes_one(inst, rng)
                if rocket is not None:
                    skip = rocket[2]
            expect_ok(inst.run(inst.push("--timeout", "20"), "push-final", timeout=200), c, "recovery push")
            inv = inventory(inst.launches_root)
            c.add(check_journal(inst.journal, inv))
            c.add(check_db(inst, want, skip=skip))
            check_summary(inst.journal, c, "after the pushes killed and the recovery push")
            if rocket is not None:
                c.add(check_rocket_kept(inst, rocket))
    res.detail = f"a clean push: {total} write commands, {took:.1f}s; kills landed: " + ", ".join(
        f"{m} {n}" for m, n in sorted(modes.items())
    )
    return res


def rocket_takes_one(
    inst: Instance, rng: random.Random
) -> tuple[int, int, frozenset[tuple[str, Any]]] | None:
    """FireWorks' own ``checkout_fw`` of a READY Firework, as a rocket elsewhere would: (fw_id,
    launch_id, the documents it changes, to leave out of the comparison with the clean run)."""
    from fireworks import FWorker

    lp = launchpad(inst.uri, inst.db)
    try:
        # Not in a workflow the killed push left locked: FireWorks' checkout would wait for that
        # lock (WFLOCK_EXPIRATION_SECS, 5 minutes) until the next push releases it.
        locked = {n for wf in lp.workflows.find({"locked": True}, {"nodes": 1}) for n in wf["nodes"]}
        ready = sorted(
            d["fw_id"]
            for d in lp.fireworks.find({"state": "READY"}, {"fw_id": 1})
            if d["fw_id"] not in locked
        )
        if not ready:
            return None
        fw_id = max(ready) if rng.random() < 0.5 else rng.choice(ready)
        d = os.path.join(inst.root, "elsewhere")
        os.makedirs(d, exist_ok=True)
        fw, launch_id = lp.checkout_fw(FWorker(), d, fw_id=fw_id)
        if fw is None:
            return None
        name = lp.fireworks.find_one({"fw_id": fw_id}, {"name": 1})["name"]
        wf = lp.workflows.find_one({"nodes": fw_id}, {"name": 1})["name"]
        key = f"new:{name}" if fw_id >= inst.tpl.first_new_fw_id else fw_id
        return (
            fw_id,
            int(launch_id),
            frozenset(
                {
                    ("fireworks", key),
                    ("workflows", wf),
                    ("launches", launch_id),
                    ("fw_id_assigner", "counters"),
                }
            ),
        )
    finally:
        lp.connection.close()


def check_rocket_kept(inst: Instance, rocket: tuple[int, int, frozenset[tuple[str, Any]]]) -> Check:
    c = Check()
    fw_id, launch_id, _ = rocket
    lp = launchpad(inst.uri, inst.db)
    try:
        fw = lp.fireworks.find_one({"fw_id": fw_id}, {"state": 1, "launches": 1})
        wf = lp.workflows.find_one({"nodes": fw_id}, {"fw_states": 1, "locked": 1})
        if (
            fw["state"] != "RUNNING"
            or launch_id not in fw.get("launches", [])
            or wf["fw_states"][str(fw_id)] != "RUNNING"
        ):
            c.mismatched += 1
            c.note(
                f"the push undid a rocket's checkout of Firework {fw_id}: {fw}, workflow {wf['fw_states'][str(fw_id)]}"
            )
    finally:
        lp.connection.close()
    return c


SCENARIO = Scenario(2, NAME, (2, 100), run)
