"""Scenario 7: the journal's disk full, and the journal read-only.

Where the harness may mount (root), the journal lives on a small tmpfs that fills up or is
remounted read-only; elsewhere RLIMIT_FSIZE and file modes stand in. Ingest and push must fail
with exit 73 and one ``fwspool:`` line, lose nothing, and carry on once the disk is back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import random
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fwspool.testing.chaos.cluster import Cluster, Instance
from fwspool.testing.chaos.invariants import Check, check_committed_prefixes
from fwspool.testing.chaos.processes import can_mount, succeeds, without_dac_override
from fwspool.testing.chaos.trial import (
    Scenario,
    ScenarioResult,
    expect_ok,
    final_ingest_and_check,
    one_line_error,
    trial,
    wait_all,
)
from fwspool.testing.chaos.workload import Template, start_writers

NAME = "journal disk full / read-only"


@dataclass
class JournalDiskTrial:
    """One trial: its instance (the journal in ``mnt``), and the workload's second half, written
    after the fault."""

    inst: Instance
    c: Check
    res: ScenarioResult
    outcomes: dict[str, int]
    mnt: str
    mounted: bool
    rest: Template
    t: int

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(7, NAME)
    tpl = cluster.template(seed=77, n_chain=6, n_pair=2, storm=True)
    mount = can_mount(cluster.root)
    outcomes: dict[str, int] = {}
    for t in range(trials):
        kind = ("full", "readonly")[t % 2]
        inst = cluster.instance(tpl, f"s7-{kind}{t}", spool=False)
        mnt = os.path.join(inst.root, "jmnt")
        os.makedirs(mnt)
        inst = dataclasses.replace(inst, journal=os.path.join(mnt, "journal.sqlite3"))
        mounted = False
        unmount: list[Callable[[], Any]] = []
        with trial(cluster, res, inst, cleanup=unmount) as c:
            if mount:
                size = "400k" if kind == "full" else "64m"
                mounted = succeeds(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", mnt])
                if mounted:
                    unmount.append(functools.partial(succeeds, ["umount", "-l", mnt]))
            half = tpl.launches[: len(tpl.launches) // 2]
            rest = tpl.launches[len(tpl.launches) // 2 :]
            tpl_half = dataclasses.replace(tpl, launches=half)
            tpl_rest = dataclasses.replace(tpl, launches=rest)
            wait_all(start_writers(tpl_half, inst.root, inst.logdir, procs=1, pace=(0, 0), seed=700 + t), c)
            tr = JournalDiskTrial(inst, c, res, outcomes, mnt, mounted, tpl_rest, t)
            if kind == "full":
                disk_full(tr)
            else:
                read_only(tr)
            final_ingest_and_check(cluster, inst, c)
    res.detail = (
        ("tmpfs and read-only remounts" if mount else "RLIMIT_FSIZE, chmod")
        + "; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
    )
    return res


def disk_full(tr: JournalDiskTrial) -> None:
    """Ingest into a journal whose disk is full; then, with a tmpfs, a push whose journal cannot
    record what the database applied."""
    inst, c, res, mnt, mounted = tr.inst, tr.c, tr.res, tr.mnt, tr.mounted
    # No tmpfs here: the journal's files may not grow past 400 KiB (EFBIG).
    preexec = None if mounted else file_size_limit(400 * 1024)
    p = inst.run(inst.ingest(), "ingest-full", preexec=preexec)
    how = "tmpfs" if mounted else "RLIMIT_FSIZE"
    tr.count(f"ingest, disk full ({how}) exit {p.popen.returncode}")
    if p.popen.returncode == 0:
        c.note(f"(the journal fit in the small disk; {how})")
    else:
        res.faults += 1
        one_line_error(p, c, "ingest on a full disk", 73)
    k = check_committed_prefixes(inst.journal) if os.path.exists(inst.journal) else Check()
    k.events = 0
    c.add(k)
    if mounted:
        succeeds(["mount", "-o", "remount,size=64m", mnt])
    wait_all(start_writers(tr.rest, inst.root, inst.logdir, procs=1, pace=(0, 0), seed=750 + tr.t), c)
    expect_ok(inst.run(inst.ingest(), "ingest"), c, "ingest after the disk was freed")
    if mounted:
        # Now the push: the database applies, then the journal cannot record it.
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        p = inst.run(inst.push("--timeout", "20"), "push-full", timeout=200)
        tr.count(f"push, disk full exit {p.popen.returncode}")
        if p.popen.returncode != 0:
            res.faults += 1
            one_line_error(p, c, "push on a full disk", 73)
        os.unlink(filler)


def file_size_limit(limit: int) -> Callable[[], None]:
    """A child's preexec: files it writes may not grow past ``limit`` bytes."""

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def read_only(tr: JournalDiskTrial) -> None:
    """Ingest and push once, then both on a journal that became read-only."""
    inst, c, res, mnt, mounted = tr.inst, tr.c, tr.res, tr.mnt, tr.mounted
    expect_ok(inst.run(inst.ingest(), "ingest"), c, "first ingest")
    expect_ok(inst.run(inst.push("--timeout", "20"), "push", timeout=200), c, "first push")
    wait_all(start_writers(tr.rest, inst.root, inst.logdir, procs=1, pace=(0, 0), seed=760 + tr.t), c)
    ro = mounted and succeeds(["mount", "-o", "remount,ro", mnt])
    preexec = None
    if not ro:
        # No remount here: file modes (root's children lose the right to ignore them).
        for name in os.listdir(mnt):
            os.chmod(os.path.join(mnt, name), 0o444)
        os.chmod(mnt, 0o555)
        ro = True
        preexec = without_dac_override if os.geteuid() == 0 else None
    if ro:
        res.faults += 1
        for cmd, name in ((inst.ingest(), "ingest"), (inst.push("--timeout", "20"), "push")):
            p = inst.run(cmd, f"{name}-readonly", timeout=200, preexec=preexec)
            tr.count(f"{name}, read-only exit {p.popen.returncode}")
            one_line_error(p, c, f"{name} on a read-only journal", 73)
        if mounted:
            succeeds(["mount", "-o", "remount,rw", mnt])
        else:
            os.chmod(mnt, 0o755)
            for name in os.listdir(mnt):
                os.chmod(os.path.join(mnt, name), 0o644)


SCENARIO = Scenario(7, NAME, (2, 10), run)
