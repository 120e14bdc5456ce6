"""jobflow flows online (FireWorks' rlaunch with database access) and offline through fwspool
(``qlaunch -r``-style reservations, ``fwspool rlaunch``, ingest and push): the same JobStore
documents and blobs, and the same LaunchPad states (docs/jobflow.md)."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

import jf_jobs
import pymongo
import pytest
from jobflow import Flow, JobStore
from jobflow.managers.fireworks import flow_to_workflow
from maggma.stores import GridFSStore, MongoStore

from fwspool.reserve import reserve_offline
from fwspool.testing.commands import fireworks_command, run_fwspool, run_job
from fwspool.testing.journal_file import ingest_and_push
from fwspool.testing.launchpad import snapshot

#: What legitimately differs between two runs of the same job: when, where, the store's own id.
_VOLATILE_OUTPUT = {"_id", "completed_at", "last_updated"}


def job_store(mongo_uri: str, database: str, **client: Any) -> JobStore:
    """A MongoStore JobStore with a GridFS additional store ``data``; ``client``: pymongo options."""
    where = urlsplit(mongo_uri)
    common = {"database": database, "host": where.hostname, "port": where.port, "mongoclient_kwargs": client}
    return JobStore(
        MongoStore(collection_name="outputs", **common),
        {"data": GridFSStore(collection_name="blobs", **common)},
    )


@pytest.fixture
def stores(twins: Any, mongo_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any):
    """A JobStore for each twin, on the same server, each in a database of its own; and the
    offline twin's shared output cache."""
    ref, fws = twins
    monkeypatch.setenv("FWSPOOL_JOBFLOW_CACHE", str(tmp_path / "cache"))
    pair = job_store(mongo_uri, ref.name + "_js"), job_store(mongo_uri, fws.name + "_js")
    yield pair
    with pymongo.MongoClient(mongo_uri) as client:
        for store in pair:
            client.drop_database(store.docs_store.database)


def run_online(lp: Any, workdir: Any, lp_file: str) -> int:
    """FireWorks' own rlaunch, with database access, one Firework per launch directory."""
    n = 0
    while lp.fireworks.count_documents({"state": "READY"}):
        n += 1
        d = workdir / f"online{n}"
        d.mkdir()
        res = run_job([fireworks_command("rlaunch"), "-l", lp_file, "singleshot"], str(d))
        assert res.returncode == 0, res.stderr[-2000:]
    return n


def run_offline(lp: Any, workdir: Any, journal_path: str, mongo_uri: str) -> int:
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


def outputs(store: JobStore) -> list[dict[str, Any]]:
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


def blobs(store: JobStore) -> list[dict[str, Any]]:
    """The ``data`` store's blobs, each checked to be the one its job's document names."""
    store.connect()
    named = {ref["blob_uuid"] for doc in store.docs_store.query({}) for ref in _references(doc)}
    found = [{k: v for k, v in d.items() if k != "_id"} for d in store.additional_stores["data"].query({})]
    assert {b["blob_uuid"] for b in found} == named
    return sorted(
        ({k: v for k, v in b.items() if k != "blob_uuid"} for b in found), key=lambda b: b["job_uuid"]
    )


def _references(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        if "blob_uuid" in value and "store" in value:
            return [value]
        return [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


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


def run_twins(flow: Flow, twins: Any, stores: Any, tmp_path: Any, journal_path: str, mongo_uri: str) -> tuple:
    ref, fws = twins
    ref_store, fws_store = stores
    ref.add_wf(flow_to_workflow(flow, store=ref_store))
    fws.add_wf(flow_to_workflow(flow, store=fws_store))
    lp_file = tmp_path / "my_launchpad.yaml"
    ref.to_file(str(lp_file))
    run_online(ref, tmp_path, str(lp_file))
    run_offline(fws, tmp_path, journal_path, mongo_uri)
    dirs = tuple(str(p) for p in tmp_path.iterdir()) + (
        ref_store.docs_store.database,
        fws_store.docs_store.database,
    )
    pairs: dict[str, str] = {}
    assert_same(launchpad_state(fws, dirs), launchpad_state(ref, dirs), pairs)
    assert_same(outputs(fws_store), outputs(ref_store), pairs)
    return outputs(fws_store)


def test_a_chain_with_references_into_nested_fields(twins, stores, tmp_path, journal_path, mongo_uri):
    first = jf_jobs.make(3)
    second = jf_jobs.add(first.output["nested"]["deep"]["tenfold"], first.output["value"])
    third = jf_jobs.add(second.output, first.output["nested"]["pair"][1])
    docs = run_twins(Flow([first, second, third]), twins, stores, tmp_path, journal_path, mongo_uri)
    by_uuid = {d["uuid"]: d["output"] for d in docs}
    assert by_uuid[second.uuid] == 33 and by_uuid[third.uuid] == 37
    assert os.listdir(os.environ["FWSPOOL_JOBFLOW_CACHE"])  # the children read their inputs there


def test_a_failing_job_and_stop_children(twins, stores, tmp_path, journal_path, mongo_uri):
    failing = jf_jobs.fail()
    after_failure = jf_jobs.add(failing.output, 1)
    stopping = jf_jobs.stop_here(5)
    stopped = jf_jobs.add(stopping.output, 1)
    flow = Flow([failing, after_failure, stopping, stopped])
    docs = run_twins(flow, twins, stores, tmp_path, journal_path, mongo_uri)
    assert {d["uuid"] for d in docs} == {stopping.uuid}
    states = sorted((d["name"], d["state"]) for d in twins[1].fireworks.find({}, {"name": 1, "state": 1}))
    assert states == [("add", "DEFUSED"), ("add", "WAITING"), ("fail", "FIZZLED"), ("stop_here", "COMPLETED")]


def test_a_dynamic_flow_with_replace_and_addition(twins, stores, tmp_path, journal_path, mongo_uri):
    grown = jf_jobs.grow(7)
    after = jf_jobs.add(grown.output, 1)
    docs = run_twins(Flow([grown, after]), twins, stores, tmp_path, journal_path, mongo_uri)
    values = sorted(d["output"] for d in docs if isinstance(d["output"], int))
    assert values == [107, 108, 1007]


def test_a_blob_over_16_mb_in_a_gridfs_additional_store(twins, stores, tmp_path, journal_path, mongo_uri):
    size = 17 * 1024 * 1024
    produced = jf_jobs.big(size)
    used = jf_jobs.add(produced.output["size"], 1)
    docs = run_twins(Flow([produced, used]), twins, stores, tmp_path, journal_path, mongo_uri)
    assert {d["uuid"]: d["output"] for d in docs}[used.uuid] == size + 1
    ref_blobs, fws_blobs = blobs(stores[0]), blobs(stores[1])
    assert len(fws_blobs) == 1 and len(fws_blobs[0]["data"]) == size
    assert fws_blobs == ref_blobs
