"""One trial's bookkeeping: a scenario's entry and result, a trial's Check, what a process must do.

A scenario runs trials; each trial gets an :class:`~fwspool.testing.chaos.cluster.Instance` and a
:class:`~fwspool.testing.chaos.invariants.Check` from :func:`trial`, injects its faults, then
checks the invariants (:func:`final_ingest_and_check`, or the checks it needs itself).
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fwspool.testing.chaos.cluster import Cluster, Instance
from fwspool.testing.chaos.invariants import Check, check_db, check_journal, inventory, journal_rows
from fwspool.testing.chaos.processes import Proc, killer_cmd
from fwspool.testing.chaos.progress import log
from fwspool.testing.chaos.workload import Template, read_spool_files

if TYPE_CHECKING:
    from fwspool.push import PushSummary


@dataclass
class ScenarioResult:
    scenario: int
    name: str
    trials: int = 0
    faults: int = 0  # faults that landed (a kill while the target ran, a cut connection...)
    check: Check = field(default_factory=Check)
    seconds: float = 0.0
    detail: str = ""

    def row(self) -> dict[str, Any]:
        c = self.check
        return {
            "scenario": self.scenario,
            "name": self.name,
            "trials": self.trials,
            "faults": self.faults,
            "events": c.events,
            "lost": c.lost,
            "duplicated": c.duplicated,
            "mismatched": c.mismatched,
            "merged": c.merged,
            "stalled": c.stalled,
            "other": c.extra + c.pending_left + c.bad_quarantine + c.other,
            "seconds": round(self.seconds, 1),
            "detail": self.detail,
            "notes": c.notes,
        }


#: A scenario's trials: (cluster, number of trials, its random source, full run?) -> result.
Runner = Callable[[Cluster, int, random.Random, bool], ScenarioResult]


@dataclass(frozen=True)
class Scenario:
    """A scenario as the command line knows it: its number, its name, its trial counts."""

    number: int
    name: str
    #: Trial counts: (quick, full).
    trials: tuple[int, int]
    run: Runner


def expect_ok(p: Proc, c: Check, what: str, codes: tuple[int, ...] = (0,)) -> int:
    """A process that must exit with one of ``codes`` and print no traceback."""
    code = p.popen.returncode
    err = p.stderr
    if code not in codes or "Traceback" in err:
        c.other += 1
        c.note(f"{what}: exit {code}: {err.strip()[-600:]}")
    elif code not in (0,) and code >= 0:
        lines = [ln for ln in err.splitlines() if ln.startswith("fwspool: ")]
        if not lines:
            c.other += 1
            c.note(f"{what}: exit {code} without a 'fwspool: ' line: {err.strip()[-300:]}")
    return code


def no_traceback(p: Proc, c: Check, what: str) -> None:
    if "Traceback" in p.stderr:
        c.other += 1
        c.note(f"{what}: traceback: {p.stderr.strip()[-600:]}")


def final_ingest_and_check(
    cluster: Cluster, inst: Instance, c: Check, *, push: bool = True, exact: bool = True
) -> None:
    """A clean ingest and push after the faults, then invariants (a), (b), (c)."""
    expect_ok(inst.run(inst.ingest(), "ingest-final"), c, "final ingest")
    inv = inventory(inst.launches_root)
    c.add(check_journal(inst.journal, inv, exact=exact))
    integrity = journal_rows(inst.journal, "PRAGMA integrity_check")
    if integrity != [{"integrity_check": "ok"}]:
        c.other += 1
        c.note(f"journal integrity: {integrity[:3]}")
    check_summary(inst.journal, c, "after the final ingest")
    if push:
        expect_ok(inst.run(inst.push("--timeout", "20"), "push-final", timeout=200), c, "final push")
        c.add(check_db(inst, cluster.reference(inst.tpl, read_spool_files(inst.launches_root))))
        check_summary(inst.journal, c, "after the final push")


def check_summary(journal: str, c: Check, when: str) -> None:
    """What status reads (launch_summary) is what the events say, after every kill of the trial."""
    from fwspool.journal.summary import differences

    conn = sqlite3.connect(journal, timeout=60, isolation_level=None)
    try:
        wrong = differences(conn)
    finally:
        conn.close()
    if wrong:
        c.other += 1
        c.note(f"launch_summary {when}: {len(wrong)} launches differ from their events: {wrong[:2]}")


def wait_all(procs: Sequence[Proc], c: Check, timeout: float = 300) -> None:
    for p in procs:
        code = p.wait(timeout)
        if code != 0:
            c.other += 1
            c.note(f"{p.name} exited {code}: {p.stderr.strip()[-500:]}")


def paced(tpl: Template, procs: int, seconds: float) -> tuple[float, float]:
    """Writer pacing so that ``procs`` writers append everything in about ``seconds``."""
    records = sum(len(s["records"]) for li in tpl.launches for s in li.streams)
    avg = seconds / max(1, records / procs)
    return (0.0, 2 * avg)


@contextlib.contextmanager
def trial(
    cluster: Cluster, res: ScenarioResult, inst: Instance, cleanup: list[Callable[[], Any]] | None = None
) -> Iterator[Check]:
    """One trial: its Check (an exception is a failed trial), then its instance disposed of (kept
    when it failed); ``cleanup`` runs first."""
    c = Check()
    try:
        yield c
    except Exception as exc:  # a harness-level failure is a failed trial, not a crash of the run
        c.other += 1
        where = traceback.extract_tb(exc.__traceback__)[-1]
        # The harness is a package now: the line number alone would not say where.
        at = f"line {where.lineno} of {os.path.basename(where.filename)}"
        c.note(f"trial {inst.tag} failed: {type(exc).__name__}: {exc} ({at})")
    for undo in cleanup or ():
        undo()
    res.trials += 1
    res.check.add(c)
    if c.failed:
        log(f"FAILED {inst.tag}: {c.notes[:4]}")
    cluster.dispose(inst, failed=c.failed)


def one_line_error(p: Proc, c: Check, what: str, code: int) -> None:
    """A process that must fail with ``code`` and one ``fwspool: `` error line, no traceback."""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("fwspool: ") and "warning" not in ln]
    if p.popen.returncode != code or "Traceback" in p.stderr or len(errors) != 1:
        c.other += 1
        c.note(f"{what}: exit {p.popen.returncode} (want {code}), stderr: {p.stderr.strip()[-500:]}")


def ingest_here(inst: Instance, journal: str | None = None) -> None:
    """One ingest pass of the instance's launch directories, in this process (a clean one: the
    harness's own step between faults, not the process under test)."""
    from fwspool.ingest import Ingester
    from fwspool.journal import Journal

    with Journal.open(journal or inst.journal) as j:
        Ingester(j, roots=[inst.launches_root]).run_pass()


def push_here(inst: Instance, journal: str | None = None, timeout: float = 20.0) -> PushSummary:
    """One push pass in this process, as `fwspool push --timeout TIMEOUT` makes it."""
    from fwspool.config import LaunchPadConfig
    from fwspool.journal import Journal
    from fwspool.push import Pusher
    from fwspool.uplink import MongoUplink

    with Journal.open(journal or inst.journal) as j:
        uplink = MongoUplink(
            LaunchPadConfig({"host": inst.uri, "uri_mode": True, "name": inst.db}, "chaos"), timeout=timeout
        )
        try:
            return Pusher(j, uplink).run_pass()
        finally:
            uplink.close()


def count_push_writes(cluster: Cluster, tpl: Template) -> tuple[int, float]:
    """The write commands and the seconds of a clean push of the template's workload."""
    if tpl.key in cluster.push_counts:
        return cluster.push_counts[tpl.key]
    inst = cluster.instance(tpl, "s2-count")
    try:
        inst.run(inst.ingest(), "ingest")
        t0 = time.monotonic()
        p = inst.run(killer_cmd(0, "count", *inst.push()[3:]), "push-count")
        took = time.monotonic() - t0
        for line in p.stderr.splitlines():
            if line.startswith("chaos: write commands "):
                cluster.push_counts[tpl.key] = (int(line.split()[-1]), took)
                return cluster.push_counts[tpl.key]
        raise RuntimeError(f"could not count the push's writes: {p.stderr[-500:]}")
    finally:
        cluster.dispose(inst)
