"""jobflow twin runs and their comparison, for the twin tests and chaos scenario 16: a JobStore
on the test server, a flow run online (FireWorks' ``rlaunch`` with database access) or offline
(reserved as ``qlaunch -r`` does, ``fwspool rlaunch``, ingest and push), and the JobStore and
LaunchPad of two runs compared, with what legitimately differs between them left out
(docs/jobflow.md)."""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fwspool.reserve import reserve_offline
from fwspool.testing.commands import fireworks_command, run_fwspool, run_job
from fwspool.testing.journal_file import ingest_and_push
from fwspool.testing.launchpad import snapshot

__all__ = [
    "assert_same",
    "blobs",
    "differences",
    "duplicates",
    "job_store",
    "launchpad_state",
    "outputs",
    "run_offline",
    "run_online",
    "run_state",
]

#: What legitimately differs between two runs of the same job: when, where, the store's own id.
_VOLATILE_OUTPUT = {"_id", "completed_at", "last_updated"}


def job_store(mongo_uri: str, database: str, **client: Any) -> Any:
    """A MongoStore JobStore with a GridFS additional store ``data``; ``client``: pymongo options."""
    from jobflow import JobStore
    from maggma.stores import GridFSStore, MongoStore

    where = urlsplit(mongo_uri)
    common: dict[str, Any] = {
        "database": database,
        "host": where.hostname,
        "port": where.port,
        "mongoclient_kwargs": client,
    }
    return JobStore(
        MongoStore(collection_name="outputs", **common),
        {"data": GridFSStore(collection_name="blobs", **common)},
    )


def run_online(lp: Any, workdir: Path, lp_file: str) -> int:
    """FireWorks' own rlaunch, with database access, one Firework per launch directory."""
    n = 0
    while lp.fireworks.count_documents({"state": "READY"}):
        n += 1
        d = workdir / f"online{n}"
        d.mkdir()
        res = run_job([fireworks_command("rlaunch"), "-l", lp_file, "singleshot"], str(d))
        assert res.returncode == 0, res.stderr[-2000:]
    return n


def run_offline(lp: Any, workdir: Path, journal_path: str, mongo_uri: str) -> int:
    """Each READY Firework reserved as ``qlaunch -r`` does, run by ``fwspool rlaunch``, then one
    ingest and push: the push that completes a parent makes its children READY."""
    n = 0
    while lp.fireworks.count_documents({"state": "READY"}):
        n += 1
        d = str(workdir / f"offline{n}")
        reserve_offline(lp, d)
        res = run_fwspool(d)
        assert res.returncode == 0, res.stderr[-2000:]
        ingest_and_push(journal_path, mongo_uri, lp.name, roots=(d,))
    return n


def outputs(store: Any) -> list[dict[str, Any]]:
    """The docs store's documents, with each blob reference's random ``blob_uuid`` (drawn anew by
    each run) replaced by the blob's place: the job and the field that holds it."""
    store.connect()
    # By Firework and index: a dynamic job's new jobs have uuids of their own in each twin.
    docs = sorted(store.docs_store.query({}), key=lambda d: (d["metadata"].get("fw_id", 0), d["index"]))
    return [_placed({k: v for k, v in d.items() if k not in _VOLATILE_OUTPUT}) for d in docs]


def _placed(value: Any, where: str = "") -> Any:
    if isinstance(value, dict):
        if "blob_uuid" in value and "store" in value:
            return dict(value, blob_uuid=f"<blob at {where}>")
        return {k: _placed(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_placed(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def blobs(store: Any) -> list[dict[str, Any]]:
    """The ``data`` store's blobs, each checked to be the one its job's document names."""
    from fwspool.jobstore.real import blob_references

    store.connect()
    named = {ref["blob_uuid"] for doc in store.docs_store.query({}) for ref in blob_references(doc)}
    found = [{k: v for k, v in d.items() if k != "_id"} for d in store.additional_stores["data"].query({})]
    assert {b["blob_uuid"] for b in found} == named
    return sorted(
        ({k: v for k, v in b.items() if k != "blob_uuid"} for b in found), key=lambda b: b["job_uuid"]
    )


def duplicates(database: Any) -> list[str]:
    """The JobStore documents (per ``(uuid, index)``) and ``data`` blobs (per ``blob_uuid``) held
    more than once in ``database`` (a pymongo database of :func:`job_store`'s layout), read with
    the driver itself rather than through the store (which may hide a duplicate)."""
    docs = collections.Counter(
        (d["uuid"], d["index"]) for d in database["outputs"].find({}, {"uuid": 1, "index": 1})
    )
    files = collections.Counter(
        (d.get("metadata") or {}).get("blob_uuid") for d in database["blobs.files"].find({}, {"metadata": 1})
    )
    return [f"document {k} {n} times" for k, n in docs.items() if n > 1] + [
        f"blob {k} {n} times" for k, n in files.items() if n > 1
    ]


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def differences(a: Any, b: Any, pairs: dict[str, str], where: str = "") -> list[str]:
    """Where two documents differ, by path (a readable failure for large documents). Job uuids
    drawn at run time (a dynamic job's new jobs) differ between twins: they must correspond
    one to one (``pairs``), everywhere."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b), key=str)
        return [
            d
            for k in keys
            for d in differences(a.get(k, "<none>"), b.get(k, "<none>"), pairs, f"{where}.{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, pairs, f"{where}[{i}]")
        ]
    if (
        isinstance(a, str)
        and isinstance(b, str)
        and _UUID.match(a)
        and _UUID.match(b)
        and pairs.setdefault(a, b) == b
        and pairs.setdefault("~" + b, a) == a
    ):
        return []
    return [] if a == b else [f"{where}: {str(a)[:300]} != {str(b)[:300]}"]


def assert_same(offline: Any, online: Any, pairs: dict[str, str]) -> None:
    diff = differences(offline, online, pairs)
    assert not diff, "\n".join(diff[:20])


def _searchable_once(value: Any) -> Any:
    """jobflow's JobStore adds its fields to a GridFS store's ``searchable_fields`` each time it is
    deserialized, so a FIZZLED launch's ``_task`` names them once more per round trip of the
    Firework: the offline path has more (``FW.json``), with FireWorks' ``qlaunch -r`` as with fwspool."""
    if isinstance(value, dict):
        return {
            k: list(dict.fromkeys(v))
            if k == "searchable_fields" and isinstance(v, list)
            else _searchable_once(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_searchable_once(v) for v in value]
    return value


def launchpad_state(lp: Any, dirs: tuple[str, ...]) -> dict[str, Any]:
    """The twin-run snapshot, but for what only a reservation adds: the RESERVED step of each
    launch's history and the offline runs (the online twin reserves nothing)."""
    snap = _searchable_once(snapshot(lp, dirs))
    del snap["offline_runs"]
    for launch in snap["launches"].values():
        launch["states"] = [s for s in launch["states"] if s != "RESERVED"]
    return snap


def run_state(lp: Any, store: Any, dirs: tuple[str, ...]) -> dict[str, Any]:
    """What two runs of one flow must have equal: the LaunchPad (:func:`launchpad_state`, the
    launch directories and JobStore database names ``dirs`` left out), the JobStore documents
    (:func:`outputs`) and blobs (:func:`blobs`). Compare two with :func:`differences`."""
    return {"launchpad": launchpad_state(lp, dirs), "outputs": outputs(store), "blobs": blobs(store)}
