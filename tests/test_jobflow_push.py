"""jobflow Fireworks at the edges: a push killed between the JobStore write and the completion,
an unreachable JobStore, inputs missing from the output cache, ``expose_store``, no jobflow."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Any

import pymongo
import pytest
from jobflow import Flow
from jobflow.managers.fireworks import flow_to_workflow

from fwspool.reserve import reserve_offline
from fwspool.testing import jobflow_jobs as jf_jobs
from fwspool.testing.commands import fwspool_cmd, job_env, run_fwspool
from fwspool.testing.jobflow_twins import job_store


@pytest.fixture
def cache(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "cache")
    monkeypatch.setenv("FWSPOOL_JOBFLOW_CACHE", path)
    return path


@pytest.fixture
def login(journal_path: str, mongo_uri: str, launchpad: Any, cache: str):
    """``fwspool ARGS`` on the login node, as a process of its own (it may be killed)."""
    env = job_env(
        FWSPOOL_JOURNAL=journal_path, FWSPOOL_MONGODB_URI=mongo_uri, FWSPOOL_MONGODB_NAME=launchpad.name
    )

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*fwspool_cmd(), *args], env=dict(env, **extra), capture_output=True, text=True)

    return run


def state(lp: Any, fw_name: str) -> str:
    return lp.fireworks.find_one({"name": fw_name}, {"state": 1})["state"]


def run_one(lp: Any, launch_dir: str, returncode: int = 0) -> subprocess.CompletedProcess[str]:
    """The next READY Firework reserved as ``qlaunch -r`` does and run by ``fwspool rlaunch``."""
    reserve_offline(lp, launch_dir)
    res = run_fwspool(launch_dir)
    assert res.returncode == returncode, res.stderr[-2000:]
    return res


#: Where a push is killed: between the JobStore write and the completion, and after the
#: completion before the journal marks it pushed.
KILL_POINTS = {"push.after_store_write": ("RESERVED", "WAITING"), "push.before_mark": ("COMPLETED", "READY")}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_a_push_killed_at_a_failpoint_writes_each_output_once(
    point, launchpad, mongo_uri, db_name, login, cache, tmp_path
):
    """0 lost, 0 duplicated JobStore documents or blobs, 0 children READY before their inputs
    exist, with a blob over the inline limit (a side file, GridFS)."""
    store = job_store(mongo_uri, db_name + "_js")
    size = 2 * 1024 * 1024
    first = jf_jobs.big(size)
    second = jf_jobs.add(first.output["size"], 1)
    first.name, second.name = "first", "second"
    launchpad.add_wf(flow_to_workflow(Flow([first, second]), store=store))
    d1 = str(tmp_path / "first")
    run_one(launchpad, d1)
    assert login("ingest", "--root", d1).returncode == 0
    crash = login("push", FWSPOOL_FAILPOINTS=f"{point}=kill")
    assert crash.returncode == -signal.SIGKILL, crash.stderr
    database = pymongo.MongoClient(mongo_uri)[db_name + "_js"]
    outputs, blobs = database["outputs"], database["blobs.files"]
    try:
        # Outputs first: in the JobStore and the cache whatever the completion's progress.
        assert (outputs.count_documents({"uuid": first.uuid}), blobs.count_documents({})) == (1, 1)
        assert os.path.exists(os.path.join(cache, first.uuid, "1.ejson"))
        assert (state(launchpad, "first"), state(launchpad, "second")) == KILL_POINTS[point]
        again = login("push")
        assert again.returncode == 0, again.stderr
        assert (outputs.count_documents({"uuid": first.uuid}), blobs.count_documents({})) == (1, 1)
        assert (state(launchpad, "first"), state(launchpad, "second")) == ("COMPLETED", "READY")
        d2 = str(tmp_path / "second")
        run_one(launchpad, d2)
        assert login("sync", "--root", d2).returncode == 0
        assert outputs.find_one({"uuid": second.uuid})["output"] == size + 1
        assert (outputs.count_documents({}), blobs.count_documents({})) == (2, 1)
    finally:
        database.client.drop_database(db_name + "_js")


def test_an_unreachable_job_store_makes_the_completion_wait(launchpad, mongo_server_factory, login, tmp_path):
    server = mongo_server_factory()
    store = job_store(server.uri, "jobstore", serverSelectionTimeoutMS=1500)
    root = jf_jobs.make(1)
    launchpad.add_wf(flow_to_workflow(Flow([root]), store=store))
    d = str(tmp_path / "root")
    run_one(launchpad, d)  # the compute node connects to nothing: the server may as well be down
    server.stop()
    down = login("sync", "--root", d)
    assert down.returncode == 75, down.stderr
    assert "the JobStore" in down.stderr and "is unreachable" in down.stderr
    assert state(launchpad, "make") == "RESERVED"
    status = " ".join(login("status").stdout.split())  # its lines wrapped to the terminal
    assert "held: launch 1 (Firework 1): the JobStore mongo://" in status, status
    assert "is unreachable (ServerSelectionTimeoutError); its completion waits" in status, status
    server.start()
    up = login("push")
    assert up.returncode == 0, up.stderr
    assert state(launchpad, "make") == "COMPLETED"
    with pymongo.MongoClient(server.uri) as client:
        assert client["jobstore"]["outputs"].count_documents({"uuid": root.uuid}) == 1


def test_missing_inputs_hand_the_reservation_back(launchpad, mongo_uri, db_name, login, cache, tmp_path):
    store = job_store(mongo_uri, db_name + "_js")
    first = jf_jobs.make(2)
    second = jf_jobs.add(first.output["value"], 1)
    launchpad.add_wf(flow_to_workflow(Flow([first, second]), store=store))
    d1, d2 = str(tmp_path / "first"), str(tmp_path / "second")
    run_one(launchpad, d1)
    assert login("sync", "--root", d1).returncode == 0
    shutil.rmtree(cache)
    try:
        res = run_one(launchpad, d2, returncode=75)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "not in the jobflow output cache" in lines[0], res.stderr
        assert state(launchpad, "add") == "RESERVED"
        assert login("sync", "--root", d2).returncode == 0
        assert state(launchpad, "add") == "READY"  # reserved again later, never run without inputs
        # The push that handed it back put its inputs in the cache, from the JobStore: it runs now.
        run_one(launchpad, str(tmp_path / "again"))
        assert login("sync", "--root", str(tmp_path / "again")).returncode == 0
        assert state(launchpad, "add") == "COMPLETED"
        store.connect()
        assert store.query_one({"uuid": second.uuid})["output"] == 3
    finally:
        pymongo.MongoClient(mongo_uri).drop_database(db_name + "_js")


def test_a_job_that_needs_the_store_while_it_runs_is_refused(launchpad, mongo_uri, db_name, login, tmp_path):
    exposing = jf_jobs.add(1, 2)
    exposing.config.expose_store = True
    launchpad.add_wf(flow_to_workflow(Flow([exposing]), store=job_store(mongo_uri, db_name + "_js")))
    d = str(tmp_path / "exposing")
    res = run_one(launchpad, d, returncode=65)
    assert res.stderr.count("\n") == 1 and "expose_store=True" in res.stderr, res.stderr
    assert login("sync", "--root", d).returncode == 0
    assert state(launchpad, "add") == "FIZZLED"


def test_a_job_firetask_without_jobflow_is_one_line(launchpad, mongo_uri, db_name, tmp_path):
    launchpad.add_wf(flow_to_workflow(Flow([jf_jobs.add(1, 2)]), store=job_store(mongo_uri, db_name + "_js")))
    shadow = tmp_path / "no-jobflow" / "jobflow"
    shadow.mkdir(parents=True)
    # A node without the extra: importing jobflow fails as it does where it is not installed.
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'jobflow'\", name='jobflow')\n"
    )
    d = str(tmp_path / "job")
    reserve_offline(launchpad, d)
    env = job_env()
    env["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), env["PYTHONPATH"]])
    res = run_fwspool(d, env=env)
    assert res.returncode == 65, res.stderr
    assert res.stderr.count("\n") == 1 and "pip install 'fwspool[jobflow]'" in res.stderr, res.stderr


def test_outputs_are_never_pushed_to_an_in_memory_store(launchpad, login, tmp_path):
    """A workflow that names no store writes to the login node's jobflow JOB_STORE: here jobflow's
    default, in memory. The push holds the launch, saying why, instead of completing it."""
    launchpad.add_wf(flow_to_workflow(Flow([jf_jobs.make(1)])))
    d = str(tmp_path / "job")
    run_one(launchpad, d)
    res = login("sync", "--root", d)
    assert res.returncode == 0, res.stderr
    assert "the JobStore is an in-memory store" in res.stdout + res.stderr
    assert state(launchpad, "make") == "RESERVED"
    status = login("status")
    assert "in-memory store" in status.stdout, status.stdout


def test_a_damaged_side_file_holds_its_launch(launchpad, mongo_uri, db_name, login, tmp_path):
    """A blob over the inline limit travels in a side file named by its hash; one whose bytes
    changed is never written to the JobStore, and the launch waits, saying which file."""
    store = job_store(mongo_uri, db_name + "_js")
    launchpad.add_wf(flow_to_workflow(Flow([jf_jobs.big(2 * 1024 * 1024)]), store=store))
    d = tmp_path / "big"
    run_one(launchpad, str(d))
    (side,) = d.glob("fwspool-blob-*.ejson")
    data = bytearray(side.read_bytes())
    data[len(data) // 2] ^= 1
    side.write_bytes(bytes(data))
    res = login("sync", "--root", str(d))
    try:
        assert res.returncode == 0, res.stderr
        assert f"the JobStore side file {side} is damaged" in res.stdout + res.stderr
        assert state(launchpad, "big") == "RESERVED"
        with pymongo.MongoClient(mongo_uri) as client:
            assert client[db_name + "_js"]["outputs"].count_documents({}) == 0
    finally:
        pymongo.MongoClient(mongo_uri).drop_database(db_name + "_js")


def test_fwspool_qlaunch_never_reserves_a_job_that_needs_the_store(launchpad, mongo_uri, db_name, tmp_path):
    from fireworks import FWorker

    from fwspool.qlaunch import refused_for_the_store, reserve_pack

    exposing, plain = jf_jobs.add(1, 2), jf_jobs.make(1)
    exposing.config.expose_store = True
    launchpad.add_wf(flow_to_workflow(Flow([exposing, plain]), store=job_store(mongo_uri, db_name + "_js")))
    block = tmp_path / "block"
    block.mkdir()
    reserved = reserve_pack(launchpad, FWorker(), str(block), 5)
    assert [fw.name for fw, _launch_id, _dir in reserved] == ["make"]
    (line,) = refused_for_the_store(launchpad, FWorker())
    assert "(add) is not reserved: its jobflow job sets expose_store=True" in line
    assert state(launchpad, "add") == "READY"
