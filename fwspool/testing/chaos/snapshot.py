"""A LaunchPad as comparable data: every document keyed by what identifies it across runs.

Two runs of one workload (a faulty one and a clean one, each on its own clone of the same
reserved LaunchPad, so with the same ids) must produce equal snapshots: invariant (b).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fwspool.binding import EPOCH_FIELD
from fwspool.events import iso

COLLECTIONS = ("fireworks", "launches", "workflows", "offline_runs", "fw_id_assigner")
#: What legitimately differs between two runs of the same workload.
VOLATILE = {
    "fireworks": frozenset({"_id", "updated_on"}),
    "launches": frozenset({"_id", "launch_dir"}),
    "workflows": frozenset({"_id", "updated_on"}),
    "offline_runs": frozenset({"_id", "updated_on"}),
    # The epoch the first push of a journal draws (fwspool.binding): each run draws its own.
    "fw_id_assigner": frozenset({"_id", EPOCH_FIELD}),
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
