"""Scenario 6: two ingesters and two pushers at the same time.

Half the trials share one journal (two ingests and two pushes at once: one of each may say it is
busy, exit 75); the other half are two login nodes with journals of their own and one LaunchPad
(two syncs at once). Each journal must hold every event once, the LaunchPad each applied once.
"""

from __future__ import annotations

import os
import random
import time

from fwspool.journal import Journal
from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.invariants import check_journal, inventory
from fwspool.testing.chaos.processes import fwspool_cmd
from fwspool.testing.chaos.trial import (
    Scenario,
    ScenarioResult,
    expect_ok,
    final_ingest_and_check,
    paced,
    trial,
    wait_all,
)
from fwspool.testing.chaos.workload import start_rlaunch, start_writers

NAME = "two ingesters and two pushers at once"


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(6, NAME)
    tpl = cluster.template(seed=66, n_chain=8, n_pair=4)
    busy = 0
    for t in range(trials):
        two_journals = t % 2 == 1
        inst = cluster.instance(tpl, f"s6-t{t}", spool=False)
        with trial(cluster, res, inst) as c:
            journal_b = os.path.join(inst.root, "journal-b", "journal.sqlite3")
            os.makedirs(os.path.dirname(journal_b))
            if not two_journals:
                # The pushes start with the ingests; only ingest and sync create a journal.
                Journal.open(inst.journal).close()
            writers = start_writers(
                tpl, inst.root, inst.logdir, procs=2, pace=paced(tpl, 2, 8.0 if full else 5.0), seed=600 + t
            )
            writers += start_rlaunch(tpl, inst.root, inst.logdir)
            for _round in range(4):
                if two_journals:
                    # Two login nodes (or two cron lines) with journals of their own, one LaunchPad.
                    procs = [
                        inst.start(
                            fwspool_cmd(
                                "sync", "--root", inst.launches_root, "--uri", inst.uri, "--name", inst.db
                            ),
                            "sync-a",
                        ),
                        inst.start(
                            fwspool_cmd(
                                "sync", "--root", inst.launches_root, "--uri", inst.uri, "--name", inst.db
                            ),
                            "sync-b",
                            env=inst.env(FWSPOOL_JOURNAL=journal_b),
                        ),
                    ]
                else:
                    procs = [
                        inst.start(inst.ingest("--lock-wait", "60"), "ingest-a"),
                        inst.start(inst.ingest("--lock-wait", "60"), "ingest-b"),
                        inst.start(inst.push(), "push-a"),
                        inst.start(inst.push(), "push-b"),
                    ]
                for p in procs:
                    p.wait(300)
                    code = expect_ok(p, c, p.name, codes=(0, 75))
                    if code == 75:
                        busy += 1
                        if "another fwspool" not in p.stderr and "cannot reach" not in p.stderr:
                            c.other += 1
                            c.note(f"{p.name} exit 75 without saying why: {p.stderr[-300:]}")
                res.faults += 1
                time.sleep(rng.uniform(0.5, 2.0))
            wait_all(writers, c)
            if two_journals:
                p = inst.run(
                    fwspool_cmd("sync", "--root", inst.launches_root),
                    "sync-b-final",
                    env=inst.env(FWSPOOL_JOURNAL=journal_b),
                )
                expect_ok(p, c, "final sync of journal b")
                c.add(check_journal(journal_b, inventory(inst.launches_root)))
            final_ingest_and_check(cluster, inst, c)
    res.detail = f"{(trials + 1) // 2} with one journal (2 ingest + 2 push), {trials // 2} with two journals (2 sync); {busy} exits 75 (busy)"
    return res


SCENARIO = Scenario(6, NAME, (1, 8), run)
