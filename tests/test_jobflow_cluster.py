"""jobflow on the real batch systems: the twins' chain submitted by FireWorks' ``qlaunch -r
rapidfire`` and by ``fwspool qlaunch rapidfire`` on the private Slurm, each equal to its online
twin; packed jobs (``fwspool qlaunch --pack``) there; and a chain on the site of network namespaces (fwspool.testing.topology), whose compute
hosts have no route to the database, so neither to the LaunchPad nor to the JobStore, with
FireWorks' own ``qlaunch -r`` and the README's ``fwspool sync --watch`` on the login host and the
database stopped while the middle job runs (docs/jobflow.md)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pymongo
import pytest
from jobflow import Flow
from jobflow.managers.fireworks import flow_to_workflow
from test_cluster import on_node, site_on
from test_slurm_pack import jobs_of
from test_slurm_path import fw_state, launchpad_of, reserved_job

from fwspool.testing import jobflow_jobs as jf_jobs
from fwspool.testing.jobflow_twins import differences, job_store, run_online, run_state
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import Site, qlaunch_command
from fwspool.testing.topology import Topology
from fwspool.testing.waiting import wait_for


def test_a_jobflow_chain_runs_on_hosts_without_a_database_route(
    on_login: Topology, tmp_path: Path, db_name: str
) -> None:
    topology = on_login
    assert topology.db is not None and topology.slurm is not None
    lp, site = site_on(topology, tmp_path, db_name)
    store = job_store(topology.db_uri, db_name + "_js", serverSelectionTimeoutMS=3000)
    first = jf_jobs.make(4)
    second = jf_jobs.add_when_told(first.output["nested"]["deep"]["tenfold"], first.output["value"])
    third = jf_jobs.add(second.output, first.output["nested"]["pair"][1])
    wf = flow_to_workflow(Flow([first, second, third]), store=store)
    for fw, node in zip(sorted(wf.fws, key=lambda f: -f.fw_id), ("cn1", "cn2", "cn1"), strict=True):
        fw.spec.update(on_node(node))
    lp.add_wf(wf)
    fw_ids = [lp.fireworks.find_one({"name": name})["fw_id"] for name in ("make", "add_when_told", "add")]
    site.start_sync()
    try:
        for step, fw_id in enumerate(fw_ids, start=1):
            d = site.runs / f"step{step}"
            d.mkdir()
            site.qlaunch("singleshot", cwd=d)
            job = reserved_job(lp, fw_id)
            if step == 2:
                topology.slurm.wait_for_state(job, {"RUNNING"}, 60)
                topology.db.stop()  # the LaunchPad and the JobStore down while step 2 runs and ends
                (d / "go").touch()
                topology.slurm.wait_for_state(job, {"COMPLETED"}, 60)
                wait_for(lambda: "cannot reach MongoDB" in site.log(), 30, "the pusher to see the outage")
                topology.db.start()
            wait_for(lambda fw_id=fw_id: fw_state(lp, fw_id) == "COMPLETED", 90, f"step {fw_id} COMPLETED")
    finally:
        site.stop_sync()
    with pymongo.MongoClient(topology.db_uri) as client:
        outputs = {d["uuid"]: d for d in client[db_name + "_js"]["outputs"].find()}
    assert {u: d["output"] for u, d in outputs.items() if u != first.uuid} == {
        second.uuid: 44,
        third.uuid: 49,
    }
    assert sorted(d["index"] for d in outputs.values()) == [1, 1, 1]


def test_packed_jobflow_jobs_and_a_child_that_reads_their_outputs(
    site: Site, mongo_uri: str, db_name: str
) -> None:
    """``fwspool qlaunch --pack`` on the private Slurm: two jobflow roots in one job, then their
    child, whose references resolve from the outputs the push of the first job cached."""
    lp = make_launchpad(*launchpad_of(site))
    store = job_store(mongo_uri, db_name + "_js")
    left, right = jf_jobs.make(1), jf_jobs.make(2)
    both = jf_jobs.add(left.output["nested"]["deep"]["tenfold"], right.output["value"])
    lp.add_wf(flow_to_workflow(Flow([left, right, both]), store=store))
    env = site.env()
    cmd = [str(site.fw / ".venv" / "bin" / "fwspool"), "qlaunch", "-r", "-l", str(site.launchpad_file)]
    cmd += ["-w", str(site.fw / "my_fworker.yaml"), "-q", str(site.qadapter), "--pack", "5", "singleshot"]
    site.start_sync()
    try:
        first = subprocess.run(cmd, cwd=site.runs, env=env, capture_output=True, text=True, timeout=180)
        assert first.returncode == 0 and len(jobs_of(first.stdout)) == 1, first.stdout + first.stderr
        states = lambda: sorted(d["state"] for d in lp.fireworks.find({}, {"state": 1}))  # noqa: E731
        wait_for(
            lambda: states() == ["COMPLETED", "COMPLETED", "READY"],
            120,
            "both roots COMPLETED, the child READY",
        )
        second = subprocess.run(cmd, cwd=site.runs, env=env, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stdout + second.stderr
        wait_for(lambda: states() == ["COMPLETED"] * 3, 120, "the child COMPLETED")
    finally:
        site.stop_sync()
    with pymongo.MongoClient(mongo_uri) as client:
        outputs = client[db_name + "_js"]["outputs"]
        assert outputs.find_one({"uuid": both.uuid})["output"] == 12
        assert outputs.count_documents({}) == 3
        client.drop_database(db_name + "_js")


@pytest.fixture(scope="module")
def online_chain(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The twins' chain run online once (FireWorks' rlaunch with database access), as
    :func:`run_state` reads it: the twin of both submission commands' offline runs."""
    work = tmp_path_factory.mktemp("online")
    name = f"jf_online_{uuid.uuid4().hex[:8]}"
    lp = make_launchpad(mongo_uri, name)
    store = job_store(mongo_uri, name + "_js")
    try:
        lp.add_wf(flow_to_workflow(jf_jobs.nested_chain(), store=store))
        lp.to_file(str(work / "my_launchpad.yaml"))
        assert run_online(lp, work, str(work / "my_launchpad.yaml")) == 3
        return run_state(lp, store, (*launch_dirs(lp), name + "_js"))
    finally:
        lp.connection.drop_database(name)
        lp.connection.drop_database(name + "_js")
        lp.connection.close()


def launch_dirs(lp: Any) -> list[str]:
    """The launch directories of a LaunchPad's launches, longest first (none a prefix of one left
    out of the comparison before it)."""
    dirs = {d["launch_dir"] for d in lp.launches.find({}, {"launch_dir": 1})}
    return sorted(dirs, key=len, reverse=True)


#: The submission command of each offline twin: FireWorks' own, fwspool's.
SUBMIT = {
    "qlaunch -r": lambda site: qlaunch_command(
        site.launchpad_file, site.fw / "my_fworker.yaml", site.qadapter, "rapidfire", "--sleep", "1"
    ),
    "fwspool qlaunch": lambda site: [
        str(site.fw / ".venv" / "bin" / "fwspool"),
        "qlaunch",
        *qlaunch_command(
            site.launchpad_file, site.fw / "my_fworker.yaml", site.qadapter, "rapidfire", "--sleep", "1"
        )[1:],
    ],
}


@pytest.mark.parametrize("command", sorted(SUBMIT))
def test_the_chain_submitted_by_rapidfire_equals_its_online_twin(
    command: str, site: Site, mongo_uri: str, db_name: str, online_chain: Any
) -> None:
    """One rapidfire submits the whole chain, a job per Firework, each child once ``sync
    --watch`` pushed its parent (its outputs in the JobStore and the output cache, then the
    completion): the same JobStore documents, blobs and LaunchPad states as online."""
    lp = make_launchpad(*launchpad_of(site))
    store = job_store(mongo_uri, db_name + "_js")
    lp.add_wf(flow_to_workflow(jf_jobs.nested_chain(), store=store))
    site.start_sync()
    try:
        res = site.as_user(SUBMIT[command](site), cwd=site.runs)
        assert len(lp.launches.distinct("launch_id")) == 3, res.stdout + res.stderr
        states = lambda: sorted(d["state"] for d in lp.fireworks.find({}, {"state": 1}))  # noqa: E731
        wait_for(lambda: states() == ["COMPLETED"] * 3, 90, "the chain COMPLETED")
    finally:
        site.stop_sync()
    try:
        offline = run_state(lp, store, (*launch_dirs(lp), db_name + "_js"))
        diff = differences(offline, online_chain, {})
        assert not diff, "\n".join(diff[:20])
        assert sorted(d["output"] for d in offline["outputs"] if isinstance(d["output"], int)) == [33, 37]
    finally:
        lp.connection.drop_database(db_name + "_js")
