"""jobflow flows online (FireWorks' rlaunch with database access) and offline through fwspool
(``qlaunch -r``-style reservations, ``fwspool rlaunch``, ingest and push): the same JobStore
documents and blobs, and the same LaunchPad states (docs/jobflow.md)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("jobflow")

import jf_jobs  # noqa: E402
from jobflow import Flow, JobStore  # noqa: E402
from jobflow.managers.fireworks import flow_to_workflow  # noqa: E402
from maggma.stores import GridFSStore, MongoStore  # noqa: E402

from fwspool.reserve import reserve_offline  # noqa: E402
from fwspool.testing.commands import fireworks_command, run_fwspool, run_job  # noqa: E402
from fwspool.testing.journal_file import ingest_and_push  # noqa: E402
from fwspool.testing.launchpad import snapshot  # noqa: E402

#: What legitimately differs between two runs of the same job: when, where, the store's own id.
_VOLATILE_OUTPUT = {"_id", "completed_at", "last_updated"}


def job_store(mongo_uri: str, database: str) -> JobStore:
    where = urlsplit(mongo_uri)
    common = {"database": database, "host": where.hostname, "port": where.port}
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
    for store in pair:
        store.docs_store.connect()
        client = store.docs_store._collection.database.client
        client.drop_database(store.docs_store.database)
        store.close()


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
    store.connect()
    docs = store.docs_store.query({}, sort={"uuid": 1, "index": 1})
    return [{k: v for k, v in d.items() if k not in _VOLATILE_OUTPUT} for d in docs]


def blobs(store: JobStore) -> list[dict[str, Any]]:
    data = store.additional_stores["data"]
    data.connect()
    return sorted(
        ({k: v for k, v in d.items() if k != "_id"} for d in data.query({})), key=lambda b: b["blob_uuid"]
    )


def launchpad_state(lp: Any, dirs: tuple[str, ...]) -> dict[str, Any]:
    """The twin-run snapshot, but for what only a reservation adds: the RESERVED step of each
    launch's history and the offline runs (the online twin reserves nothing)."""
    snap = snapshot(lp, dirs)
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
    assert launchpad_state(fws, dirs) == launchpad_state(ref, dirs)
    assert outputs(fws_store) == outputs(ref_store)
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
    states = {d["name"]: d["state"] for d in twins[1].fireworks.find({}, {"name": 1, "state": 1})}
    assert states == {"fail": "FIZZLED", "add": "WAITING", "stop_here": "COMPLETED"} or sorted(
        states.values()
    )


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
