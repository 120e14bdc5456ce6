"""Scenario 10: ``failCommand`` faults at every command a push sends, then a clean push.

What a replica set shows the driver while it changes primaries, injected by the server itself
(``configureFailPoint: failCommand`` on a SecantusDB of the scenario's own, started with
``--enable-test-commands``) and scoped to the faulty push's own connections (its ``appName``):
a stepdown (NotWritablePrimary, 10107), ShutdownInProgress (91), InterruptedDueToReplStateChange
(11602), a ``writeConcernError`` (64, WriteConcernFailed: the write is applied, but not
acknowledged as asked), a dropped connection, and a stalled one (``blockConnection`` for longer
than the pusher's socket timeout, which is 30 s at least: each stall costs half a minute, so the
full run stalls the first and the last occurrence of each command of one push, the quick run none).

The commands are recorded, not assumed: a clean push of each stage runs once in a ``_watched``
process, which lists every command it sends, in order. Three stages of one workload:

- ``running``: the jobs have started, checkpointed and pinged (a push while they run);
- ``completions``: then they end (FWActions with additions, detours, defused children...);
- ``finishing``: every event at once, after a push killed inside its bulk completion
  (``bulk.after_fireworks``): the replay of its write set, then the one-by-one re-check.

A trial strikes one occurrence of one command of one stage (``skip`` n) with one fault: from that
occurrence on, to the end of the push (a failover still under way: "from"), or that occurrence
alone (a blip that the driver's retryable reads and writes may absorb: "once"; a stall is always
"once"). The full run (:meth:`Sweep.plan`) strikes every occurrence of every command of the two
clean pushes with every fault "from" there, and once more "once"; and every occurrence of the
finishing push, the faults in turn. The quick run takes a sample. The faulty push must exit 75
with one line naming what happened, or 0, and the fault must have struck the very occurrence it
was aimed at (the ``_watched`` record says which command failed first); then, the fault switched
off (and a stalled command finished), one clean push must leave nothing pending and, after the
later stages, the LaunchPad must equal the clean run's, field by field, with every event in the
journal once. The harness's own steps (ingest, clean pushes) run in its own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fwspool.spool import scan
from fwspool.testing.chaos.cluster import Cluster, Instance
from fwspool.testing.chaos.invariants import (
    Check,
    backlog,
    check_db,
    check_journal,
    inventory,
    raw_decoder,
)
from fwspool.testing.chaos.processes import Proc, watched_cmd
from fwspool.testing.chaos.trial import Scenario, ScenarioResult, ingest_here, push_here, trial
from fwspool.testing.chaos.workload import write_spool_files

NAME = "failCommand faults at every command of a push"

#: The faulty push's application name: the failpoint strikes its connections only.
APP_NAME = "fwspool-chaos-faulty-push"
#: The faulty push's --timeout; its socket timeout is max(6 x that, 30 s).
PUSH_TIMEOUT = 2.0
SOCKET_TIMEOUT = max(6 * PUSH_TIMEOUT, 30.0)
#: A stall longer than the socket timeout: the pusher gives up on the command first.
STALL_SECONDS = SOCKET_TIMEOUT + 3.0

#: Each fault: the failpoint's data, and the words its one line must contain (any of them).
FAULTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "stepdown": ({"errorCode": 10107}, ("NotWritablePrimary",)),
    "shutdown": ({"errorCode": 91}, ("ShutdownInProgress",)),
    "repl_state_change": ({"errorCode": 11602}, ("InterruptedDueToReplStateChange",)),
    "write_concern": (
        {
            "writeConcernError": {
                "code": 64,
                "codeName": "WriteConcernFailed",
                "errmsg": "waiting for replication timed out",
            }
        },
        ("did not confirm a write",),
    ),
    "dropped_connection": ({"closeConnection": True}, ("cannot reach MongoDB",)),
    "stall": (
        {"blockConnection": True, "blockTimeMS": int(STALL_SECONDS * 1000)},
        ("stopped answering", "cannot reach MongoDB"),
    ),
}
#: The faults a sweep runs at every occurrence (the stall costs the socket timeout each time).
SWEPT = ("stepdown", "shutdown", "repl_state_change", "write_concern", "dropped_connection")
MODES = ("from", "once")
STAGES = ("running", "completions", "finishing")
#: The events that end a launch: the "running" stage's spool files stop before the first.
ENDING_EVENTS = frozenset({"completed", "exited", "lost", "released"})


@dataclass(frozen=True)
class Strike:
    """One trial's fault: the ``n``-th (from 0) ``command`` of the push of ``stage``."""

    stage: str
    command: str
    n: int
    fault: str
    mode: str

    def __str__(self) -> str:
        return f"{self.fault} ({self.mode}) at {self.command} #{self.n} of the {self.stage} push"

    def failpoint(self) -> dict[str, Any]:
        data, _words = FAULTS[self.fault]
        once = self.mode == "once" or self.fault == "stall"
        return {
            "configureFailPoint": "failCommand",
            "mode": {"skip": self.n, "times": 1} if once else {"skip": self.n},
            "data": {"failCommands": [self.command], "appName": APP_NAME, **data},
        }


def running_phase(files: dict[str, bytes]) -> dict[str, bytes]:
    """Each spool file cut before its first ending event (files that start with one left out)."""
    out = {}
    for rel, data in files.items():
        end = 0
        for fr in scan(data, at_eof=True).frames:
            event = json.loads(bytes(raw_decoder.decode(fr.payload).event))
            if event.get("type") in ENDING_EVENTS:
                break
            end = fr.offset + fr.length
        if end:
            out[rel] = data[:end]
    return out


class Sweep:
    """The scenario's server, workload, recorded pushes, and what its trials saw."""

    def __init__(self, cluster: Cluster, server: Any, rng: random.Random) -> None:
        self.cluster = cluster
        self.server = server
        self.rng = rng
        self.tpl = cluster.template(seed=22, n_chain=8, n_pair=4)
        self.want = cluster.reference(self.tpl, self.tpl.golden)
        self.early = running_phase(self.tpl.golden)
        self.recorded: dict[str, list[list[Any]]] = {}
        self.exits: dict[str, int] = {}
        self.missed: list[str] = []

    @property
    def fault_uri(self) -> str:
        return f"{self.server.uri}&appName={APP_NAME}"

    @contextlib.contextmanager
    def armed(self, strike: Strike | None) -> Iterator[None]:
        import pymongo

        client: Any = pymongo.MongoClient(self.server.uri, serverSelectionTimeoutMS=20000)
        try:
            if strike is not None:
                client.admin.command(strike.failpoint())
            yield
        finally:
            client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
            client.close()

    def prepare(self, inst: Instance, stage: str, c: Check) -> None:
        """The instance as the push of ``stage`` finds it."""
        if stage in ("running", "completions"):
            write_spool_files(inst.launches_root, self.early)
            ingest_here(inst)
        if stage == "completions":
            push_here(inst)
        if stage in ("completions", "finishing"):
            write_spool_files(inst.launches_root, self.tpl.golden)
            ingest_here(inst)
        if stage == "finishing":
            p = inst.run(
                inst.push(), "push-killed", env=inst.env(FWSPOOL_FAILPOINTS="bulk.after_fireworks=kill")
            )
            if p.popen.returncode != -signal.SIGKILL:
                c.other += 1
                c.note(f"the push to be finished was not killed at bulk.after_fireworks: {p.stderr[-300:]}")

    def push(self, inst: Instance, name: str) -> tuple[Proc, list[list[Any]]]:
        """The push under test, in a ``_watched`` process: its exit, and the commands it sent."""
        record = os.path.join(inst.root, f"{name}.json")
        args = inst.push("--timeout", str(PUSH_TIMEOUT), uri=self.fault_uri)[3:]
        p = inst.run(watched_cmd(record, *args), name, timeout=300)
        try:
            with open(record) as f:
                return p, json.load(f)
        except (OSError, ValueError):
            return p, []

    def record(self, stage: str) -> list[list[Any]]:
        """The commands a clean push of ``stage`` sends, in order."""
        inst = self.cluster.instance(self.tpl, f"s10-record-{stage}", spool=False, uri=self.server.uri)
        c = Check()
        self.prepare(inst, stage, c)
        with self.armed(None):
            p, sent = self.push(inst, "push-recorded")
        if c.failed or p.popen.returncode != 0 or not sent or any(o != "ok" for *_, o in sent):
            raise RuntimeError(f"the clean {stage} push failed: {c.notes} {p.stderr[-500:]} {sent[-3:]}")
        self.cluster.dispose(inst)
        return sent

    def plan(self) -> list[Strike]:
        """The full sweep. The clean pushes (``running``, ``completions``): every occurrence of
        every command with every fault from there on, and once more with that occurrence alone
        (the faults in turn); the stall at the first and the last occurrence of each command of
        the ``completions`` push. The ``finishing`` push: every occurrence, the faults in turn."""
        strikes = []
        turn = 0
        for stage in STAGES:
            sent = self.recorded[stage]
            last = {name: n for name, n, _ in sent}
            for name, n, _ in sent:
                turn += 1
                rotating = SWEPT[turn % len(SWEPT)]
                if stage == "finishing":
                    strikes.append(Strike(stage, name, n, rotating, "from"))
                    continue
                strikes += [Strike(stage, name, n, fault, "from") for fault in SWEPT]
                strikes.append(Strike(stage, name, n, rotating, "once"))
                if stage == "completions" and n in (0, last[name]):
                    strikes.append(Strike(stage, name, n, "stall", "once"))
        return strikes

    def sample(self, strikes: list[Strike], k: int) -> list[Strike]:
        """``k`` strikes, the faults taken in turn (no stall: it costs half a minute)."""
        by_fault: dict[str, list[Strike]] = {}
        for s in strikes:
            if s.fault != "stall":
                by_fault.setdefault(s.fault, []).append(s)
        faults = list(SWEPT)
        self.rng.shuffle(faults)
        return [self.rng.choice(by_fault[faults[i % len(faults)]]) for i in range(k)]

    def strike(self, inst: Instance, strike: Strike, c: Check, res: ScenarioResult) -> None:
        """One trial: the stage prepared, the push under the fault, a clean push, the later stages."""
        self.prepare(inst, strike.stage, c)
        with self.armed(strike):
            p, sent = self.push(inst, "push-faulty")
        if strike.fault == "stall":
            time.sleep(STALL_SECONDS - SOCKET_TIMEOUT + 1.0)  # the stalled command finishes first
        self.judge(p, sent, strike, c, res)
        summary = push_here(inst)
        left = backlog(inst.journal)
        if left:
            c.pending_left += left
            c.note(
                f"{strike}: {left} events or write sets pending after the clean push ({summary.problems[:2]})"
            )
        if strike.stage == "running":
            write_spool_files(inst.launches_root, self.tpl.golden)
            ingest_here(inst)
            push_here(inst)
        c.add(check_journal(inst.journal, inventory(inst.launches_root)))
        c.add(check_db(inst, self.want))

    def judge(self, p: Proc, sent: list[list[Any]], strike: Strike, c: Check, res: ScenarioResult) -> None:
        """Exit 0, or 75 with one line naming the fault; and the fault struck where it was aimed."""
        code = p.popen.returncode
        self.exits[str(code)] = self.exits.get(str(code), 0) + 1
        err = p.stderr
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if "Traceback" in err or code not in (0, 75):
            c.other += 1
            c.note(f"{strike}: exit {code}: {err.strip()[-600:]}")
        elif code == 75:
            _data, words = FAULTS[strike.fault]
            if (
                len(lines) != 1
                or not lines[0].startswith("fwspool: ")
                or not any(w in lines[0] for w in words)
            ):
                c.other += 1
                c.note(f"{strike}: exit 75 with {len(lines)} lines, want one naming {words}: {err[-400:]}")
        first = next(((name, n) for name, n, outcome in sent if outcome not in ("ok", "sent")), None)
        if first == (strike.command, strike.n):
            res.faults += 1
        else:
            self.missed.append(f"{strike}: first fault seen at {first}")


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(10, NAME)
    server = cluster.own_server("s10", "--enable-test-commands")
    try:
        sweep = Sweep(cluster, server, rng)
        for stage in STAGES:
            sweep.recorded[stage] = sweep.record(stage)
        strikes = sweep.plan()
        chosen = strikes if full or trials >= len(strikes) else sweep.sample(strikes, trials)
        for t, strike in enumerate(chosen):
            inst = cluster.instance(sweep.tpl, f"s10-t{t}", spool=False, uri=server.uri)
            with trial(cluster, res, inst) as c:
                sweep.strike(inst, strike, c, res)
    finally:
        server.stop()
    for note in sweep.missed[:3]:
        res.check.note(f"missed: {note}")
    res.check.other += len(sweep.missed)
    commands = "; ".join(
        f"{stage}: " + ", ".join(f"{n} {name}" for name, n in sorted(_counts(sweep.recorded[stage]).items()))
        for stage in STAGES
    )
    kinds: dict[str, int] = {}
    for s in chosen:
        key = f"{s.stage}/{s.mode}"
        kinds[key] = kinds.get(key, 0) + 1
    res.detail = (
        f"{len(chosen)} of {len(strikes)} strikes ({'every one' if len(chosen) == len(strikes) else 'a sample'}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + "); "
        f"a clean push sends {commands}; faulty pushes exited "
        + ", ".join(f"{k}: {v}" for k, v in sorted(sweep.exits.items()))
    )
    return res


def _counts(sent: list[list[Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, _n, _ in sent:
        out[name] = out.get(name, 0) + 1
    return out


SCENARIO = Scenario(10, NAME, (3, 296), run)
