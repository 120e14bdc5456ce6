"""jobflow on the real batch systems: packed jobs (``fwspool qlaunch --pack``) on the private
Slurm, and a chain on the site of network namespaces (fwspool.testing.topology), whose compute
hosts have no route to the database, so neither to the LaunchPad nor to the JobStore, with
FireWorks' own ``qlaunch -r`` and the README's ``fwspool sync --watch`` on the login host and the
database stopped while the middle job runs (docs/jobflow.md). The twins submitted by rapidfire
are tests/test_jobflow_submit.py's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pymongo
from jobflow import Flow
from jobflow.managers.fireworks import flow_to_workflow
from test_cluster import on_node, site_on
from test_slurm_pack import jobs_of
from test_slurm_path import fw_state, launchpad_of, reserved_job

from fwspool.testing import jobflow_jobs as jf_jobs
from fwspool.testing.jobflow_twins import job_store
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import Site
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
