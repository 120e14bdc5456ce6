"""Scenario 1: ``kill -9`` of ``fwspool ingest`` at random moments while writers keep appending.

After every kill, each spool file's committed offset must sit exactly after the events the journal
holds of it; at the end a clean ingest and push must give every event exactly once.
"""

from __future__ import annotations

import os
import random
import time

from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.invariants import check_committed_prefixes
from fwspool.testing.chaos.trial import (
    Scenario,
    ScenarioResult,
    expect_ok,
    final_ingest_and_check,
    no_traceback,
    paced,
    trial,
    wait_all,
)
from fwspool.testing.chaos.workload import REAL_NAMES, start_rlaunch, start_writers

NAME = "kill -9 ingest while writers append"


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(1, NAME)
    tpl = cluster.template(seed=11, n_chain=12, n_pair=5, storm=True)
    per_round = min(trials, 20)
    rounds = -(-trials // per_round)
    for r in range(rounds):
        n = min(per_round, trials - r * per_round)
        inst = cluster.instance(tpl, f"s1-r{r}", spool=False)
        with trial(cluster, res, inst) as c:
            res.trials -= 1  # counted per kill below
            writers = start_writers(
                tpl, inst.root, inst.logdir, procs=3, pace=paced(tpl, 3, 0.6 * n), seed=100 + r
            )
            writers += start_rlaunch(tpl, inst.root, inst.logdir)
            for _t in range(n):
                if rng.random() < 0.6:
                    cmd = inst.ingest("--watch", "--interval", f"{rng.uniform(0.01, 0.2):.3f}")
                else:
                    cmd = inst.ingest()
                p = inst.start(cmd, "ingest")
                time.sleep(rng.uniform(0.05, 1.3))
                if p.kill():
                    res.faults += 1
                else:
                    expect_ok(p, c, "ingest (finished before the kill)")
                no_traceback(p, c, "killed ingest")
                res.trials += 1
                if os.path.exists(inst.journal):
                    k = check_committed_prefixes(inst.journal)
                    k.events = 0
                    c.add(k)
            wait_all(writers, c)
            final_ingest_and_check(cluster, inst, c)
    res.detail = (
        f"{rounds} rounds of {per_round} kills, 3 writer processes + {len(REAL_NAMES)} rlaunch appending"
    )
    return res


SCENARIO = Scenario(1, NAME, (3, 200), run)
