"""jobflow flows online (FireWorks' rlaunch with database access) and offline through fwspool
(``qlaunch -r``-style reservations, ``fwspool rlaunch``, ingest and push): the same JobStore
documents and blobs, and the same LaunchPad states (docs/jobflow.md). The runs and the comparison
are fwspool.testing.jobflow_twins's (chaos scenario 16 uses them too)."""

from __future__ import annotations

import os
from typing import Any

import pymongo
import pytest
from jobflow import Flow
from jobflow.managers.fireworks import flow_to_workflow

from fwspool.testing import jobflow_jobs as jf_jobs
from fwspool.testing.jobflow_twins import (
    assert_same,
    blobs,
    job_store,
    launchpad_state,
    outputs,
    run_offline,
    run_online,
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
    flow = jf_jobs.nested_chain()
    docs = run_twins(flow, twins, stores, tmp_path, journal_path, mongo_uri)
    by_uuid = {d["uuid"]: d["output"] for d in docs}
    assert by_uuid[flow.jobs[1].uuid] == 33 and by_uuid[flow.jobs[2].uuid] == 37
    assert os.listdir(os.environ["FWSPOOL_JOBFLOW_CACHE"])  # the children read their inputs there


def test_a_failing_job_and_stop_children(twins, stores, tmp_path, journal_path, mongo_uri):
    flow = jf_jobs.failing_and_stopping()
    stopping = flow.jobs[2]
    docs = run_twins(flow, twins, stores, tmp_path, journal_path, mongo_uri)
    assert {d["uuid"] for d in docs} == {stopping.uuid}
    states = sorted((d["name"], d["state"]) for d in twins[1].fireworks.find({}, {"name": 1, "state": 1}))
    assert states == [("add", "DEFUSED"), ("add", "WAITING"), ("fail", "FIZZLED"), ("stop_here", "COMPLETED")]


def test_a_dynamic_flow_with_replace_and_addition(twins, stores, tmp_path, journal_path, mongo_uri):
    docs = run_twins(jf_jobs.dynamic(7), twins, stores, tmp_path, journal_path, mongo_uri)
    values = sorted(d["output"] for d in docs if isinstance(d["output"], int))
    assert values == [107, 108, 1007]


def test_a_blob_over_16_mb_in_a_gridfs_additional_store(twins, stores, tmp_path, journal_path, mongo_uri):
    size = 17 * 1024 * 1024
    flow = jf_jobs.blob_and_reader(size)
    docs = run_twins(flow, twins, stores, tmp_path, journal_path, mongo_uri)
    assert {d["uuid"]: d["output"] for d in docs}[flow.jobs[1].uuid] == size + 1
    ref_blobs, fws_blobs = blobs(stores[0]), blobs(stores[1])
    assert len(fws_blobs) == 1 and len(fws_blobs[0]["data"]) == size
    assert fws_blobs == ref_blobs
