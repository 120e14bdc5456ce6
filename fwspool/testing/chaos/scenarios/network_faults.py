"""Scenario 4: the network cut mid-batch, through a TCP proxy that drops, stalls or swallows connections.

Faults strike within the bytes a clean push sends each way; a push through the faulty network
must exit 0 or 75, and the push after the network healed must reach the clean run's LaunchPad.
"""

from __future__ import annotations

import random

from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.invariants import check_db, check_journal, inventory
from fwspool.testing.chaos.proxy import FaultyProxy
from fwspool.testing.chaos.trial import Scenario, ScenarioResult, expect_ok, trial

NAME = "network cut/stalled mid-batch (proxy)"


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(4, NAME)
    tpl = cluster.template(seed=22, n_chain=8, n_pair=4)
    want = cluster.reference(tpl, tpl.golden)
    port = int(cluster.uri.split(":")[2].split("/")[0])
    proxy = FaultyProxy(port, rng, blackholes=full)
    outcomes: dict[int, int] = {}
    try:
        # How much a clean push sends each way: faults strike anywhere in that.
        inst = cluster.instance(tpl, "s4-measure")
        inst.run(inst.ingest(), "ingest")
        sent_before = dict(proxy.traffic)
        inst.run(inst.push(uri=proxy.uri), "push")
        proxy.reach = {k: max(1000, proxy.traffic[k] - sent_before[k]) for k in sent_before}
        cluster.dispose(inst)
        for t in range(trials):
            inst = cluster.instance(tpl, f"s4-t{t}")
            with trial(cluster, res, inst) as c:
                expect_ok(inst.run(inst.ingest(), "ingest"), c, "ingest")
                before = proxy.faults
                # A black hole costs the pusher its socket timeout (30 s): one trial in five.
                proxy.blackholes = full and t % 5 == 4
                proxy.arm(rng.randint(1, 6))
                for _k in range(3):
                    p = inst.run(inst.push("--timeout", "1", uri=proxy.uri), "push-proxy", timeout=240)
                    code = expect_ok(p, c, "push through a faulty network", codes=(0, 75))
                    outcomes[code] = outcomes.get(code, 0) + 1
                    if code == 0:
                        break
                proxy.disarm()
                res.faults += proxy.faults - before
                expect_ok(
                    inst.run(inst.push("--timeout", "20", uri=proxy.uri), "push-final", timeout=200),
                    c,
                    "push after the network healed",
                )
                c.add(check_journal(inst.journal, inventory(inst.launches_root)))
                c.add(check_db(inst, want))
    finally:
        proxy.close()
    res.detail = (
        f"faults strike within the {proxy.reach['up']} bytes up / {proxy.reach['down']} down of a clean push; "
        "pushes through the faulty network exited: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
    )
    return res


SCENARIO = Scenario(4, NAME, (2, 30), run)
