"""End to end on the site of network namespaces (fwspool.testing.topology, issue 19).

The test itself runs on the login host (fixture ``on_login``), as the user does: FireWorks' own
``qlaunch -r`` with the README's ``rocket_launch`` line, and the README's ``fwspool sync
--watch``. The jobs run on the compute hosts, which have no route to the database: whatever
reaches the LaunchPad went through the spool and the login host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fireworks import Firework, ScriptTask, Workflow
from test_slurm_path import ROCKET_LAUNCH, fw_state, reserved_job, sleeper, the_launch

from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import Site
from fwspool.testing.topology import Topology
from fwspool.testing.waiting import wait_for


def on_node(node: str) -> dict[str, Any]:
    """A Firework spec that makes FireWorks' queue adapter keep its job off the other node."""
    other = {"cn1": "cn2", "cn2": "cn1"}[node]
    return {"_queueadapter": {"exclude_nodes": other}}


def site_on(topology: Topology, tmp_path: Path, db_name: str) -> tuple[Any, Site]:
    assert topology.slurm is not None
    lp = make_launchpad(topology.db_uri, db_name)
    return lp, Site(tmp_path, topology.db_uri, db_name, topology.slurm, ROCKET_LAUNCH)


def test_a_chain_runs_on_both_compute_hosts_through_a_database_outage(
    on_login: Topology, tmp_path: Path, db_name: str
) -> None:
    topology = on_login
    lp, site = site_on(topology, tmp_path, db_name)
    nodes = {1: "cn1", 2: "cn2", 3: "cn1"}
    steps = [
        Firework(ScriptTask.from_str("echo one > step.txt"), name="step1", fw_id=1, spec=on_node("cn1")),
        sleeper("step2", 3, fw_id=2, **on_node("cn2")),
        Firework(ScriptTask.from_str("echo three > step.txt"), name="step3", fw_id=3, spec=on_node("cn1")),
    ]
    lp.add_wf(Workflow(steps, {1: [2], 2: [3]}))
    assert topology.db is not None and topology.slurm is not None
    site.start_sync()
    try:
        for fw_id in (1, 2, 3):
            d = site.runs / f"step{fw_id}"
            d.mkdir()
            site.qlaunch("singleshot", cwd=d)
            job = reserved_job(lp, fw_id)
            if fw_id == 2:
                topology.slurm.wait_for_state(job, {"RUNNING"}, 30)
                topology.db.stop()  # step 2 runs and ends on cn2 while the database is down
                topology.slurm.wait_for_state(job, {"COMPLETED"}, 60)
                wait_for(
                    lambda: site.events("SELECT 1 FROM events WHERE type = 'exited' AND fw_id = 2"),
                    30,
                    "step 2's end in the journal while the database is down",
                )
                topology.db.start()
            wait_for(lambda fw_id=fw_id: fw_state(lp, fw_id) == "COMPLETED", 60, f"step {fw_id} COMPLETED")
        assert lp.workflows.find_one({"nodes": 1})["state"] == "COMPLETED"
        assert "cannot reach MongoDB" in site.log()
    finally:
        site.stop_sync()
    for fw_id, node in nodes.items():
        launch = the_launch(lp, fw_id)
        assert launch["host"] == node, launch
        assert [h["state"] for h in launch["state_history"]] == ["RESERVED", "RUNNING", "COMPLETED"]
        record = topology.slurm.job_record(str(lp.get_reservation_id_from_fw_id(fw_id)))
        assert (record["JobState"], record["NodeList"]) == ("COMPLETED", node)
    started = [json.loads(p) for (p,) in site.events("SELECT payload FROM events WHERE type = 'started'")]
    assert sorted(st["host"] for st in started) == ["cn1", "cn1", "cn2"]
    assert (site.runs / "step3" / "step.txt").read_text() == "three\n"
