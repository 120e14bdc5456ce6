"""The workload: a reserved LaunchPad (the template) and what its compute nodes append.

A LaunchPad with two-step workflows and workflows with two parallel roots, every root reserved
offline as ``qlaunch -r`` does (:func:`fwspool.reserve.reserve_offline`); the compute side of
each launch is simulated by writer processes appending what ``fwspool rlaunch`` would, plus real
``fwspool rlaunch`` runs. Times and writer ids are deterministic, so the same workload always
writes the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fwspool.events import RECORD_VERSION, Event, RawRecord
from fwspool.reserve import reserve_offline
from fwspool.spool import DEFAULT_MAX_RECORD, SPOOL_NAME_RE, frame, scan
from fwspool.testing.chaos.processes import Proc, child_cmd, fwspool_cmd, start
from fwspool.testing.chaos.progress import log
from fwspool.testing.synthetic import LaunchHistory

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)

#: One synthetic launch's writer: {"writer", "records": [[at, event_json, durable]], "after"}.
Stream = dict[str, Any]
#: How a trial changes a stream before it is written (scenario 8: a node's clock hours off).
StreamTransform = Callable[["LaunchInfo", Stream], Stream]


@dataclass
class LaunchInfo:
    launch_id: int
    fw_id: int
    rel: str  # launch directory, relative to an instance root
    kind: str  # "synthetic" or "rlaunch"
    outcome: str
    #: Synthetic launches: one dict per writer {"writer", "records": [[at, event_json, durable]], "after"}.
    streams: list[Stream] = field(default_factory=list)


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


def plan_streams(li: LaunchInfo, rng: random.Random, seed: int, storm: bool) -> list[Stream]:
    """The records one synthetic launch's writers append, in each writer's order."""
    from fireworks import FWorker

    from fwspool.events import Note
    from fwspool.rlaunch import jsonable

    lid = li.launch_id
    t = T0 + dt.timedelta(seconds=37 * lid)
    worker = jsonable(FWorker(name=f"chaos-node-{lid % 3}").to_dict())
    history = LaunchHistory(
        lid, li.fw_id, t, host=f"nid{lid:05d}", ip=f"10.1.{lid // 250}.{lid % 250}", fworker=worker
    )
    history.first_checkpoint = t + dt.timedelta(seconds=1)
    pings = rng.randint(150, 350) if storm else rng.randint(1, 6)
    for k in range(pings):
        history.beats.append(
            (t + dt.timedelta(seconds=60 * (k + 1), microseconds=rng.randrange(10**6)), None)
        )
    end = t + dt.timedelta(seconds=60 * (pings + 1) + 5)
    streams: list[Stream] = []
    _plan_ending(li, history, end, seed, streams)
    main = [[at.isoformat(), _event_json(event), None] for at, event in history.events()]
    streams.insert(0, {"writer": _writer_id(seed, lid, 0), "records": main, "after": None})
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


def _plan_ending(
    li: LaunchInfo, history: LaunchHistory, end: dt.datetime, seed: int, streams: list[Stream]
) -> None:
    """How the launch ends, by its outcome: a completion and the exit (in ``history``, the main
    writer's), a walltime kill recorded by a second writer, or nothing yet ("running")."""
    from fireworks import Firework, FWAction, ScriptTask

    from fwspool.events import Exited
    from fwspool.rlaunch import jsonable

    lid = li.launch_id
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
        history.state, history.action = "COMPLETED", jsonable(action.to_dict())
    elif outcome == "fizzled":
        action = FWAction(
            stored_data={
                "_message": "runtime error during task",
                "_task": {"_fw_name": "ScriptTask", "script": ["exit 3"]},
                "_exception": {"_stacktrace": f"Traceback ...\nRuntimeError: launch {lid}", "_details": None},
            },
            exit=True,
        )
        history.state, history.action = "FIZZLED", jsonable(action.to_dict())
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
    if history.action is not None:
        history.completed_on, history.exited_on = end, end + dt.timedelta(seconds=1)


def workflows(n_chain: int, n_pair: int) -> list[Any]:
    from fireworks import Firework, ScriptTask, Workflow

    from fwspool.testing.chaos.tasks import ChaosGrowTask

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


OUTCOMES = (
    ("completed", 40),
    ("dynamic", 22),
    ("fizzled", 8),
    ("defuse", 5),
    ("running", 12),
    ("walltime", 13),
)


def build_template(
    cluster_root: str, uri: str, seed: int, n_chain: int, n_pair: int, storm: bool, *, golden: bool = True
) -> Template:
    """A workload's template, built in the cluster's directory on the cluster's server (``uri``);
    without ``golden``, its spool files are not written (its ``golden`` stays empty)."""
    key = f"s{seed}c{n_chain}p{n_pair}{'storm' if storm else ''}{'' if golden else '-nogolden'}"
    root = os.path.join(cluster_root, "templates", key)
    db = f"tpl_{key}"
    t0 = time.monotonic()
    rng = random.Random(seed)
    lp = launchpad(uri, db)
    lp.reset("", require_password=False, max_reset_wo_password=10**9)
    for wf in workflows(n_chain, n_pair):
        lp.add_wf(wf)
    names = {d["fw_id"]: d["name"] for d in lp.fireworks.find({}, {"fw_id": 1, "name": 1})}
    first_new = int(lp.fw_id_assigner.find_one({})["next_fw_id"])
    launches = []
    for fw_id in sorted(d["fw_id"] for d in lp.fireworks.find({"state": "READY"}, {"fw_id": 1})):
        rel = os.path.join("launches", f"{names[fw_id]}")
        _fw, lid = reserve_offline(lp, os.path.join(root, rel), fw_id=fw_id)
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
    if not golden:
        log(f"template {key}: {len(launches)} launches, no spool files, {time.monotonic() - t0:.1f}s")
        return tpl
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
    transform: StreamTransform | None = None,
) -> None:
    streams: list[Stream] = []
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
    transform: StreamTransform | None = None,
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
        out.append(start(child_cmd("_writer", plan), logdir, f"writer{k}"))
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


def write_spool_files(root: str, files: dict[str, bytes]) -> None:
    """Spool files (relative path -> bytes) under ``root``: a file that holds a prefix of its new
    content gets the rest appended, as its writer would append it."""
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        have = os.path.getsize(path) if os.path.exists(path) else 0
        with open(path, "ab") as f:
            f.write(data[have:])


def count_records(files: dict[str, bytes]) -> int:
    return sum(len(scan(b, at_eof=True).frames) for b in files.values())


raw_decoder = msgspec.json.Decoder(RawRecord)
_event_decoder = msgspec.json.Decoder(Event)


def validate(payload: bytes, name_writer: str) -> RawRecord | None:
    """The record in a frame, if ingest must accept it (schema/SPOOL.md, "Reading")."""
    try:
        rec = raw_decoder.decode(payload)
        _event_decoder.decode(rec.event)
    except (msgspec.DecodeError, ValueError):
        return None
    if rec.v != RECORD_VERSION or rec.writer != name_writer or rec.seq < 1:
        return None
    return rec


def frames_only(files: dict[str, bytes], drop: frozenset[tuple[str, int]] = frozenset()) -> dict[str, bytes]:
    """Each file reduced to its complete, valid frames (what a clean run can be given), without
    the records ``drop`` names by (writer, seq)."""
    out = {}
    for rel, data in files.items():
        frames = scan(data, at_eof=True).frames
        if drop:
            frames = [fr for fr in frames if _key(fr.payload) not in drop]
        out[rel] = b"".join(frame(fr.payload) for fr in frames)
    return out


def _key(payload: bytes) -> tuple[str, int] | None:
    try:
        rec = raw_decoder.decode(payload)
    except (msgspec.DecodeError, ValueError):
        return None
    return rec.writer, rec.seq


def held_exits(files: dict[str, bytes]) -> frozenset[tuple[str, int]]:
    """The exits that stay pending, by (writer, seq) (docs/launchpad.md, "A result larger than the limits").

    A launch with damaged bytes or invalid records in a spool file of its directory (ingest
    quarantines them) and no completion, whose last run end is an exit on its own (no signal, no
    failed start): its completion is probably among the quarantined bytes, so the exit waits
    and the Firework stays as its running phase leaves it. A clean run given only the valid
    frames would see no quarantine; it is given the files without these exits instead.
    """
    records: dict[str, list[RawRecord]] = {}
    damaged: set[str] = set()
    for rel, data in files.items():
        m = SPOOL_NAME_RE.match(os.path.basename(rel))
        if m is None:
            continue
        where = os.path.dirname(rel)
        res = scan(data, at_eof=True, max_record=DEFAULT_MAX_RECORD)
        if res.damage:
            damaged.add(where)
        for fr in res.frames:
            rec = validate(fr.payload, m.group(1))
            if rec is None:
                damaged.add(where)
            else:
                records.setdefault(where, []).append(rec)
    held = set()
    for where in damaged:
        events = sorted(
            ((rec.at, rec.writer, rec.seq), json.loads(bytes(rec.event))) for rec in records.get(where, [])
        )
        if any(ev["type"] == "completed" for _, ev in events):
            continue
        ends = [(key, ev) for key, ev in events if ev["type"] in ("exited", "lost", "released")]
        if ends:
            (_, writer, seq), ev = ends[-1]
            if ev["type"] == "exited" and ev.get("signal") is None and not ev.get("error"):
                held.add((writer, seq))
    return frozenset(held)


def content_key(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode(errors="surrogateescape") + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()
