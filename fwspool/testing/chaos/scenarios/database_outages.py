"""Scenario 3: the database killed (``kill -9``) or stopped during a push, restarted on its storage.

The database dies at the push's N-th write (the pusher itself sends the signal, before the write
is sent or right after it was acknowledged) or at a random time; a one-shot push must exit 0 or 75
and a watching push must catch up by itself once the database is back.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import time
from typing import Any

from fwspool.testing.chaos.cluster import Cluster, Instance
from fwspool.testing.chaos.invariants import Check, check_db, check_journal, inventory, journal_rows
from fwspool.testing.chaos.processes import Proc, killer_cmd
from fwspool.testing.chaos.trial import Scenario, ScenarioResult, count_push_writes, expect_ok, trial

NAME = "database killed/stopped during push"


class Outages:
    """The scenario's own database server, and the outages that landed on it."""

    def __init__(self, server: Any, rng: random.Random, res: ScenarioResult) -> None:
        self.server = server
        self.rng = rng
        self.res = res
        self.kinds: dict[str, int] = {}
        self.struck: list[str] = []

    def back_up(self) -> bool:
        """Restart the database on its storage if it is down; whether it was."""
        server = self.server
        if server.proc is not None and server.proc.poll() is None:
            return False
        if server.proc is not None:
            server.proc.wait()
            server.proc = None
        time.sleep(self.rng.uniform(0.0, 2.0))
        server.start()
        self.res.faults += 1
        self.kinds[self.struck[-1]] = self.kinds.get(self.struck[-1], 0) + 1
        return True


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(3, NAME)
    tpl = cluster.template(seed=22, n_chain=8, n_pair=4)
    total, took = count_push_writes(cluster, tpl)
    want = cluster.reference(tpl, tpl.golden)
    outages = Outages(cluster.own_server("s3"), rng, res)
    server = outages.server
    try:
        for t in range(trials):
            outages.back_up()
            inst = cluster.instance(tpl, f"s3-t{t}", uri=server.uri)
            with trial(cluster, res, inst) as c:
                expect_ok(inst.run(inst.ingest(), "ingest"), c, "ingest")
                push_through_an_outage(inst, c, outages, total, took)
                expect_ok(
                    inst.run(inst.push("--timeout", "20"), "push-final", timeout=200), c, "recovery push"
                )
                c.add(check_journal(inst.journal, inventory(inst.launches_root)))
                c.add(check_db(inst, want))
    finally:
        server.stop()
    res.detail = "database outages during a push: " + ", ".join(
        f"{k} {v}" for k, v in sorted(outages.kinds.items())
    )
    return res


def push_through_an_outage(inst: Instance, c: Check, outages: Outages, total: int, took: float) -> None:
    """One push while the database goes down, brought back up until the push is over."""
    server, rng = outages.server, outages.rng
    watch = rng.random() < 0.3
    how = rng.choice(("kill", "term"))
    args = (
        inst.push("--watch", "--interval", "0.3", "--timeout", "1") if watch else inst.push("--timeout", "2")
    )
    struck_pid = server.proc.pid
    p = strike(inst, outages, args, how, total, took)
    # Bring the database back whenever it is down, until the push is over (a watcher:
    # until it caught up by itself).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        outages.back_up()
        if not watch and p.popen.poll() is not None:
            break
        if watch and not journal_rows(inst.journal, "SELECT 1 FROM pending_events LIMIT 1"):
            break
        time.sleep(0.05)
    if watch:
        p.popen.send_signal(signal.SIGTERM)
        p.wait(60)
        expect_ok(p, c, "push --watch (SIGTERM after catching up)")
    else:
        p.wait(120)
        expect_ok(p, c, f"push during a database {how}", codes=(0, 75))
    # A strike at the push's last write: the database may still be shutting down.
    if "chaos: struck" in p.stderr and server.proc is not None and server.proc.pid == struck_pid:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(60)
    outages.back_up()


def strike(inst: Instance, outages: Outages, args: list[str], how: str, total: int, took: float) -> Proc:
    """The push, started with the database's death arranged: at a write, or at a random time."""
    server, rng = outages.server, outages.rng
    if rng.random() < 0.7:
        # The database dies at the push's N-th write: before it is sent, or right after
        # it was acknowledged (the pusher itself sends the signal, at that very moment).
        when = rng.choice(("started", "succeeded"))
        cmd = killer_cmd(rng.randint(1, total), when, *args[3:], target=f"{how}:{server.proc.pid}")
        p = inst.start(cmd, "push")
        outages.struck.append(f"{how} at a write ({when})")
    else:
        p = inst.start(args, "push")
        time.sleep(rng.uniform(0.3, took * 1.1))
        if p.popen.poll() is None:
            server.kill() if how == "kill" else server.stop()
        outages.struck.append(f"{how} at a random time")
    return p


SCENARIO = Scenario(3, NAME, (1, 50), run)
