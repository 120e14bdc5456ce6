#!/usr/bin/env python3
"""Fault injection for fwspool: kill it, starve it, cut it off, corrupt its input — and prove that
no event is lost and none is applied twice.

    python tools/chaos.py --full              # every scenario at full trial counts (~20-30 min)
    python tools/chaos.py --quick             # the short version the test suite runs
    python tools/chaos.py --scenario 2 --trials 30
    python tools/chaos.py --full --json       # JSON on stdout, the table on stderr

Everything is real: ``fwspool`` processes (``python -m fwspool.cli ...``) killed with SIGKILL, spool
files written by writer processes (``SpoolWriter``, one file per writer, killed mid-record too) and
by real ``fwspool rlaunch`` runs, a real SQLite journal, and real SecantusDB servers started here
(``fwspool.devserver.DevServer``; scenario 3 kills and restarts one of its own).

The workload: a LaunchPad with two-step workflows and workflows with two parallel roots, every
root reserved offline as ``qlaunch -r`` does; the compute side of each launch is simulated by
writer processes appending what ``fwspool rlaunch`` would (started, checkpoint, pings,
completed with an FWAction — sometimes with additions, detours, a non-idempotent ``mod_spec``,
defused children, FIZZLED —, exited, a walltime kill recorded by a second writer, notes), plus real
``fwspool rlaunch`` runs. Times and writer ids are deterministic, so the same workload always
writes the same bytes.

After every trial the invariants are checked:

(a) every event a writer appended (every valid record in the spool files, read with
    ``fwspool.spool.scan``) is in the journal exactly once, with the same content; nothing in the
    journal that no spool holds;
(b) every journal event is applied exactly once: the LaunchPad equals the one a clean, fault-free
    run of the same records produces (a clone of the same reserved LaunchPad, so the same ids) —
    Fireworks (state, spec, launches...), launches (state, the whole state history with its times,
    action, host...), workflows (nodes, links, fw_states, state...), offline_runs and the id
    counters, field by field; ignored are only the ``_id`` s, the launch directory (each run has
    its own) and the ``updated_on`` that FireWorks sets to the time of the write;
(c) nothing is left pending that should have been pushed, no workflow is left locked, and the
    quarantine holds exactly the bytes that are damaged (or records that are invalid).

Per scenario it prints trials, faults that landed, events written, lost, duplicated, mismatched
LaunchPad documents and other invariant failures, and exits 1 on any of them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TOOLS_DIR)
if TOOLS_DIR not in sys.path:
    sys.path.insert(0, TOOLS_DIR)

import msgspec  # noqa: E402

from fwspool.events import RECORD_VERSION, Event, RawRecord, iso  # noqa: E402
from fwspool.spool import (  # noqa: E402
    DEFAULT_MAX_RECORD,
    SPOOL_NAME_RE,
    OsSpoolFile,
    SpoolWriter,
    frame,
    scan,
)

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify"})
COLLECTIONS = ("fireworks", "launches", "workflows", "offline_runs", "fw_id_assigner")
#: What legitimately differs between two runs of the same workload.
VOLATILE = {
    "fireworks": frozenset({"_id", "updated_on"}),
    "launches": frozenset({"_id", "launch_dir"}),
    "workflows": frozenset({"_id", "updated_on"}),
    "offline_runs": frozenset({"_id", "updated_on"}),
    "fw_id_assigner": frozenset({"_id"}),
}
SCENARIOS = {
    1: "kill -9 ingest while writers append",
    2: "kill -9 push (random, at DB writes, before mark)",
    3: "database killed/stopped during push",
    4: "network cut/stalled mid-batch (proxy)",
    5: "torn writers and corrupted spool files",
    6: "two ingesters and two pushers at once",
    7: "journal disk full / read-only",
    8: "compute-node clocks hours off",
    9: "bad configuration and input at the CLI",
}
#: Trial counts: (quick, full).
TRIALS = {
    1: (6, 200),
    2: (4, 100),
    3: (3, 50),
    4: (3, 30),
    5: (8, 60),
    6: (2, 8),
    7: (2, 10),
    8: (2, 12),
    9: (1, 1),
}

_verbose = False


def log(msg: str) -> None:
    if _verbose:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =============================================================================================
# Processes


_INBOX: list[str] = []


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every process the harness starts: tools/ importable (chaos_tasks), no
    FWSPOOL_* settings leaking in from the caller's shell, and an inbox of its own (instances
    pass theirs: one trial must never learn another's launches)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FWSPOOL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (TOOLS_DIR, env.get("PYTHONPATH", "")) if p)
    if not _INBOX:
        _INBOX.append(tempfile.mkdtemp(prefix="fwspool-chaos-inbox-"))
    # A new one per process started: pointers one process leaves are never read by another.
    _INBOX.append(os.path.join(_INBOX[0], str(len(_INBOX))))
    env["FWSPOOL_INBOX"] = _INBOX[-1]
    env.update(extra)
    return env


def fwspool_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fwspool.cli", *args]


def killer_cmd(after_writes: int, when: str, *args: str, target: str = "self") -> list[str]:
    """`fwspool ARGS` in a process that, at its N-th database write command — before sending it
    (``started``) or once the database acknowledged it (``succeeded``) — kills itself with SIGKILL
    (``target`` "self"), or the database server: "kill:PID" (SIGKILL) or "term:PID" (SIGTERM)."""
    return [sys.executable, os.path.abspath(__file__), "_killer", str(after_writes), when, target, *args]


@dataclass
class Proc:
    """A started process, its output captured in files (pipes could fill up and block it)."""

    popen: subprocess.Popen[bytes]
    out_path: str
    err_path: str
    name: str

    def wait(self, timeout: float = 180.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise RuntimeError(f"{self.name} did not finish within {timeout:.0f}s") from None

    def kill(self) -> bool:
        """SIGKILL; True if the process was still running (the kill landed)."""
        if self.popen.poll() is not None:
            return False
        try:
            os.kill(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.popen.wait()
        return True

    @property
    def stderr(self) -> str:
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    @property
    def stdout(self) -> str:
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")


def start(
    cmd: Sequence[str],
    logdir: str,
    name: str,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    preexec: Callable[[], None] | None = None,
) -> Proc:
    os.makedirs(logdir, exist_ok=True)
    stem = os.path.join(logdir, f"{name}-{time.monotonic_ns()}")
    with open(stem + ".out", "wb") as out, open(stem + ".err", "wb") as err:
        p = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env or child_env(),
            cwd=cwd,
            preexec_fn=preexec,
        )
    return Proc(p, stem + ".out", stem + ".err", name)


def run(cmd: Sequence[str], logdir: str, name: str, timeout: float = 180.0, **kw: Any) -> Proc:
    p = start(cmd, logdir, name, **kw)
    p.wait(timeout)
    return p


# =============================================================================================
# The writer helper (run as `python tools/chaos.py _writer PLAN.json`)


class TearingFile(OsSpoolFile):
    """A spool file whose records reach the disk in pieces, a few milliseconds apart: a writer
    killed now leaves a torn record, as a short write or a dying NFS client does."""

    def __init__(self, path: str, mode: int = 0o600) -> None:
        super().__init__(path, mode)
        self._rng = random.Random(zlib.crc32(path.encode()))

    def write(self, data: bytes) -> None:
        cuts = sorted(self._rng.sample(range(1, len(data)), min(3, len(data) - 1)))
        start_ = 0
        for cut in [*cuts, len(data)]:
            super().write(data[start_:cut])
            start_ = cut
            time.sleep(self._rng.uniform(0.0005, 0.004))


def writer_main(plan_path: str) -> int:
    """Append every stream of the plan, interleaved at random, one SpoolWriter per stream."""
    with open(plan_path) as f:
        plan = json.load(f)
    rng = random.Random(plan["seed"])
    lo, hi = plan.get("pace", (0.0, 0.0))
    streams = plan["streams"]
    writers: dict[int, SpoolWriter] = {}
    pos = dict.fromkeys(range(len(streams)), 0)
    ready = [i for i, s in enumerate(streams) if s.get("after") is None]
    now: list[dt.datetime] = [T0]
    opener = TearingFile if plan.get("tear") else OsSpoolFile
    decoder = msgspec.json.Decoder(Event)
    try:
        while True:
            candidates = [i for i in ready if pos[i] < len(streams[i]["records"])]
            if not candidates:
                break
            i = rng.choice(candidates)
            s = streams[i]
            if i not in writers:
                writers[i] = SpoolWriter(
                    s["dir"],
                    s["launch_id"],
                    s.get("fw_id"),
                    writer_id=s["writer"],
                    clock=lambda: now[0],
                    opener=opener,
                )
            at, event_json, durable = s["records"][pos[i]]
            now[0] = dt.datetime.fromisoformat(at)
            writers[i].append(decoder.decode(event_json), durable=durable)
            pos[i] += 1
            if pos[i] == len(s["records"]):
                writers.pop(i).close()
                ready.extend(j for j, t in enumerate(streams) if t.get("after") == i)
            if hi > 0:
                time.sleep(rng.uniform(lo, hi))
    finally:
        for w in writers.values():
            w.close()
    return 0


def killer_main(after_writes: int, when: str, target: str, args: list[str]) -> int:
    """Run `fwspool ARGS` in this process; strike at its ``after_writes``-th write command."""
    from pymongo import monitoring

    def strike() -> None:
        print("chaos: struck", file=sys.stderr, flush=True)
        if target == "self":
            os.kill(os.getpid(), signal.SIGKILL)
        how, _, pid = target.partition(":")
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL if how == "kill" else signal.SIGTERM)

    class Killer(monitoring.CommandListener):
        count = 0
        struck = False

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name in WRITE_COMMANDS:
                self.count += 1
                if when == "started" and self.count == after_writes and not self.struck:
                    self.struck = True
                    strike()

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            if (
                when == "succeeded"
                and event.command_name in WRITE_COMMANDS
                and self.count == after_writes
                and not self.struck
            ):
                self.struck = True
                strike()

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    killer = Killer()
    monitoring.register(killer)
    from fwspool.cli import main

    try:
        main(args=args, prog_name="fwspool")
    finally:
        if when == "count":
            print(f"chaos: write commands {killer.count}", file=sys.stderr, flush=True)
    return 0


def fake_fstype_main(fstype: str, args: list[str]) -> int:
    """Run `fwspool ARGS` as if every path were on a ``fstype`` filesystem (no NFS server here)."""
    import fwspool.journal

    fwspool.journal.filesystem_type = lambda path: fstype
    from fwspool.cli import main

    main(args=args, prog_name="fwspool")
    return 0


# =============================================================================================
# Workload: a reserved LaunchPad (the template) and what its compute nodes append


@dataclass
class LaunchInfo:
    launch_id: int
    fw_id: int
    rel: str  # launch directory, relative to an instance root
    kind: str  # "synthetic" or "rlaunch"
    outcome: str
    #: Synthetic launches: one dict per writer {"writer", "records": [[at, event_json, durable]], "after"}.
    streams: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Template:
    """A LaunchPad with every root reserved offline, its launch directories, and the bytes its
    writers and real rlaunch runs wrote (the "golden" spool files)."""

    key: str
    seed: int
    db: str
    root: str
    launches: list[LaunchInfo]
    golden: dict[str, bytes] = field(default_factory=dict)
    #: The id the first Firework an FWAction adds gets (the template's counter).
    first_new_fw_id: int = 0

    @property
    def launch_ids(self) -> set[int]:
        return {li.launch_id for li in self.launches}


def _writer_id(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:32]


def _event_json(event: Any) -> str:
    return msgspec.json.encode(event).decode()


def plan_streams(li: LaunchInfo, rng: random.Random, seed: int, storm: bool) -> list[dict[str, Any]]:
    """The records one synthetic launch's writers append, in each writer's order."""
    from fireworks import Firework, FWAction, FWorker, ScriptTask

    from fwspool.events import Checkpoint, Completed, Exited, Note, Ping, Started
    from fwspool.rlaunch import jsonable

    lid = li.launch_id
    t = T0 + dt.timedelta(seconds=37 * lid)
    main: list[list[Any]] = []

    def add(at: dt.datetime, event: Any, durable: bool | None = None) -> None:
        main.append([at.isoformat(), _event_json(event), durable])

    worker = jsonable(FWorker(name=f"chaos-node-{lid % 3}").to_dict())
    add(t, Started(started_on=t, host=f"nid{lid:05d}", ip=f"10.1.{lid // 250}.{lid % 250}", fworker=worker))
    add(
        t + dt.timedelta(seconds=1),
        Checkpoint(
            checkpoint={"_task_n": 0, "_all_stored_data": {}, "_all_update_spec": {}, "_all_mod_spec": []},
            ping_time=t + dt.timedelta(seconds=1),
        ),
    )
    pings = rng.randint(150, 350) if storm else rng.randint(1, 6)
    for k in range(pings):
        when = t + dt.timedelta(seconds=60 * (k + 1), microseconds=rng.randrange(10**6))
        add(when, Ping(ping_time=when))
    end = t + dt.timedelta(seconds=60 * (pings + 1) + 5)
    streams = [{"writer": _writer_id(seed, lid, 0), "records": main, "after": None}]
    outcome = li.outcome
    if outcome in ("completed", "dynamic", "defuse"):
        # A child of two parents gets both parents' FWActions, in the order their completions reach
        # the database: those of a pair's parents commute (a second application still shows: _inc).
        pair = os.path.basename(li.rel).startswith("pair")
        action = FWAction(
            stored_data={"launch": lid, "energy": -1.5 * lid, "nested": {"k": [lid, "x"]}},
            update_spec={f"from_launch_{lid}": lid} if pair else {"from_launch": lid},
            mod_spec=[
                {"_set": {f"seen_{lid}": lid}} if pair else {"_push": {"seen": lid}},
                {"_inc": {"count": 1}},
            ],
            additions=[Firework(ScriptTask.from_str("echo add"), name=f"add-{lid}")]
            if outcome == "dynamic"
            else [],
            detours=[Firework(ScriptTask.from_str("echo detour"), name=f"detour-{lid}")]
            if outcome == "dynamic"
            else [],
            defuse_children=outcome == "defuse",
        )
        add(end, Completed(state="COMPLETED", action=jsonable(action.to_dict()), completed_on=end))
        add(end + dt.timedelta(seconds=1), Exited(returncode=0))
    elif outcome == "fizzled":
        action = FWAction(
            stored_data={
                "_message": "runtime error during task",
                "_task": {"_fw_name": "ScriptTask", "script": ["exit 3"]},
                "_exception": {"_stacktrace": f"Traceback ...\nRuntimeError: launch {lid}", "_details": None},
            },
            exit=True,
        )
        add(end, Completed(state="FIZZLED", action=jsonable(action.to_dict()), completed_on=end))
        add(end + dt.timedelta(seconds=1), Exited(returncode=0))
    elif outcome == "walltime":
        # What rlaunch's signal handler records: a writer (and a file) of its own.
        streams.append(
            {
                "writer": _writer_id(seed, lid, 1),
                "records": [
                    [
                        end.isoformat(),
                        _event_json(Exited(signal=15, signal_name="SIGTERM", run=_writer_id(seed, lid, 0))),
                        None,
                    ]
                ],
                "after": 0,
            }
        )
    if rng.random() < 0.15:
        note_at = t + dt.timedelta(seconds=30)
        streams.append(
            {
                "writer": _writer_id(seed, lid, 2),
                "records": [
                    [note_at.isoformat(), _event_json(Note(data={"step": "relaxed", "lid": lid})), None]
                ],
                "after": None,
            }
        )
    return streams


def _workflows(n_chain: int, n_pair: int) -> list[Any]:
    from chaos_tasks import ChaosGrowTask
    from fireworks import Firework, ScriptTask, Workflow

    wfs = []
    for i in range(n_chain):
        a = Firework(ScriptTask.from_str("echo a"), name=f"chain{i}-a", spec={"seed": i})
        b = Firework(ScriptTask.from_str("echo b"), name=f"chain{i}-b", parents=[a])
        wfs.append(Workflow([a, b], name=f"chain{i}"))
    for i in range(n_pair):
        p = Firework(ScriptTask.from_str("echo p"), name=f"pair{i}-p")
        q = Firework(ScriptTask.from_str("echo q"), name=f"pair{i}-q")
        r = Firework(ScriptTask.from_str("echo r"), name=f"pair{i}-r", parents=[p, q])
        wfs.append(Workflow([p, q, r], name=f"pair{i}"))
    # Real `fwspool rlaunch` runs: an FWAction with every dynamic feature, a plain script, a failure.
    g = Firework(ChaosGrowTask(label="real"), name="real-grow", spec={"seed": 7})
    gc = Firework(ScriptTask.from_str("echo after"), name="real-grow-child", parents=[g])
    s = Firework(ScriptTask.from_str("echo real"), name="real-script")
    x = Firework(ScriptTask.from_str("exit 3"), name="real-fail")
    wfs += [
        Workflow([g, gc], name="real-grow"),
        Workflow([s], name="real-script"),
        Workflow([x], name="real-fail"),
    ]
    return wfs


REAL_NAMES = ("real-grow", "real-script", "real-fail")


def launchpad(uri: str, name: str) -> Any:
    from fireworks import LaunchPad

    return LaunchPad(host=uri, name=name, uri_mode=True, logdir=None, strm_lvl="ERROR")


def reserve_offline(lp: Any, launch_dir: str, fw_id: int) -> int:
    """What `qlaunch -r` does for one job: reserve, write FW.json + FW_offline.json, register."""
    from fireworks import FWorker
    from fireworks.queue.queue_launcher import setup_offline_job

    os.makedirs(launch_dir, exist_ok=True)
    fw, launch_id = lp.checkout_fw(FWorker(), launch_dir, fw_id=fw_id, state="RESERVED")
    if fw is None:
        raise RuntimeError(f"Firework {fw_id} could not be reserved")
    cwd = os.getcwd()
    os.chdir(launch_dir)
    try:
        setup_offline_job(lp, fw, launch_id)
    finally:
        os.chdir(cwd)
    return int(launch_id)


OUTCOMES = (
    ("completed", 40),
    ("dynamic", 22),
    ("fizzled", 8),
    ("defuse", 5),
    ("running", 12),
    ("walltime", 13),
)


def build_template(cluster: Cluster, seed: int, n_chain: int, n_pair: int, storm: bool) -> Template:
    key = f"s{seed}c{n_chain}p{n_pair}{'storm' if storm else ''}"
    root = os.path.join(cluster.root, "templates", key)
    db = f"tpl_{key}"
    t0 = time.monotonic()
    rng = random.Random(seed)
    lp = launchpad(cluster.uri, db)
    lp.reset("", require_password=False, max_reset_wo_password=10**9)
    for wf in _workflows(n_chain, n_pair):
        lp.add_wf(wf)
    names = {d["fw_id"]: d["name"] for d in lp.fireworks.find({}, {"fw_id": 1, "name": 1})}
    first_new = int(lp.fw_id_assigner.find_one({})["next_fw_id"])
    launches = []
    for fw_id in sorted(d["fw_id"] for d in lp.fireworks.find({"state": "READY"}, {"fw_id": 1})):
        rel = os.path.join("launches", f"{names[fw_id]}")
        lid = reserve_offline(lp, os.path.join(root, rel), fw_id)
        if names[fw_id] in REAL_NAMES:
            launches.append(LaunchInfo(lid, fw_id, rel, "rlaunch", names[fw_id]))
        else:
            outcome = rng.choices([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])[0]
            launches.append(LaunchInfo(lid, fw_id, rel, "synthetic", outcome))
    lp.connection.close()
    tpl = Template(key, seed, db, root, launches, first_new_fw_id=first_new)
    for li in launches:
        if li.kind == "synthetic":
            li.streams = plan_streams(li, random.Random(f"{seed}/{li.launch_id}"), seed, storm)
    # The golden spool files: the writers' and real rlaunch runs' bytes, written once.
    logdir = os.path.join(root, "logs")
    procs = start_writers(tpl, root, logdir, procs=2, pace=(0.0, 0.0), seed=seed)
    procs += start_rlaunch(tpl, root, logdir)
    for p in procs:
        code = p.wait(300)
        if code != 0:
            raise RuntimeError(f"template {key}: {p.name} exited {code}: {p.stderr[-3000:]}")
    tpl.golden = read_spool_files(os.path.join(root, "launches"))
    log(
        f"template {key}: {len(launches)} launches, {count_records(tpl.golden)} records, {time.monotonic() - t0:.1f}s"
    )
    return tpl


def write_plan(
    tpl: Template,
    inst_root: str,
    path: str,
    *,
    seed: int,
    pace: tuple[float, float],
    tear: bool = False,
    launches: Sequence[LaunchInfo] | None = None,
    transform: Callable[[LaunchInfo, dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    streams = []
    index: dict[tuple[int, int], int] = {}
    for li in launches if launches is not None else tpl.launches:
        if li.kind != "synthetic":
            continue
        base = len(streams)
        for k, s in enumerate(li.streams):
            index[(li.launch_id, k)] = base + k
            s2 = dict(s, dir=os.path.join(inst_root, li.rel), launch_id=li.launch_id, fw_id=li.fw_id)
            if s.get("after") is not None:
                s2["after"] = base + s["after"]
            if transform is not None:
                s2 = transform(li, s2)
            streams.append(s2)
    with open(path, "w") as f:
        json.dump({"seed": seed, "pace": list(pace), "tear": tear, "streams": streams}, f)


def start_writers(
    tpl: Template,
    inst_root: str,
    logdir: str,
    *,
    procs: int,
    pace: tuple[float, float],
    seed: int,
    tear: bool = False,
    transform: Callable[[LaunchInfo, dict[str, Any]], dict[str, Any]] | None = None,
) -> list[Proc]:
    """Writer processes appending every synthetic launch's records into ``inst_root``'s launch dirs."""
    synthetic = [li for li in tpl.launches if li.kind == "synthetic"]
    out = []
    for k in range(procs):
        mine = synthetic[k::procs]
        plan = os.path.join(logdir, f"plan-{seed}-{k}.json")
        os.makedirs(logdir, exist_ok=True)
        write_plan(
            tpl,
            inst_root,
            plan,
            seed=seed * 100 + k,
            pace=pace,
            tear=tear,
            launches=mine,
            transform=transform,
        )
        out.append(start([sys.executable, os.path.abspath(__file__), "_writer", plan], logdir, f"writer{k}"))
    return out


def start_rlaunch(tpl: Template, inst_root: str, logdir: str) -> list[Proc]:
    """Real `fwspool rlaunch` runs of the launches reserved for them."""
    out = []
    for li in tpl.launches:
        if li.kind == "rlaunch":
            d = os.path.join(inst_root, li.rel)
            out.append(
                start(fwspool_cmd("rlaunch", "--launch-dir", d), logdir, f"rlaunch-{li.outcome}", cwd=d)
            )
    return out


def read_spool_files(root: str) -> dict[str, bytes]:
    out = {}
    for d, _subdirs, names in os.walk(root):
        for n in names:
            if SPOOL_NAME_RE.match(n):
                path = os.path.join(d, n)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = f.read()
    return out


def count_records(files: dict[str, bytes]) -> int:
    return sum(len(scan(b, at_eof=True).frames) for b in files.values())


# =============================================================================================
# Instances: a trial's own clone of a template (LaunchPad, launch dirs, journal)


def clone_db(src: Any, dst: Any, remap: Callable[[str], str]) -> None:
    """Copy a LaunchPad database (documents and indexes), rewriting launch directories."""
    for coll in COLLECTIONS:
        docs = list(src[coll].find())
        if coll == "launches":
            for d in docs:
                if d.get("launch_dir"):
                    d["launch_dir"] = remap(d["launch_dir"])
        if docs:
            dst[coll].insert_many(docs)
        for name, info in src[coll].index_information().items():
            if name == "_id_":
                continue
            kwargs = {k: v for k, v in info.items() if k in ("unique", "sparse", "background")}
            dst[coll].create_index(info["key"], name=name, **kwargs)


@dataclass
class Instance:
    tpl: Template
    root: str
    db: str
    uri: str
    journal: str
    logdir: str
    tag: str

    @property
    def launches_root(self) -> str:
        return os.path.join(self.root, "launches")

    def env(self, **extra: str) -> dict[str, str]:
        settings = {
            "FWSPOOL_JOURNAL": self.journal,
            "FWSPOOL_MONGODB_URI": self.uri,
            "FWSPOOL_MONGODB_NAME": self.db,
            "FWSPOOL_INBOX": os.path.join(self.root, "inbox"),
        }
        return child_env(**{**settings, **extra})

    def ingest(self, *extra: str) -> list[str]:
        return fwspool_cmd("ingest", "--root", self.launches_root, *extra)

    def push(self, *extra: str, uri: str | None = None) -> list[str]:
        return fwspool_cmd("push", "--uri", uri or self.uri, "--name", self.db, *extra)

    def run(self, cmd: Sequence[str], name: str, timeout: float = 240.0, **kw: Any) -> Proc:
        return run(cmd, self.logdir, name, timeout, env=kw.pop("env", None) or self.env(), **kw)

    def start(self, cmd: Sequence[str], name: str, **kw: Any) -> Proc:
        return start(cmd, self.logdir, name, env=kw.pop("env", None) or self.env(), **kw)


# =============================================================================================
# The clean run, LaunchPad snapshots and their comparison


def _plain(value: Any) -> Any:
    """A comparable form of a BSON value (datetimes as UTC ISO text, ids as text)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return iso(value)
    if type(value).__name__ == "ObjectId":
        return str(value)
    return value


def db_snapshot(db: Any, first_new_fw_id: int | None = None) -> dict[str, dict[Any, Any]]:
    """Every LaunchPad document, keyed by what identifies it across runs, minus VOLATILE fields.

    Fireworks that FWActions added (ids from ``first_new_fw_id`` on) get their id in the order the
    completions reached the database, which legitimately differs between a run that pushed while
    the jobs ran and a run that pushed once at the end: they are named ``new:<name>`` instead
    (the workload gives every added Firework a unique name), everywhere an id appears. A second
    copy of one (an FWAction applied twice) still shows: ``new:<name>#2``.
    """
    import gridfs

    snap: dict[str, dict[Any, Any]] = {}
    keys = {
        "fireworks": lambda d: d["fw_id"],
        "launches": lambda d: d["launch_id"],
        "workflows": lambda d: d.get("name"),
        "offline_runs": lambda d: d["launch_id"],
        "fw_id_assigner": lambda d: "counters",
    }
    label: dict[int, Any] = {}
    if first_new_fw_id is not None:
        seen: dict[str, int] = {}
        for d in db.fireworks.find(
            {"fw_id": {"$gte": first_new_fw_id}}, {"fw_id": 1, "name": 1}, sort=[("fw_id", 1)]
        ):
            seen[d.get("name")] = seen.get(d.get("name"), 0) + 1
            n = seen[d.get("name")]
            label[d["fw_id"]] = f"new:{d.get('name')}" + (f"#{n}" if n > 1 else "")

    def fid(value: Any) -> Any:
        return label.get(value, value) if isinstance(value, int) else value

    def relabel(coll: str, d: dict[str, Any]) -> dict[str, Any]:
        if not label:
            return d
        if coll in ("fireworks", "launches", "offline_runs") and "fw_id" in d:
            d["fw_id"] = fid(d["fw_id"])
        if coll == "workflows":
            d["nodes"] = sorted((fid(n) for n in d.get("nodes", [])), key=str)
            for f in ("links", "parent_links"):
                if isinstance(d.get(f), dict):
                    d[f] = {str(fid(int(k))): sorted((fid(c) for c in v), key=str) for k, v in d[f].items()}
            if isinstance(d.get("fw_states"), dict):
                d["fw_states"] = {str(fid(int(k))): v for k, v in d["fw_states"].items()}
        return d

    for coll in COLLECTIONS:
        docs = {}
        for d in db[coll].find():
            if coll == "launches" and isinstance(d.get("action"), dict) and "gridfs_id" in d["action"]:
                # FireWorks' fallback for an action over 16 MB: compare the action itself.
                from bson import ObjectId

                fs = gridfs.GridFS(db, "fw_gridfs")
                d["action"] = json.loads(fs.get(ObjectId(d["action"]["gridfs_id"])).read())
            if coll == "launches" and "RUNNING" not in [h.get("state") for h in d.get("state_history", [])]:
                # Never started: FireWorks counts the time reserved up to the moment it writes.
                d.pop("reservedtime_secs", None)
            d = relabel(coll, d)
            key = keys[coll](d)
            if key in docs:
                key = (key, len(docs))  # a duplicate: shows as a mismatch
            docs[key] = _plain({k: v for k, v in d.items() if k not in VOLATILE[coll]})
        snap[coll] = docs
    return snap


def _first_difference(got: Any, want: Any, path: str = "") -> str:
    """Where two values first differ: ``state_history[1].updated_on: got X want Y``."""
    if isinstance(got, dict) and isinstance(want, dict):
        for k in sorted(set(got) | set(want), key=str):
            if got.get(k) != want.get(k):
                return _first_difference(got.get(k), want.get(k), f"{path}.{k}" if path else str(k))
    if isinstance(got, list) and isinstance(want, list):
        for i, (g, w) in enumerate(zip(got, want, strict=False)):
            if g != w:
                return _first_difference(g, w, f"{path}[{i}]")
        if len(got) != len(want):
            return f"{path}: {len(got)} items, want {len(want)}"
    return f"{path}: got {str(got)[:160]} want {str(want)[:160]}"


def diff_snapshots(
    got: dict[str, Any], want: dict[str, Any], limit: int = 6, skip: frozenset[tuple[str, Any]] = frozenset()
) -> tuple[int, list[str]]:
    """(number of documents that differ, a few descriptions); ``skip``: (collection, key) pairs
    changed on purpose by something else than the workload."""
    n = 0
    notes: list[str] = []
    for coll in COLLECTIONS:
        g, w = got.get(coll, {}), want.get(coll, {})
        for key in sorted(set(g) | set(w), key=str):
            if g.get(key) == w.get(key) or (coll, key) in skip:
                continue
            n += 1
            if len(notes) >= limit:
                continue
            if key not in g:
                notes.append(f"{coll}/{key}: missing")
            elif key not in w:
                notes.append(f"{coll}/{key}: unexpected document {str(g[key])[:300]}")
            else:
                notes.append(f"{coll}/{key}: {_first_difference(g[key], w[key])}")
    return n, notes


def frames_only(files: dict[str, bytes]) -> dict[str, bytes]:
    """Each file reduced to its complete, valid frames (what a clean run can be given)."""
    return {
        rel: b"".join(frame(fr.payload) for fr in scan(data, at_eof=True).frames)
        for rel, data in files.items()
    }


def content_key(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode(errors="surrogateescape") + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()


# =============================================================================================
# Invariants (a) and (c): spool files against the journal


@dataclass
class Occurrence:
    path: str
    offset: int
    length: int
    writer: str
    seq: int
    launch_id: int
    occurred_at: str
    payload: str


@dataclass
class Inventory:
    """What the spool files under a root hold, read independently of ingest."""

    occurrences: dict[tuple[str, int], list[Occurrence]] = field(default_factory=dict)
    #: Per path: byte ranges that are damage or invalid records (what must be quarantined).
    bad: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    torn: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return len(self.occurrences)


_raw_decoder = msgspec.json.Decoder(RawRecord)
_event_decoder = msgspec.json.Decoder(Event)


def validate(payload: bytes, name_writer: str) -> RawRecord | None:
    """The record in a frame, if ingest must accept it (schema/SPOOL.md, "Reading")."""
    try:
        rec = _raw_decoder.decode(payload)
        _event_decoder.decode(rec.event)
    except (msgspec.DecodeError, ValueError):
        return None
    if rec.v != RECORD_VERSION or rec.writer != name_writer or rec.seq < 1:
        return None
    return rec


def inventory(root: str) -> Inventory:
    inv = Inventory()
    for d, subdirs, names in os.walk(root):
        subdirs.sort()
        try:
            d.encode("utf-8")
        except UnicodeEncodeError:
            continue  # not ingested, by design: ingest names such a directory on every pass
        for n in sorted(names):
            m = SPOOL_NAME_RE.match(n)
            if not m:
                continue
            path = os.path.join(d, n)
            with open(path, "rb") as f:
                data = f.read()
            res = scan(data, at_eof=True, max_record=DEFAULT_MAX_RECORD)
            bad = [(dm.offset, dm.length) for dm in res.damage]
            for fr in res.frames:
                rec = validate(fr.payload, m.group(1))
                if rec is None:
                    bad.append((fr.offset, fr.length))
                    continue
                occ = Occurrence(
                    path,
                    fr.offset,
                    fr.length,
                    rec.writer,
                    rec.seq,
                    rec.launch_id,
                    iso(rec.at),
                    bytes(rec.event).decode(),
                )
                inv.occurrences.setdefault((rec.writer, rec.seq), []).append(occ)
            if bad:
                inv.bad[path] = bad
            if res.consumed < len(data):
                inv.torn[path] = res.consumed
    return inv


def _covered(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of [offset, offset + length) ranges, merged."""
    out: list[list[int]] = []
    for off, length in sorted(ranges):
        if out and off <= out[-1][1]:
            out[-1][1] = max(out[-1][1], off + length)
        else:
            out.append([off, off + length])
    return [(a, b) for a, b in out]


@dataclass
class Check:
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    extra: int = 0
    mismatched: int = 0
    pending_left: int = 0
    bad_quarantine: int = 0
    other: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: Check) -> None:
        for f in (
            "events",
            "lost",
            "duplicated",
            "extra",
            "mismatched",
            "pending_left",
            "bad_quarantine",
            "other",
        ):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.notes.extend(other.notes)

    def note(self, text: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(text)

    @property
    def failed(self) -> bool:
        return bool(
            self.lost
            or self.duplicated
            or self.extra
            or self.mismatched
            or self.pending_left
            or self.bad_quarantine
            or self.other
        )


def journal_rows(journal: str, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    import sqlite3

    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=60)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, tuple(params))]
    finally:
        conn.close()


def check_journal(journal: str, inv: Inventory, *, exact: bool = True) -> Check:
    """Invariant (a) and the quarantine half of (c), for a journal that ingested everything."""
    c = Check(events=inv.events)
    counts = journal_rows(
        journal,
        "SELECT count(*) AS n, count(DISTINCT event_id) AS d, count(DISTINCT writer_id || '-' || seq) AS ws FROM events",
    )[0]
    if not counts["n"] == counts["d"] == counts["ws"]:
        c.duplicated += counts["n"] - min(counts["d"], counts["ws"])
        c.note(f"journal: {counts['n']} rows, {counts['d']} distinct ids")
    rows = journal_rows(
        journal,
        "SELECT e.writer_id, e.seq, e.launch_id, e.occurred_at, e.payload, e.source_offset, s.path "
        "FROM events AS e LEFT JOIN sources AS s ON s.source_id = e.source_id",
    )
    j = {(r["writer_id"], r["seq"]): r for r in rows}
    quarantined: dict[str, list[tuple[int, int]]] = {}
    for q in journal_rows(journal, 'SELECT path, "offset", length, reason FROM quarantine'):
        quarantined.setdefault(q["path"], []).append((q["offset"], q["length"]))
    expected_q = {p: list(r) for p, r in inv.bad.items()}
    for key, occs in inv.occurrences.items():
        row = j.get(key)
        if row is None:
            c.lost += 1
            c.note(f"lost: {key[0]}-{key[1]} ({occs[0].path}@{occs[0].offset})")
            continue
        same = [
            o
            for o in occs
            if (o.payload, o.launch_id, o.occurred_at)
            == (row["payload"], row["launch_id"], row["occurred_at"])
        ]
        if not same:
            c.extra += 1
            c.note(f"journal holds {key[0]}-{key[1]} with content no spool file has")
        # Another file claiming the same writer id with other content: it must not vanish, it
        # must be quarantined.
        for o in occs:
            if o in same:
                continue
            if any(
                a <= o.offset and o.offset + o.length <= b for a, b in _covered(quarantined.get(o.path, []))
            ):
                expected_q.setdefault(o.path, []).append((o.offset, o.length))
            else:
                c.lost += 1
                c.note(
                    f"vanished: {key[0]}-{key[1]} of {o.path}@{o.offset} (its writer id is another file's too)"
                )
    for key, row in j.items():
        if key not in inv.occurrences and row["source_offset"] is not None:
            c.extra += 1
            c.note(f"journal holds {key[0]}-{key[1]} that no spool file holds")
    if exact:
        for path in set(expected_q) | set(quarantined):
            if _covered(expected_q.get(path, [])) != _covered(quarantined.get(path, [])):
                c.bad_quarantine += 1
                c.note(
                    f"quarantine of {path}: got {_covered(quarantined.get(path, []))} want {_covered(expected_q.get(path, []))}"
                )
    return c


def check_committed_prefixes(journal: str) -> Check:
    """After a kill: for every spool file, the events in the journal are exactly the records before
    its committed offset — an offset never runs ahead of (or behind) its events."""
    c = Check()
    if not journal_rows(journal, "SELECT name FROM sqlite_master WHERE name = 'events'"):
        return c  # the journal was never set up (the fault hit its creation): nothing accepted
    rows = journal_rows(
        journal,
        "SELECT e.writer_id, e.seq, s.path FROM events AS e JOIN sources AS s ON s.source_id = e.source_id "
        "WHERE s.kind = 'spool'",
    )
    by_path: dict[str, set[tuple[str, int]]] = {}
    for r in rows:
        by_path.setdefault(r["path"], set()).add((r["writer_id"], r["seq"]))
    everything = {
        (r["writer_id"], r["seq"]) for r in journal_rows(journal, "SELECT writer_id, seq FROM events")
    }
    counts = journal_rows(journal, "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")[0]
    c.duplicated += counts["n"] - counts["d"]
    for src in journal_rows(journal, "SELECT path, committed_offset FROM sources WHERE kind = 'spool'"):
        with open(src["path"], "rb") as f:
            prefix = f.read(src["committed_offset"])
        res = scan(prefix, at_eof=True)
        if res.consumed != len(prefix) or res.damage:
            c.other += 1
            c.note(f"committed offset {src['committed_offset']} of {src['path']} is not at a record boundary")
        keys = set()
        for fr in res.frames:
            rec = _raw_decoder.decode(fr.payload)
            keys.add((rec.writer, rec.seq))
        lost = keys - everything
        if lost:
            c.lost += len(lost)
            c.note(f"{len(lost)} records before the committed offset of {src['path']} are not in the journal")
        ahead = by_path.get(src["path"], set()) - keys
        if ahead:
            c.other += 1
            c.note(f"{len(ahead)} events of {src['path']} lie beyond its committed offset")
    c.events = len(everything)
    return c


def check_pending(journal: str, lp_launch_ids: set[int]) -> Check:
    """(c): after a successful push only events of launches the LaunchPad does not have wait."""
    c = Check()
    for r in journal_rows(journal, "SELECT launch_id, count(*) AS n FROM pending_events GROUP BY launch_id"):
        if r["launch_id"] in lp_launch_ids:
            c.pending_left += r["n"]
            c.note(f"{r['n']} events of launch {r['launch_id']} still pending after a successful push")
    return c


def check_db(inst: Instance, want: dict[str, Any], skip: frozenset[tuple[str, Any]] = frozenset()) -> Check:
    import pymongo

    c = Check()
    client: Any = pymongo.MongoClient(inst.uri, serverSelectionTimeoutMS=20000)
    try:
        db = client[inst.db]
        got = db_snapshot(db, inst.tpl.first_new_fw_id)
        launch_ids = {d["launch_id"] for d in db.launches.find({}, {"launch_id": 1})}
    finally:
        client.close()
    n, notes = diff_snapshots(got, want, skip=skip)
    c.mismatched += n
    for note in notes:
        c.note(note)
    c.add(check_pending(inst.journal, launch_ids))
    return c


# =============================================================================================
# The cluster: servers, templates, trial directories, clean runs


class Cluster:
    """Everything a chaos run shares: a temporary directory, a SecantusDB server, templates and
    the snapshots of clean runs (keyed by the spool content they were made from)."""

    def __init__(self, root: str | None = None, keep: bool = False) -> None:
        self.own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="fwspool-chaos-")
        self.keep = keep
        self.server: Any = None
        self.templates: dict[str, Template] = {}
        self.references: dict[str, dict[str, Any]] = {}
        self.push_counts: dict[str, tuple[int, float]] = {}
        #: Scenarios share two workloads instead of each having its own (the short run).
        self.shared_templates = False
        self._n = 0

    # -- servers ---------------------------------------------------------------------------

    def start(self) -> Cluster:
        from fwspool.devserver import DevServer

        if self.server is None:
            os.makedirs(os.path.join(self.root, "mongo"), exist_ok=True)
            self.server = DevServer(os.path.join(self.root, "mongo", "data")).start()
        return self

    @property
    def uri(self) -> str:
        return str(self.server.uri)

    def own_server(self, name: str) -> Any:
        """A server of a scenario's own, to kill and restart."""
        from fwspool.devserver import DevServer

        os.makedirs(os.path.join(self.root, f"mongo-{name}"), exist_ok=True)
        return DevServer(os.path.join(self.root, f"mongo-{name}", "data")).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- templates and instances -----------------------------------------------------------

    def template(self, seed: int, n_chain: int = 12, n_pair: int = 5, storm: bool = False) -> Template:
        if self.shared_templates:
            # The short run: two workloads for every scenario (building one costs seconds).
            seed, n_chain, n_pair = (11, 12, 5) if storm else (22, 8, 4)
        key = f"{seed}/{n_chain}/{n_pair}/{storm}"
        if key not in self.templates:
            self.templates[key] = build_template(self, seed, n_chain, n_pair, storm)
        return self.templates[key]

    def instance(self, tpl: Template, tag: str, *, spool: bool = True, uri: str | None = None) -> Instance:
        import pymongo

        self._n += 1
        root = os.path.join(self.root, "trials", f"{tag}-{self._n}")
        src_launches = os.path.join(tpl.root, "launches")

        def ignore(d: str, names: list[str]) -> list[str]:
            return [n for n in names if not spool and SPOOL_NAME_RE.match(n)]

        shutil.copytree(src_launches, os.path.join(root, "launches"), ignore=ignore)
        db = f"{tag.replace('-', '_')}_{self._n}_{random.randrange(16**6):06x}"[:60]
        uri = uri or self.uri
        src: Any = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=20000)
        dst: Any = src if uri == self.uri else pymongo.MongoClient(uri, serverSelectionTimeoutMS=20000)
        try:
            clone_db(src[tpl.db], dst[db], lambda p: p.replace(tpl.root, root, 1))
        finally:
            src.close()
            if dst is not src:
                dst.close()
        journal = os.path.join(root, "journal", "journal.sqlite3")
        os.makedirs(os.path.dirname(journal), exist_ok=True)
        return Instance(tpl, root, db, uri, journal, os.path.join(root, "logs"), tag)

    def dispose(self, inst: Instance, failed: bool = False) -> None:
        import pymongo

        if failed or self.keep:
            log(f"kept {inst.root} (database {inst.db})")
            return
        with contextlib.suppress(Exception):
            client: Any = pymongo.MongoClient(inst.uri, serverSelectionTimeoutMS=3000)
            client.drop_database(inst.db)
            client.close()
        shutil.rmtree(inst.root, ignore_errors=True)

    # -- clean runs ------------------------------------------------------------------------

    def reference(self, tpl: Template, files: dict[str, bytes]) -> dict[str, Any]:
        """The LaunchPad a clean, fault-free run produces from these spool files (each reduced
        to its valid frames): a fresh clone of the template, one ingest, one push, in-process."""
        from fwspool.config import LaunchPadConfig
        from fwspool.ingest import Ingester
        from fwspool.journal import Journal
        from fwspool.push import Pusher
        from fwspool.uplink import MongoUplink

        files = frames_only(files)
        key = tpl.key + "/" + content_key(files)
        if key in self.references:
            return self.references[key]
        inst = self.instance(tpl, "ref", spool=False)
        try:
            for rel, data in files.items():
                os.makedirs(os.path.dirname(os.path.join(inst.launches_root, rel)), exist_ok=True)
                with open(os.path.join(inst.launches_root, rel), "wb") as f:
                    f.write(data)
            with Journal.open(inst.journal) as journal:
                Ingester(journal, roots=[inst.launches_root]).run_pass()
                uplink = MongoUplink(
                    LaunchPadConfig({"host": inst.uri, "uri_mode": True, "name": inst.db}, "chaos")
                )
                try:
                    summary = Pusher(journal, uplink).run_pass()
                finally:
                    uplink.close()
            if summary.problems:
                log(f"clean run problems: {summary.problems[:3]}")
            import pymongo

            client: Any = pymongo.MongoClient(inst.uri)
            snap = db_snapshot(client[inst.db], tpl.first_new_fw_id)
            client.close()
        finally:
            self.dispose(inst)
        self.references[key] = snap
        return snap


# =============================================================================================
# Scenario plumbing


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
            "other": c.extra + c.pending_left + c.bad_quarantine + c.other,
            "seconds": round(self.seconds, 1),
            "detail": self.detail,
            "notes": c.notes,
        }


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
    if push:
        expect_ok(inst.run(inst.push("--timeout", "20"), "push-final", timeout=200), c, "final push")
        c.add(check_db(inst, cluster.reference(inst.tpl, read_spool_files(inst.launches_root))))


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
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        c.note(f"trial {inst.tag} failed: {type(exc).__name__}: {exc} (line {where.lineno})")
    for undo in cleanup or ():
        undo()
    res.trials += 1
    res.check.add(c)
    if c.failed:
        log(f"FAILED {inst.tag}: {c.notes[:4]}")
    cluster.dispose(inst, failed=c.failed)


# =============================================================================================
# 1. kill -9 of `fwspool ingest` at random moments while writers keep appending


def scenario_1(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(1, SCENARIOS[1])
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


# =============================================================================================
# 2. kill -9 of `fwspool push` at random moments, at database writes, between write and mark


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


def scenario_2(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(2, SCENARIOS[2])
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


# =============================================================================================
# 3. the database killed (kill -9) or stopped during a push, restarted on the same storage


def scenario_3(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(3, SCENARIOS[3])
    tpl = cluster.template(seed=22, n_chain=8, n_pair=4)
    total, took = count_push_writes(cluster, tpl)
    want = cluster.reference(tpl, tpl.golden)
    server = cluster.own_server("s3")
    kinds: dict[str, int] = {}
    struck: list[str] = []

    def back_up() -> bool:
        """Restart the database on its storage if it is down; whether it was."""
        if server.proc is not None and server.proc.poll() is None:
            return False
        if server.proc is not None:
            server.proc.wait()
            server.proc = None
        time.sleep(rng.uniform(0.0, 2.0))
        server.start()
        res.faults += 1
        kinds[struck[-1]] = kinds.get(struck[-1], 0) + 1
        return True

    try:
        for t in range(trials):
            back_up()
            inst = cluster.instance(tpl, f"s3-t{t}", uri=server.uri)
            with trial(cluster, res, inst) as c:
                expect_ok(inst.run(inst.ingest(), "ingest"), c, "ingest")
                watch = rng.random() < 0.3
                how = rng.choice(("kill", "term"))
                args = (
                    inst.push("--watch", "--interval", "0.3", "--timeout", "1")
                    if watch
                    else inst.push("--timeout", "2")
                )
                struck_pid = server.proc.pid
                if rng.random() < 0.7:
                    # The database dies at the push's N-th write: before it is sent, or right after
                    # it was acknowledged (the pusher itself sends the signal, at that very moment).
                    when = rng.choice(("started", "succeeded"))
                    cmd = killer_cmd(
                        rng.randint(1, total), when, *args[3:], target=f"{how}:{server.proc.pid}"
                    )
                    p = inst.start(cmd, "push")
                    struck.append(f"{how} at a write ({when})")
                else:
                    p = inst.start(args, "push")
                    time.sleep(rng.uniform(0.3, took * 1.1))
                    if p.popen.poll() is None:
                        server.kill() if how == "kill" else server.stop()
                    struck.append(f"{how} at a random time")
                # Bring the database back whenever it is down, until the push is over (a watcher:
                # until it caught up by itself).
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    back_up()
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
                back_up()
                expect_ok(
                    inst.run(inst.push("--timeout", "20"), "push-final", timeout=200), c, "recovery push"
                )
                c.add(check_journal(inst.journal, inventory(inst.launches_root)))
                c.add(check_db(inst, want))
    finally:
        server.stop()
    res.detail = "database outages during a push: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    return res


# =============================================================================================
# 4. the network cut mid-batch: a TCP proxy that drops or stalls connections


class FaultyProxy:
    """A TCP proxy in front of the database that, while armed, gives some connections a fault:
    cut (both ends reset) after N bytes in one direction, a stall of some seconds, or a black hole
    (nothing forwarded any more)."""

    def __init__(self, upstream_port: int, rng: random.Random, blackholes: bool = False) -> None:
        self.upstream_port = upstream_port
        self.rng = rng
        self.blackholes = blackholes
        self.armed = False
        self.budget = 0
        self.faults = 0
        self._lock = threading.Lock()
        self._closing = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        #: Bytes forwarded so far, per direction; faults strike at up to ``reach`` bytes.
        self.traffic = {"up": 0, "down": 0}
        self.reach = {"up": 6000, "down": 6000}
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def arm(self, budget: int) -> None:
        with self._lock:
            self.armed, self.budget = True, budget

    def disarm(self) -> None:
        with self._lock:
            self.armed = False
            socks, self._socks = self._socks, []
        for s in socks:  # the faulty connections of before must not linger
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._closing = True
        self.disarm()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _fate(self) -> tuple[str, ...]:
        with self._lock:
            if not self.armed or self.budget <= 0 or self.rng.random() < 0.35:
                return ("pass",)
            self.budget -= 1
            self.faults += 1
            kinds = ["cut", "cut", "cut", "stall"] + (["blackhole"] if self.blackholes else [])
            kind = self.rng.choice(kinds)
            direction = self.rng.choice(("up", "down"))
            after = self.rng.randint(0, self.reach[direction])
            return (kind, direction, str(after), f"{self.rng.uniform(0.2, 3.0):.2f}")

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            fate = self._fate()
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, fate, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, fate, "down"), daemon=True).start()

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        import struct

        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()

    def _pump(self, src: socket.socket, dst: socket.socket, fate: tuple[str, ...], direction: str) -> None:
        sent = 0
        faulty = fate[0] != "pass" and fate[1] == direction
        after = int(fate[2]) if faulty else -1
        stalled = False
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                if faulty and sent + len(data) > after:
                    head = data[: max(0, after - sent)]
                    if fate[0] == "cut":
                        if head:
                            dst.sendall(head)
                        self._reset(src, dst)
                        return
                    if fate[0] == "blackhole":
                        if head:
                            dst.sendall(head)
                        while src.recv(65536):
                            pass
                        return
                    if fate[0] == "stall" and not stalled:
                        stalled = True
                        time.sleep(float(fate[3]))
                dst.sendall(data)
                sent += len(data)
                self.traffic[direction] += len(data)
        except OSError:
            self._reset(src, dst)


def scenario_4(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(4, SCENARIOS[4])
    tpl = cluster.template(seed=22, n_chain=8, n_pair=4)
    want = cluster.reference(tpl, tpl.golden)
    port = int(cluster.uri.split(":")[2].split("/")[0])
    proxy = FaultyProxy(port, rng, blackholes=full)
    outcomes: dict[int, int] = {}
    try:
        # How much a clean push sends each way: faults strike anywhere in that.
        inst = cluster.instance(tpl, "s4-measure")
        inst.run(inst.ingest(), "ingest")
        before = dict(proxy.traffic)
        inst.run(inst.push(uri=proxy.uri), "push")
        proxy.reach = {k: max(1000, proxy.traffic[k] - before[k]) for k in before}
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


# =============================================================================================
# 5. writers killed mid-record, and spool files corrupted


def truncation_sweep(data: bytes, offsets: Sequence[int], workdir: str) -> Check:
    """For each offset: ingest the file cut there (only whole records, no quarantine, the rest waits),
    then the whole file (every record exactly once). In-process: thousands of offsets."""
    from fwspool.ingest import Ingester
    from fwspool.journal import Journal

    c = Check()
    m = None
    frames = scan(data, at_eof=True).frames
    name = None
    for fr in frames:
        rec = _raw_decoder.decode(fr.payload)
        name = f"fwspool-{rec.writer}.spool"
        break
    assert name is not None and SPOOL_NAME_RE.match(name), "a real spool file is needed"
    m = SPOOL_NAME_RE.match(name)
    assert m is not None
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else workdir
    tmp = tempfile.mkdtemp(prefix="fwspool-trunc-", dir=base)
    try:
        d = os.path.join(tmp, "launch")
        os.makedirs(d)
        path = os.path.join(d, name)
        for k in offsets:
            jpath = os.path.join(tmp, f"j{k}.sqlite3")
            with open(path, "wb") as f:
                f.write(data[:k])
            whole = {
                (_raw_decoder.decode(fr.payload).writer, _raw_decoder.decode(fr.payload).seq)
                for fr in frames
                if fr.offset + fr.length <= k
            }
            boundary = k == 0 or any(fr.offset + fr.length == k for fr in frames)
            with Journal.open(jpath) as journal:
                ing = Ingester(journal, roots=[tmp])
                s1 = ing.run_pass()
                got = {(r["writer_id"], r["seq"]) for r in journal.query("SELECT writer_id, seq FROM events")}
                q1 = journal.count_events()
                quarantined = journal.query("SELECT count(*) AS n FROM quarantine")[0]["n"]
                if got != whole or quarantined or (s1.torn_waiting == 0) != boundary:
                    c.other += 1
                    c.note(
                        f"cut at {k}: {len(got)}/{len(whole)} events, {quarantined} quarantined, torn={s1.torn_waiting}"
                    )
                with open(path, "wb") as f:
                    f.write(data)
                s2 = ing.run_pass()
                rows = journal.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")[0]
                quarantined = journal.query("SELECT count(*) AS n FROM quarantine")[0]["n"]
                src = journal.query("SELECT committed_offset, status FROM sources")
                if (
                    rows["n"] != len(frames)
                    or rows["d"] != len(frames)
                    or quarantined
                    or s2.new_events != len(frames) - q1
                ):
                    c.lost += max(0, len(frames) - rows["d"])
                    c.duplicated += rows["n"] - rows["d"]
                    c.other += 1
                    c.note(
                        f"cut at {k} then whole: {rows['n']} rows ({rows['d']} distinct) of {len(frames)}, {quarantined} quarantined"
                    )
                if src != [{"committed_offset": len(data), "status": "active"}]:
                    c.other += 1
                    c.note(f"cut at {k} then whole: sources {src}")
            for suffix in ("", "-wal", "-shm", ".ingest.lock"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(jpath + suffix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c.events = len(frames)
    return c


def _corrupt(rng: random.Random, data: bytes, kind: str) -> tuple[bytes, list[tuple[int, int]], int, int]:
    """``data`` corrupted one way; returns (new bytes, touched ranges in the old file, the insertion
    point and the number of bytes inserted there)."""
    n = len(data)
    if kind == "bitflip":
        buf = bytearray(data)
        spots = [rng.randrange(n) for _ in range(rng.randint(1, 8))]
        for i in spots:
            buf[i] ^= 1 << rng.randrange(8)
        return bytes(buf), [(i, 1) for i in spots], n, 0
    if kind == "zeroed":
        off, length = rng.randrange(n), rng.randint(1, 300)
        length = min(length, n - off)
        return data[:off] + b"\0" * length + data[off + length :], [(off, length)], n, 0
    frames = scan(data, at_eof=True).frames
    at = rng.choice([0, *[fr.offset + fr.length for fr in frames]])
    if kind == "oversized":
        # A header claiming 17 MB (over MongoDB's 16 MB, within the spool's 64 MiB limit) and a
        # few bytes cut short by a newline: a torn record that later records prove dead.
        junk = b'FWS1 %08x %08x {"v": 1, "truncated"\n' % (17 * 1024 * 1024, 0x1234ABCD)
    elif kind == "nonutf8_frame":
        junk = frame(b'{"v":1,"writer":"\xff\xfe","seq":1}')
    elif kind == "nonutf8_bytes":
        junk = bytes(rng.randrange(128, 256) for _ in range(rng.randint(1, 200)))
    else:  # garbage: random bytes, newlines included
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 400)))
    return data[:at] + junk + data[at:], [], at, len(junk)


def scenario_5(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    from fwspool.events import Completed, Exited, Started

    res = ScenarioResult(5, SCENARIOS[5])
    tpl = cluster.template(seed=55, n_chain=8, n_pair=4)
    parts: list[str] = []

    # (a) Writers killed mid-record: each record reaches the disk in pieces, kill -9 at random.
    torn_trials = max(1, trials // 6)
    torn = 0
    for t in range(torn_trials):
        inst = cluster.instance(tpl, f"s5-torn{t}", spool=False)
        with trial(cluster, res, inst) as c:
            writers = start_writers(
                tpl, inst.root, inst.logdir, procs=3, pace=(0.0, 0.004), seed=500 + t, tear=True
            )
            for w in writers:
                time.sleep(rng.uniform(0.02, 0.4))
                if w.kill():
                    res.faults += 1
            for w in writers:
                w.wait()
            inv = inventory(inst.launches_root)
            torn += len(inv.torn)
            final_ingest_and_check(cluster, inst, c)
            status = {
                r["path"]: r["status"] for r in journal_rows(inst.journal, "SELECT path, status FROM sources")
            }
            for path in inv.torn:
                if status.get(path) != "torn":
                    c.other += 1
                    c.note(f"torn tail of {path}: source status {status.get(path)}")
    parts.append(f"{torn_trials} trials killing writers mid-record ({torn} torn tails)")

    # (b) Every truncation offset of a real spool file (the real `fwspool rlaunch` of an FWAction
    # with additions and detours), then the whole file.
    real = [rel for rel in tpl.golden if rel.startswith("real-grow" + os.sep)]
    data = max((tpl.golden[r] for r in real), key=len)
    offsets = list(range(len(data) + 1))
    if not full:
        ends = [fr.offset + fr.length for fr in scan(data, at_eof=True).frames]
        offsets = sorted(
            {
                0,
                len(data),
                *ends,
                *(e - 1 for e in ends),
                *(e + 1 for e in ends if e < len(data)),
                *rng.sample(offsets, 40),
            }
        )
    sweep = truncation_sweep(data, offsets, cluster.root)
    res.check.add(sweep)
    res.trials += len(offsets)
    parts.append(f"{len(offsets)} truncation offsets of a {len(data)}-byte rlaunch spool file")

    # (c) Random corruption of real spool files.
    kinds = ("bitflip", "zeroed", "garbage", "oversized", "nonutf8_frame", "nonutf8_bytes")
    n_random = max(len(kinds), trials - torn_trials)
    for t in range(n_random):
        kind = kinds[t % len(kinds)]
        inst = cluster.instance(tpl, f"s5-{kind}{t}")
        with trial(cluster, res, inst) as c:
            files = read_spool_files(inst.launches_root)
            rel = rng.choice(sorted(files))
            path = os.path.join(inst.launches_root, rel)
            before = inventory(os.path.dirname(path))
            new, touched, at, inserted = _corrupt(rng, files[rel], kind)
            with open(path, "wb") as f:
                f.write(new)
            res.faults += 1
            # Independent of scan: every record whose bytes the corruption did not touch must
            # come through, wherever it now lies in the file.
            intact = set()
            for key, occs in before.occurrences.items():
                o = occs[0]
                if not any(a < o.offset + o.length and o.offset < a + n for a, n in touched):
                    intact.add(key)
            final_ingest_and_check(cluster, inst, c)
            have = {
                (r["writer_id"], r["seq"])
                for r in journal_rows(inst.journal, "SELECT writer_id, seq FROM events")
            }
            missing = intact - have
            if missing:
                c.lost += len(missing)
                c.note(f"{kind} in {rel}: {len(missing)} untouched records lost")
    parts.append(f"{n_random} random corruptions ({', '.join(kinds)})")

    # (d) The other bad inputs, one trial each.
    inst = cluster.instance(tpl, "s5-special")
    with trial(cluster, res, inst) as c:
        lr = inst.launches_root
        running = next(li for li in tpl.launches if li.outcome in ("running", "walltime"))
        # A record larger than MongoDB's 16 MB document limit: an FWAction with 17 MB of data.
        from fireworks import FWAction

        from fwspool.rlaunch import jsonable

        big = jsonable(FWAction(stored_data={"blob": "x" * (17 * 1024 * 1024)}).to_dict())
        end = T0 + dt.timedelta(days=1)
        with SpoolWriter(
            os.path.join(inst.root, running.rel), running.launch_id, running.fw_id, clock=lambda: end
        ) as w:
            w.append(Completed(state="COMPLETED", action=big, completed_on=end))
            w.append(Exited(returncode=0))
        # An event for a launch the LaunchPad does not have.
        unknown = os.path.join(lr, "unknown-launch")
        os.makedirs(unknown)
        with SpoolWriter(unknown, 99999, 99999, clock=lambda: T0) as w:
            w.append(Started(started_on=T0, host="nowhere", ip="10.9.9.9"))
            w.append(Exited(returncode=0))
        # A directory whose name is not UTF-8, holding another unknown launch's spool file.
        odd = os.path.join(lr, os.fsdecode(b"bad-\xff\xfe-dir"))
        os.makedirs(odd)
        with SpoolWriter(odd, 99998, 99998, clock=lambda: T0) as w:
            w.append(Started(started_on=T0, host="nowhere", ip="10.9.9.8"))
        # Two writers claiming one writer id: an exact copy of a file (same records: duplicates)
        # and a file of other records under the same id (they must not silently vanish).
        files = read_spool_files(lr)
        victim = next(rel for rel in sorted(files) if "chain" in rel)
        other = next(rel for rel in sorted(files) if "pair" in rel)
        wid = SPOOL_NAME_RE.match(os.path.basename(victim)).group(1)  # type: ignore[union-attr]
        copy_dir = os.path.join(lr, "zz-copied-launch")
        os.makedirs(copy_dir)
        shutil.copy(os.path.join(lr, victim), copy_dir)
        clash_dir = os.path.join(lr, "zz-clashing-writer")
        os.makedirs(clash_dir)
        with open(os.path.join(clash_dir, os.path.basename(victim)), "wb") as f:
            for fr in scan(files[other], at_eof=True).frames:
                rec = json.loads(fr.payload)
                rec["writer"] = wid
                f.write(frame(json.dumps(rec, separators=(",", ":")).encode()))
        res.faults += 5
        p = inst.run(inst.ingest(), "ingest")
        expect_ok(p, c, "ingest of the bad inputs")
        if "not valid UTF-8" not in p.stderr:
            c.other += 1
            c.note(f"the non-UTF-8 directory was not reported: {p.stderr[-300:]}")
        p = inst.run(inst.push("--timeout", "20"), "push", timeout=300)
        expect_ok(p, c, "push of the bad inputs")
        if "launch 99999 is not on this LaunchPad" not in p.stderr:
            c.other += 1
            c.note(f"the unknown launch was not reported: {p.stderr[-300:]}")
        final_ingest_and_check(cluster, inst, c)
    parts.append(
        "a 17 MB record, an unknown launch, a non-UTF-8 directory, a copied file and a clashing writer id"
    )
    res.detail = "; ".join(parts)
    return res


# =============================================================================================
# 6. two ingesters and two pushers at the same time


def scenario_6(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(6, SCENARIOS[6])
    tpl = cluster.template(seed=66, n_chain=8, n_pair=4)
    busy = 0
    for t in range(trials):
        two_journals = t % 2 == 1
        inst = cluster.instance(tpl, f"s6-t{t}", spool=False)
        with trial(cluster, res, inst) as c:
            journal_b = os.path.join(inst.root, "journal-b", "journal.sqlite3")
            os.makedirs(os.path.dirname(journal_b))
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


# =============================================================================================
# 7. the journal's disk full, and the journal read-only


def _try(cmd: list[str]) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


def can_mount(workdir: str) -> bool:
    d = tempfile.mkdtemp(dir=workdir)
    try:
        if _try(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d]):
            _try(["umount", d])
            return True
        return False
    except FileNotFoundError:
        return False
    finally:
        os.rmdir(d)


def _one_line_error(p: Proc, c: Check, what: str, code: int) -> None:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("fwspool: ") and "warning" not in ln]
    if p.popen.returncode != code or "Traceback" in p.stderr or len(errors) != 1:
        c.other += 1
        c.note(f"{what}: exit {p.popen.returncode} (want {code}), stderr: {p.stderr.strip()[-500:]}")


def scenario_7(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    import resource

    res = ScenarioResult(7, SCENARIOS[7])
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
                mounted = _try(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", mnt])
                if mounted:
                    unmount.append(lambda mnt=mnt: _try(["umount", "-l", mnt]))
            half = tpl.launches[: len(tpl.launches) // 2]
            rest = tpl.launches[len(tpl.launches) // 2 :]
            tpl_half = dataclasses.replace(tpl, launches=half)
            tpl_rest = dataclasses.replace(tpl, launches=rest)
            wait_all(start_writers(tpl_half, inst.root, inst.logdir, procs=1, pace=(0, 0), seed=700 + t), c)
            if kind == "full":
                limit = None
                if not mounted:
                    # No tmpfs here: the journal's files may not grow past 400 KiB (EFBIG).
                    limit = 400 * 1024

                    def preexec() -> None:
                        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # noqa: B023

                p = inst.run(inst.ingest(), "ingest-full", preexec=preexec if limit else None)
                how = "tmpfs" if mounted else "RLIMIT_FSIZE"
                outcomes[f"ingest, disk full ({how}) exit {p.popen.returncode}"] = (
                    outcomes.get(f"ingest, disk full ({how}) exit {p.popen.returncode}", 0) + 1
                )
                if p.popen.returncode == 0:
                    c.note(f"(the journal fit in the small disk; {how})")
                else:
                    res.faults += 1
                    _one_line_error(p, c, "ingest on a full disk", 73)
                k = check_committed_prefixes(inst.journal) if os.path.exists(inst.journal) else Check()
                k.events = 0
                c.add(k)
                if mounted:
                    _try(["mount", "-o", "remount,size=64m", mnt])
                wait_all(
                    start_writers(tpl_rest, inst.root, inst.logdir, procs=1, pace=(0, 0), seed=750 + t), c
                )
                expect_ok(inst.run(inst.ingest(), "ingest"), c, "ingest after the disk was freed")
                if mounted:
                    # Now the push: the database applies, then the journal cannot record it.
                    filler = os.path.join(mnt, "filler")
                    with open(filler, "wb") as f, contextlib.suppress(OSError):
                        while True:
                            f.write(b"\0" * 65536)
                            f.flush()
                    p = inst.run(inst.push("--timeout", "20"), "push-full", timeout=200)
                    outcomes[f"push, disk full exit {p.popen.returncode}"] = (
                        outcomes.get(f"push, disk full exit {p.popen.returncode}", 0) + 1
                    )
                    if p.popen.returncode != 0:
                        res.faults += 1
                        _one_line_error(p, c, "push on a full disk", 73)
                    os.unlink(filler)
            else:
                expect_ok(inst.run(inst.ingest(), "ingest"), c, "first ingest")
                expect_ok(inst.run(inst.push("--timeout", "20"), "push", timeout=200), c, "first push")
                wait_all(
                    start_writers(tpl_rest, inst.root, inst.logdir, procs=1, pace=(0, 0), seed=760 + t), c
                )
                ro = mounted and _try(["mount", "-o", "remount,ro", mnt])
                preexec = None
                if not ro:
                    # No remount here: file modes (root's children lose the right to ignore them).
                    for name in os.listdir(mnt):
                        os.chmod(os.path.join(mnt, name), 0o444)
                    os.chmod(mnt, 0o555)
                    ro = True
                    preexec = _without_dac_override if os.geteuid() == 0 else None
                if ro:
                    res.faults += 1
                    for cmd, name in ((inst.ingest(), "ingest"), (inst.push("--timeout", "20"), "push")):
                        p = inst.run(cmd, f"{name}-readonly", timeout=200, preexec=preexec)
                        outcomes[f"{name}, read-only exit {p.popen.returncode}"] = (
                            outcomes.get(f"{name}, read-only exit {p.popen.returncode}", 0) + 1
                        )
                        _one_line_error(p, c, f"{name} on a read-only journal", 73)
                    if mounted:
                        _try(["mount", "-o", "remount,rw", mnt])
                    else:
                        os.chmod(mnt, 0o755)
                        for name in os.listdir(mnt):
                            os.chmod(os.path.join(mnt, name), 0o644)
            final_ingest_and_check(cluster, inst, c)
    res.detail = (
        ("tmpfs and read-only remounts" if mount else "RLIMIT_FSIZE, chmod")
        + "; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
    )
    return res


# =============================================================================================
# 8. clocks: a compute node's clock hours off, and stepping back mid-run


def scenario_8(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    from fwspool.events import Record
    from fwspool.spool import encode_record

    res = ScenarioResult(8, SCENARIOS[8])
    tpl = cluster.template(seed=88, n_chain=8, n_pair=4)
    for t in range(trials):
        skews: dict[int, tuple[float, int, float]] = {}
        for li in tpl.launches:
            # Hours off either way; half the nodes also step back by hours after record `step`.
            skews[li.launch_id] = (
                rng.choice((-1, 1)) * rng.uniform(1, 12) * 3600,
                rng.randint(1, 4) if rng.random() < 0.5 else 10**9,
                rng.uniform(1, 3) * 3600,
            )

        def skewed(
            li: LaunchInfo, s: dict[str, Any], skews: dict[int, tuple[float, int, float]] = skews
        ) -> dict[str, Any]:
            """The node's clock: every time it records (``at`` and the event's own times) is off by
            hours; after a step back, by hours less."""
            off, step, back = skews[li.launch_id]
            after_main = s.get("after") is not None
            recs = []
            for i, (at, ev, durable) in enumerate(s["records"]):
                stepped = step < 10**9 and (i >= step or after_main)
                shift = dt.timedelta(seconds=off - (back if stepped else 0))
                event = json.loads(ev)
                for k in ("started_on", "ping_time", "completed_on"):
                    if event.get(k):
                        event[k] = (
                            dt.datetime.fromisoformat(event[k].replace("Z", "+00:00")) + shift
                        ).isoformat()
                recs.append([(dt.datetime.fromisoformat(at) + shift).isoformat(), json.dumps(event), durable])
            return dict(s, records=recs)

        res.faults += len(skews) + sum(1 for _o, step, _b in skews.values() if step < 10**9)
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
            # The clean run: the same events, written by a node whose clock is right. Only what
            # nothing but the node's clock dates (a walltime kill's exit) keeps the node's time.
            files = read_spool_files(inst.launches_root)
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
                    if at is not None and not (
                        rec.launch_id in walltime and type(rec.event).__name__ == "Exited"
                    ):
                        rec.at = dt.datetime.fromisoformat(at)
                    out.append(encode_record(rec))
                fixed[rel] = b"".join(out)
            c.add(check_db(inst, cluster.reference(tpl, fixed)))
            # Sane times: the history in causal order, no negative run time, no time invented.
            import pymongo

            client: Any = pymongo.MongoClient(inst.uri)
            for d in client[inst.db].launches.find({}):
                states = [h["state"] for h in d.get("state_history", [])]
                if (
                    states
                    and states[0] != "RESERVED"
                    or ("RUNNING" in states and states.index("RUNNING") != 1)
                ):
                    c.other += 1
                    c.note(f"launch {d['launch_id']}: state history {states}")
                stepped_back = skews.get(d["launch_id"], (0, 10**9, 0))[1] < 10**9
                if d.get("runtime_secs") is not None and d["runtime_secs"] < 0 and not stepped_back:
                    c.other += 1
                    c.note(f"launch {d['launch_id']}: runtime_secs {d['runtime_secs']}")
            client.close()
            p = inst.run(fwspool_cmd("status", "--json", "--no-check"), "status")
            expect_ok(p, c, "status with clocks hours off")
    res.detail = (
        "clocks 1-12 h off either way, half of them stepping back 1-3 h mid-run; pushes while running"
    )
    return res


# =============================================================================================
# 9. bad configuration and bad input at the CLI


@dataclass
class CliCase:
    name: str
    args: list[str]
    code: int
    #: Words the one error line must contain.
    words: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    unprivileged: bool = False
    cwd: str | None = None
    #: A warning that must be printed on success (exit 0).
    warning: bool = False


def _without_dac_override() -> None:
    """For a child of root: drop the capabilities that let root read and write any file, so that
    file modes apply to it (no other user can run this venv's python)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def cli_cases(cluster: Cluster, work: str, tpl: Template) -> list[CliCase]:
    """Every kind of bad configuration and input, with the exit code the README documents."""
    import pymongo

    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o777)
    j = os.path.join(work, "journal", "journal.sqlite3")

    def write(name: str, text: str | bytes, mode: int = 0o644) -> str:
        path = os.path.join(work, name)
        with open(path, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        os.chmod(path, mode)
        return path

    root = os.path.join(work, "launches")
    shutil.copytree(os.path.join(tpl.root, "launches"), root)
    for d, _s, names in os.walk(work):
        os.chmod(d, 0o777)
        for n in names:
            os.chmod(os.path.join(d, n), 0o666)
    not_a_lp = "chaos_not_a_launchpad"
    client: Any = pymongo.MongoClient(cluster.uri)
    client[not_a_lp].misc.insert_one({"x": 1})
    client.close()
    good_lp = write("good_launchpad.yaml", f"host: {cluster.uri}\nname: {tpl.db}\nuri_mode: true\n")
    some_launch = os.path.join(work, tpl.launches[0].rel)
    bad_offline = os.path.join(work, "bad-offline")
    os.makedirs(bad_offline)
    write("bad-offline/FW_offline.json", "{not json")
    bad_fw = os.path.join(work, "bad-fw")
    os.makedirs(bad_fw)
    write("bad-fw/FW_offline.json", '{"launch_id": 5}')
    write("bad-fw/FW.json", '{"spec": ')
    unreadable_spool_dir = os.path.join(work, "unreadable-spool")
    os.makedirs(unreadable_spool_dir)
    with SpoolWriter(unreadable_spool_dir, 4242, 4242) as w:
        from fwspool.events import Started

        w.append(Started(started_on=T0, host="h", ip="1.1.1.1"))
    os.chmod(w.path, 0o000)
    os.chmod(unreadable_spool_dir, 0o777)
    vanished_journal = os.path.join(work, "vanished", "journal.sqlite3")
    uri = cluster.uri
    cases = [
        CliCase(
            "missing launchpad file",
            ["push", "--journal", j, "-l", os.path.join(work, "nope.yaml")],
            78,
            ("does not exist",),
        ),
        CliCase(
            "malformed launchpad file",
            ["push", "--journal", j, "-l", write("bad.yaml", "host: [unclosed\n  : :")],
            78,
            ("not valid YAML",),
        ),
        CliCase(
            "launchpad file not a mapping",
            ["push", "--journal", j, "-l", write("list.yaml", "- a\n- b\n")],
            78,
            ("mapping",),
        ),
        CliCase(
            "launchpad file is a directory", ["push", "--journal", j, "-l", work], 78, ("launchpad file",)
        ),
        CliCase(
            "unreadable launchpad file",
            ["push", "--journal", j, "-l", write("secret.yaml", "host: x\n", 0o000)],
            78,
            ("cannot read",),
            unprivileged=True,
        ),
        CliCase(
            "launchpad file with a wrong port",
            ["push", "--journal", j, "-l", write("port.yaml", "host: 127.0.0.1\nport: notaport\n")],
            78,
            (),
        ),
        CliCase(
            "launchpad file pointing nowhere",
            [
                "push",
                "--journal",
                j,
                "--timeout",
                "0.5",
                "-l",
                write("nowhere.yaml", "host: 127.0.0.1\nport: 1\nname: x\n"),
            ],
            75,
            ("cannot reach",),
        ),
        CliCase(
            "URI of another scheme",
            ["push", "--journal", j, "--uri", "http://127.0.0.1:1/"],
            78,
            ("mongodb://",),
        ),
        CliCase(
            "malformed URI",
            ["push", "--journal", j, "--uri", "mongodb://127.0.0.1:notaport/"],
            78,
            ("not a valid MongoDB URI",),
        ),
        CliCase(
            "URI and launchpad file", ["push", "--journal", j, "--uri", uri, "-l", good_lp], 78, ("either",)
        ),
        CliCase(
            "wrong URI (nothing listening)",
            ["push", "--journal", j, "--timeout", "0.5", "--uri", "mongodb://127.0.0.1:1/"],
            75,
            ("cannot reach", "pending"),
        ),
        CliCase(
            "database that is not a LaunchPad",
            ["push", "--journal", j, "--uri", uri, "--name", not_a_lp],
            78,
            ("not a FireWorks LaunchPad",),
        ),
        CliCase(
            "journal on a network filesystem",
            ["_fake_fstype", "nfs4", "ingest", "--journal", j, "--root", root],
            78,
            ("nfs4", "local disk"),
        ),
        CliCase(
            "journal on lustre, push",
            ["_fake_fstype", "lustre", "push", "--journal", j, "--uri", uri, "--name", tpl.db],
            78,
            ("lustre",),
        ),
        CliCase(
            "journal on NFS, allowed",
            ["_fake_fstype", "nfs", "ingest", "--journal", j, "--root", root],
            0,
            env={"FWSPOOL_ALLOW_NETWORK_JOURNAL": "1"},
        ),
        CliCase(
            "journal path is a directory", ["ingest", "--journal", work, "--root", root], 73, ("journal",)
        ),
        CliCase(
            "journal is not a database",
            ["ingest", "--journal", write("garbage.sqlite3", os.urandom(4096)), "--root", root],
            73,
            ("not a usable fwspool journal",),
        ),
        CliCase(
            "journal directory cannot be created",
            ["ingest", "--journal", "/proc/self/nope/journal.sqlite3", "--root", root],
            73,
            ("journal",),
        ),
        CliCase(
            "journal of another user, unreadable",
            ["ingest", "--journal", write("private.sqlite3", b"", 0o000), "--root", root],
            73,
            ("journal",),
            unprivileged=True,
        ),
        CliCase(
            "--root that does not exist",
            ["ingest", "--journal", j, "--root", os.path.join(work, "gone")],
            66,
            ("not a directory",),
        ),
        CliCase(
            "a launch dir that vanished",
            ["ingest", "--journal", vanished_journal],
            0,
            ("vanished",),
            warning=True,
        ),
        CliCase(
            "an unreadable spool file",
            [
                "ingest",
                "--journal",
                os.path.join(work, "j-unreadable", "j.sqlite3"),
                "--root",
                unreadable_spool_dir,
            ],
            0,
            ("cannot open", "Permission denied"),
            unprivileged=True,
            warning=True,
        ),
        CliCase(
            "rlaunch in a launch dir that vanished",
            ["rlaunch", "--launch-dir", os.path.join(work, "gone")],
            66,
            ("does not exist",),
        ),
        CliCase(
            "rlaunch: malformed FW_offline.json", ["rlaunch", "--launch-dir", bad_offline], 65, ("launch_id",)
        ),
        CliCase("rlaunch: malformed FW.json", ["rlaunch", "--launch-dir", bad_fw], 65, ("FW.json",)),
        CliCase(
            "rlaunch: missing FWorker file",
            ["rlaunch", "--launch-dir", some_launch, "-w", os.path.join(work, "nope.yaml")],
            66,
            ("FWorker",),
        ),
        CliCase(
            "emit: malformed --data",
            ["emit", "--launch-dir", some_launch, "note", "--data", "{bad"],
            65,
            ("JSON",),
        ),
        CliCase(
            "emit: wrong fields",
            ["emit", "--launch-dir", some_launch, "completed", "--data", '{"state": "DONE"}'],
            65,
            ("completed",),
        ),
        CliCase(
            "emit into a launch dir that vanished",
            ["emit", "--launch-dir", os.path.join(work, "gone"), "ping"],
            66,
            ("does not exist",),
        ),
        CliCase("unknown option", ["push", "--no-such-option"], 2, ("No such option",)),
    ]
    # The vanished launch dir: the journal knows it (an earlier ingest), then it is removed.
    vanished_root = os.path.join(work, "vanishing")
    shutil.copytree(some_launch, os.path.join(vanished_root, "launch"))
    with SpoolWriter(os.path.join(vanished_root, "launch"), 777, 777) as w:
        from fwspool.events import Started

        w.append(Started(started_on=T0, host="h", ip="1.1.1.1"))
    from fwspool.ingest import Ingester
    from fwspool.journal import Journal

    with Journal.open(vanished_journal) as journal:
        Ingester(journal, roots=[vanished_root]).run_pass()
    shutil.rmtree(vanished_root)
    return cases


def scenario_9(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(9, SCENARIOS[9])
    tpl = cluster.template(seed=22, n_chain=8, n_pair=4)
    work = os.path.join(cluster.root, "cli")
    shutil.rmtree(work, ignore_errors=True)
    cases = cli_cases(cluster, work, tpl)
    root = os.geteuid() == 0
    for case in cases:
        c = Check()
        args = case.args
        cmd = (
            [sys.executable, os.path.abspath(__file__), *args]
            if args[0] == "_fake_fstype"
            else fwspool_cmd(*args)
        )
        p = run(
            cmd,
            os.path.join(work, "logs"),
            "cli",
            timeout=120,
            env=child_env(**case.env),
            cwd=case.cwd or work,
            preexec=_without_dac_override if case.unprivileged and root else None,
        )
        err = p.stderr
        lines = [ln for ln in err.splitlines() if ln.strip()]
        code = p.popen.returncode
        ok = code == case.code and "Traceback" not in err
        if case.code == 2:
            ok = ok and any(all(w in ln for w in case.words) for ln in lines)
        elif case.code != 0 or case.warning:
            mine = [ln for ln in lines if ln.startswith("fwspool: ") and "warning:" not in ln]
            ok = ok and len(mine) == 1 and all(w in mine[0] for w in case.words) and len(mine[0]) < 400
        if not ok:
            c.other += 1
            c.note(f"{case.name}: exit {code} (want {case.code}); stderr: {err.strip()[-400:]!r}")
        res.trials += 1
        res.faults += 1
        res.check.add(c)
    res.detail = f"{len(cases)} bad configurations and inputs, each: exit code, one line, no traceback"
    return res


# =============================================================================================
# Running and reporting


RUNNERS: dict[int, Callable[[Cluster, int, random.Random, bool], ScenarioResult]] = {
    1: scenario_1,
    2: scenario_2,
    3: scenario_3,
    4: scenario_4,
    5: scenario_5,
    6: scenario_6,
    7: scenario_7,
    8: scenario_8,
    9: scenario_9,
}


def run_scenario(
    cluster: Cluster, number: int, *, full: bool = False, trials: int | None = None, seed: int = 0
) -> ScenarioResult:
    rng = random.Random(f"{seed}/{number}")
    n = trials if trials is not None else TRIALS[number][1 if full else 0]
    t0 = time.monotonic()
    log(f"scenario {number}: {SCENARIOS[number]} ({n} trials)")
    try:
        res = RUNNERS[number](cluster, n, rng, full)
    except Exception as exc:  # the harness itself failed: a failed scenario, the others still run
        import traceback

        res = ScenarioResult(number, SCENARIOS[number])
        res.check.other += 1
        res.check.note(f"scenario {number} stopped: {type(exc).__name__}: {exc}")
        log(traceback.format_exc())
    res.seconds = time.monotonic() - t0
    log(f"scenario {number} done in {res.seconds:.0f}s: {res.row()}")
    return res


def table(results: Sequence[ScenarioResult]) -> str:
    head = ("#", "scenario", "trials", "faults", "events", "lost", "dup", "mismatched", "other", "secs")
    rows = [head]
    for r in results:
        x = r.row()
        rows.append(
            (
                str(r.scenario),
                r.name,
                str(x["trials"]),
                str(x["faults"]),
                str(x["events"]),
                str(x["lost"]),
                str(x["duplicated"]),
                str(x["mismatched"]),
                str(x["other"]),
                f"{x['seconds']:.0f}",
            )
        )
    tot = [sum(int(r[i]) for r in rows[1:]) for i in range(2, 10)]
    rows.append(("", "total", *map(str, tot)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(c.ljust(widths[i]) if i == 1 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if k == 0 or k == len(rows) - 2:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    for r in results:
        out.append(f"{r.scenario}. {r.detail}")
        for note in r.check.notes[:8]:
            out.append(f"   ! {note}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    global _verbose
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_writer":
        return writer_main(argv[1])
    if argv and argv[0] == "_killer":
        return killer_main(int(argv[1]), argv[2], argv[3], argv[4:])
    if argv and argv[0] == "_fake_fstype":
        return fake_fstype_main(argv[1], argv[2:])
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="Full trial counts (the issue's: 200, 100, 50...).")
    mode.add_argument("--quick", action="store_true", help="The short version (the default).")
    ap.add_argument(
        "--scenario",
        type=int,
        action="append",
        choices=sorted(SCENARIOS),
        help="Run only this scenario (repeatable).",
    )
    ap.add_argument("--trials", type=int, help="Trials per scenario instead of the mode's counts.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--json", action="store_true", help="Results as JSON on stdout (the table goes to stderr)."
    )
    ap.add_argument("--keep", action="store_true", help="Keep the temporary directory and databases.")
    ap.add_argument("--workdir", help="Where to put the temporary directory.")
    ap.add_argument("-q", "--quiet", action="store_true", help="No progress lines.")
    args = ap.parse_args(argv)
    _verbose = not args.quiet
    numbers = args.scenario or sorted(SCENARIOS)
    results = []
    root = tempfile.mkdtemp(prefix="fwspool-chaos-", dir=args.workdir) if args.workdir else None
    with Cluster(root, keep=args.keep) as cluster:
        cluster.shared_templates = not args.full
        log(f"working in {cluster.root}, database {cluster.uri}")
        for n in numbers:
            results.append(run_scenario(cluster, n, full=args.full, trials=args.trials, seed=args.seed))
    if root is not None and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    text = table(results)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps([r.row() for r in results], indent=2))
    else:
        print(text)
    bad = any(r.check.failed for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
