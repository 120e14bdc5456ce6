"""Scenario 11: two login nodes push the same launches; one is SIGKILLed at every push failpoint,
and the workflow locks are broken between passes.

Two journals, A and B, ingest the same launch directories and push to one LaunchPad. A's push is
killed inside its bulk completion or before its pushed mark (``bulk.after_launches``,
``bulk.after_fireworks``, ``bulk.before_promote``, ``push.before_mark``) or at a random moment,
one to three times in a row (a later push of A replays the write set the dead one saved: a
failpoint may strike the replay, or find nothing left to strike). After each kill the workflow
locks are broken as ``lpad admin unlock`` breaks them (FireWorks' ``WFLock``, forced, then
released), and B pushes (in some trials also before the locks are broken: it must skip them, not
wait; in some, B is itself killed while taking back A's half-written completion, at
``undo.after_claim`` or ``undo.after_restore``, and the locks are perhaps broken again). Then A
and B push in turn until neither has anything pending.

Invariants: each journal holds every event once and has nothing pending (no event, no saved write
set); no Firework twice (every Firework of the workload has a name of its own), none outside a
workflow, no workflow locked, no undo mark left; the LaunchPad equals the clean run's, field by field, except the
Firework id counter, which may be ahead: ids a dead push took for additions that the other login
node then added under ids of its own stay unused (FireWorks never gives an id out twice either).
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

from fwspool.launchpad.locks import LOCK_FIELD
from fwspool.launchpad.undo import UNDO_FIELD, UNDOING_FIELD
from fwspool.testing.chaos.cluster import Cluster, Instance
from fwspool.testing.chaos.invariants import Check, backlog, check_db, check_journal, inventory
from fwspool.testing.chaos.processes import Proc
from fwspool.testing.chaos.trial import (
    Scenario,
    ScenarioResult,
    count_push_writes,
    expect_ok,
    ingest_here,
    no_traceback,
    trial,
)
from fwspool.testing.chaos.workload import launchpad

NAME = "two journals, one push killed at every failpoint, locks broken"

KILLS = ("bulk.after_launches", "bulk.after_fireworks", "bulk.before_promote", "push.before_mark", "random")
#: Where B dies while taking back A's half-written completion (fwspool.launchpad.undo).
UNDO_KILLS = ("undo.after_claim", "undo.after_restore")
COUNTER = ("fw_id_assigner", "counters")


def admin_unlock(uri: str, db: str) -> int:
    """What ``lpad admin unlock`` does to every locked workflow: FireWorks' WFLock, taken by force
    (``expire_secs=0, kill=True``), then released; returns how many it unlocked."""
    from fireworks.core.launchpad import WFLock

    lp = launchpad(uri, db)
    try:
        locked = [wf["nodes"][0] for wf in lp.workflows.find({"locked": True}, {"nodes": 1})]
        for fw_id in locked:
            with WFLock(lp, fw_id, expire_secs=0, kill=True):
                pass
        return len(locked)
    finally:
        lp.connection.close()


def check_fireworks(inst: Instance) -> tuple[Check, int, int]:
    """No Firework twice, none outside a workflow, no workflow locked: (check, duplicates, orphans)."""
    c = Check()
    lp = launchpad(inst.uri, inst.db)
    try:
        names: dict[str, list[int]] = {}
        for d in lp.fireworks.find({}, {"fw_id": 1, "name": 1}):
            names.setdefault(d.get("name"), []).append(d["fw_id"])
        held = {n for wf in lp.workflows.find({}, {"nodes": 1}) for n in wf["nodes"]}
        locked = lp.workflows.count_documents(
            {
                "$or": [
                    {"locked": {"$exists": True}},
                    {LOCK_FIELD: {"$exists": True}},
                    {UNDOING_FIELD: {"$exists": True}},
                ]
            }
        )
        marked = lp.fireworks.count_documents({UNDO_FIELD: {"$exists": True}})
    finally:
        lp.connection.close()
    twice = {name: ids for name, ids in names.items() if len(ids) > 1}
    orphans = sorted(i for ids in names.values() for i in ids if i not in held)
    c.duplicated += sum(len(ids) - 1 for ids in twice.values())
    if twice:
        c.note(f"Fireworks twice: {dict(list(twice.items())[:4])}")
    if orphans:
        c.other += len(orphans)
        c.note(f"Fireworks no workflow holds: {orphans[:8]}")
    if locked:
        c.other += locked
        c.note(f"{locked} workflows left locked")
    if marked:
        c.other += marked
        c.note(f"{marked} Fireworks left with an undo mark")
    return c, sum(len(ids) - 1 for ids in twice.values()), len(orphans)


def check_counter(inst: Instance, want: dict[str, Any]) -> tuple[Check, int]:
    """The id counters: launch ids as in the clean run, Firework ids at or ahead of it (and past
    every Firework there is); returns the ids left unused."""
    c = Check()
    lp = launchpad(inst.uri, inst.db)
    try:
        got = lp.fw_id_assigner.find_one({}, {"_id": 0})
        top = max((d["fw_id"] for d in lp.fireworks.find({}, {"fw_id": 1})), default=0)
    finally:
        lp.connection.close()
    clean = want["fw_id_assigner"]["counters"]
    wasted = got["next_fw_id"] - clean["next_fw_id"]
    if got.get("next_launch_id") != clean.get("next_launch_id") or wasted < 0 or got["next_fw_id"] <= top:
        c.mismatched += 1
        c.note(f"fw_id_assigner: {got}, clean run {clean}, largest Firework id {top}")
    return c, max(0, wasted)


class Nodes:
    """The two login nodes of one trial, and what their pushes did."""

    def __init__(
        self, inst: Instance, c: Check, took: float, rng: random.Random, landed: dict[str, int]
    ) -> None:
        self.inst = inst
        self.c = c
        self.took = took
        self.rng = rng
        self.journal_b = os.path.join(inst.root, "journal-b", "journal.sqlite3")
        os.makedirs(os.path.dirname(self.journal_b))
        self.journals = {"a": inst.journal, "b": self.journal_b}
        #: The kills that landed, by failpoint, over every trial.
        self.landed = landed
        #: What happened in this trial, in order, for its notes.
        self.steps: list[str] = []
        self.unlocked = 0

    def break_locks(self) -> None:
        """``lpad admin unlock`` on every locked workflow."""
        n = admin_unlock(self.inst.uri, self.inst.db)
        self.unlocked += n
        self.steps.append(f"{n} locks broken")

    def push(self, node: str, what: str) -> Proc:
        """A clean push of one node: exit 0, and it must not wait for the other's locks."""
        t0 = time.monotonic()
        p = self.inst.run(
            self.inst.push("--timeout", "20"),
            f"push-{node}",
            env=self.inst.env(FWSPOOL_JOURNAL=self.journals[node]),
        )
        expect_ok(p, self.c, f"{what}: push of journal {node.upper()}")
        if time.monotonic() - t0 > 60:
            self.c.other += 1
            self.c.note(
                f"{what}: push of journal {node.upper()} took {time.monotonic() - t0:.0f}s (waited on a lock?)"
            )
        return p

    def kill(self, node: str, point: str) -> bool:
        """A push of ``node``, killed at ``point`` (a failpoint, or a random moment); whether the
        kill landed."""
        self.steps.append(f"{node.upper()} killed at {point}")
        env = {"FWSPOOL_JOURNAL": self.journals[node]}
        name = f"push-{node}-killed"
        what = f"push of journal {node.upper()}"
        if point == "random":
            p = self.inst.start(self.inst.push(), name, env=self.inst.env(**env))
            time.sleep(self.rng.uniform(0.3, self.took * 1.1))
            landed = p.kill()
            if not landed:
                expect_ok(p, self.c, f"{what} (random kill, too late)")
        else:
            p = self.inst.run(
                self.inst.push(), name, env=self.inst.env(FWSPOOL_FAILPOINTS=f"{point}=kill", **env)
            )
            landed = p.popen.returncode == -signal.SIGKILL
            if not landed:
                expect_ok(p, self.c, f"{what} ({point} not reached)")
        no_traceback(p, self.c, f"{what} ({point})")
        if landed:
            self.landed[point] = self.landed.get(point, 0) + 1
        else:
            self.steps[-1] += " (not reached)"
        return landed


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(11, NAME)
    tpl = cluster.template(seed=22, n_chain=8, n_pair=4)
    _writes, took = count_push_writes(cluster, tpl)
    want = cluster.reference(tpl, tpl.golden)
    landed: dict[str, int] = {}
    unlocked = duplicates = orphans = wasted_trials = 0
    passes_needed = 0
    for t in range(trials):
        inst = cluster.instance(tpl, f"s11-t{t}")
        with trial(cluster, res, inst) as c:
            nodes = Nodes(inst, c, took, rng, landed)
            steps = nodes.steps
            for journal in nodes.journals.values():
                ingest_here(inst, journal)
            for k in range(1 if t < len(KILLS) else rng.choice((1, 1, 2, 3))):
                res.faults += nodes.kill("a", KILLS[t % len(KILLS)] if k == 0 else rng.choice(KILLS))
                if rng.random() < 0.3:
                    nodes.push("b", "before the locks are broken")
                    steps.append("B pushed")
                nodes.break_locks()
                if rng.random() < 0.4:
                    # B, taking back A's half-written completion, is killed too; its take-back
                    # is resumed by B's next push or, with its lock broken as well, by A's.
                    res.faults += nodes.kill("b", rng.choice(UNDO_KILLS))
                    if rng.random() < 0.5:
                        nodes.break_locks()
                nodes.push("b", "after the locks were broken")
                steps.append("B pushed")
            order = ["a", "b"] if rng.random() < 0.5 else ["b", "a"]
            steps.append(f"then {' and '.join(n.upper() for n in order)} in turn")
            for n in range(1, 5):
                for node in order:
                    nodes.push(node, f"catching up, pass {n}")
                if not any(backlog(j) for j in nodes.journals.values()):
                    passes_needed = max(passes_needed, n)
                    break
            for node, journal in nodes.journals.items():
                left = backlog(journal)
                if left:
                    c.pending_left += left
                    c.note(f"journal {node.upper()}: {left} events or write sets still pending")
                c.add(check_journal(journal, inventory(inst.launches_root)))
            fw_check, dup, orph = check_fireworks(inst)
            c.add(fw_check)
            duplicates += dup
            orphans += orph
            counter_check, wasted = check_counter(inst, want)
            c.add(counter_check)
            wasted_trials += wasted > 0
            c.add(check_db(inst, want, skip=frozenset({COUNTER})))
            unlocked += nodes.unlocked
            if c.failed:
                c.notes.insert(0, f"trial {t}: " + ", ".join(steps))
    res.detail = (
        "kills landed: "
        + ", ".join(f"{p} {n}" for p, n in sorted(landed.items()))
        + f"; {unlocked} workflow locks broken; duplicated Fireworks {duplicates}, orphaned {orphans}; "
        f"ids left unused in {wasted_trials} trials; both journals caught up within {passes_needed} passes each"
    )
    return res


SCENARIO = Scenario(11, NAME, (3, 50), run)
