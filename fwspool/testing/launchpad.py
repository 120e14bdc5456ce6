"""LaunchPads for the tests, the chaos harness and the benchmarks: a fresh one, an uplink to it,
`lpad recover_offline`, and the one way to compare two LaunchPads.

The comparison reads every document once (:func:`db_snapshot`), keyed by what identifies it
across runs, minus what legitimately differs between two runs of one workload on clones of one
reserved LaunchPad (the chaos harness's invariant (b); :func:`diff_snapshots` says where two
differ). :func:`snapshot` is a view of it for twin runs that did not share their launch
directories or their clock (fwspool against FireWorks' own offline rocket, a killed push against
a clean one): launch directories, times and stack trace text left out. :func:`state_counts` is
the coarsest view, the benchmarks' check that both sides ended in the same states."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from typing import Any

from fwspool.binding import EPOCH_FIELD
from fwspool.config import LaunchPadConfig
from fwspool.events import iso
from fwspool.launchpad.writeset import TAKEN_FIELD
from fwspool.uplink import MongoUplink

__all__ = [
    "COLLECTIONS",
    "db_snapshot",
    "diff_snapshots",
    "make_launchpad",
    "recover_offline",
    "snapshot",
    "state_counts",
    "throwaway_launchpad",
    "uplink_for",
]


def make_launchpad(uri: str, name: str, *, reset: bool = True, listeners: Sequence[Any] = ()) -> Any:
    """A FireWorks LaunchPad on database ``name``; ``reset``: emptied, with FireWorks' own indexes.

    ``listeners``: pymongo command listeners on its client (to count what a pass sends).
    """
    from fireworks import LaunchPad

    kwargs: dict[str, Any] = {}
    if listeners:
        kwargs["mongoclient_kwargs"] = {"event_listeners": list(listeners)}
    lp = LaunchPad(host=uri, name=name, uri_mode=True, logdir=None, strm_lvl="ERROR", **kwargs)
    if reset:
        # reset() also runs tuneup(): FireWorks' indexes, without which the server scans collections.
        lp.reset("", require_password=False, max_reset_wo_password=10**9)
    return lp


@contextlib.contextmanager
def throwaway_launchpad(uri: str, name: str) -> Iterator[Any]:
    """A fresh LaunchPad whose database is dropped afterwards."""
    lp = make_launchpad(uri, name)
    try:
        yield lp
    finally:
        lp.connection.drop_database(name)
        lp.connection.close()


def uplink_for(uri: str, name: str, **kwargs: Any) -> MongoUplink:
    """What `fwspool push --uri URI --name NAME` connects with."""
    return MongoUplink(LaunchPadConfig({"host": uri, "uri_mode": True, "name": name}, "test"), **kwargs)


def recover_offline(lp: Any) -> None:
    """`lpad recover_offline`, as its command does it (fireworks/scripts/lpad_run.py), without
    the fworker filter."""
    for run in lp.offline_runs.find({"completed": False, "deprecated": False}, {"launch_id": 1}):
        lp.recover_offline(run["launch_id"], False, False)


COLLECTIONS = ("fireworks", "launches", "workflows", "offline_runs", "fw_id_assigner")
#: What legitimately differs between two runs of the same workload.
VOLATILE = {
    "fireworks": frozenset({"_id", "updated_on"}),
    "launches": frozenset({"_id", "launch_dir"}),
    "workflows": frozenset({"_id", "updated_on"}),
    "offline_runs": frozenset({"_id", "updated_on"}),
    # The epoch is a random id the first push draws (fwspool.binding): each run draws its own;
    # the last take of ids names its push's token.
    "fw_id_assigner": frozenset({"_id", EPOCH_FIELD, TAKEN_FIELD}),
}


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
        docs: dict[Any, Any] = {}
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


#: What :func:`snapshot` leaves out of a Firework besides :data:`VOLATILE`: two runs made it apart.
_TWIN_VOLATILE_FW = frozenset({"created_on"})


def _strip_paths(value: Any, dirs: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _strip_paths(v, dirs) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_paths(v, dirs) for v in value]
    if isinstance(value, str):
        for d in dirs:
            value = value.replace(d, "<launch_dir>")
        return value
    return value


def _drop_times(value: Any) -> Any:
    """Creation times inside an FWAction's additions/detours are those of two different runs."""
    if isinstance(value, dict):
        return {k: _drop_times(v) for k, v in value.items() if k not in ("created_on", "updated_on")}
    if isinstance(value, list):
        return [_drop_times(v) for v in value]
    return value


def _drop_stacktrace(action: Any) -> Any:
    if isinstance(action, dict) and isinstance(action.get("stored_data"), dict):
        exc = action["stored_data"].get("_exception")
        if isinstance(exc, dict):
            exc = dict(exc, _stacktrace="<stacktrace>")
            action = dict(action, stored_data=dict(action["stored_data"], _exception=exc))
    return action


def snapshot(lp: Any, dirs: tuple[str, ...] = ()) -> dict[str, Any]:
    """The LaunchPad's state, minus what legitimately differs between two runs (times, hosts,
    the launch directories ``dirs``, stack trace text): a view of :func:`db_snapshot`."""
    docs = db_snapshot(lp.db)
    fws = {
        d["fw_id"]: _strip_paths({k: v for k, v in d.items() if k not in _TWIN_VOLATILE_FW}, dirs)
        for d in docs["fireworks"].values()
    }
    launches = {
        d["launch_id"]: {
            "fw_id": d["fw_id"],
            "state": d["state"],
            "states": [h["state"] for h in d.get("state_history", [])],
            "action": _drop_times(_strip_paths(_drop_stacktrace(d.get("action")), dirs)),
        }
        for d in docs["launches"].values()
    }
    wfs = [
        {
            "nodes": sorted(d["nodes"]),
            "links": d["links"],
            "fw_states": d["fw_states"],
            "state": d["state"],
            "name": d.get("name"),
        }
        for d in sorted(docs["workflows"].values(), key=lambda d: sorted(d["nodes"]))
    ]
    runs = sorted((r["launch_id"], r["completed"], r["deprecated"]) for r in docs["offline_runs"].values())
    return {"fireworks": fws, "launches": launches, "workflows": wfs, "offline_runs": runs}


def state_counts(docs: dict[str, dict[Any, Any]]) -> dict[str, dict[str, int]]:
    """How many Fireworks, launches and workflows of a :func:`db_snapshot` are in each state, and
    how many offline runs are completed or deprecated: what the benchmarks compare."""

    def count(coll: str) -> dict[str, int]:
        return dict(sorted(collections.Counter(d["state"] for d in docs[coll].values()).items()))

    runs = collections.Counter(
        f"completed={r['completed']},deprecated={r['deprecated']}" for r in docs["offline_runs"].values()
    )
    return {
        "fireworks": count("fireworks"),
        "launches": count("launches"),
        "workflows": count("workflows"),
        "offline_runs": dict(sorted(runs.items())),
    }
