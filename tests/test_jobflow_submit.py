"""Each of the jobflow twins' flows (tests/test_jobflow_twins.py) submitted on the private Slurm
by FireWorks' own ``qlaunch -r rapidfire`` and by ``fwspool qlaunch rapidfire``, with the
README's ``sync --watch`` pushing: each run equal to the flow's online run (FireWorks' rlaunch
with database access), JobStore documents, blobs and LaunchPad states (docs/jobflow.md)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from jobflow import Flow
from jobflow.managers.fireworks import flow_to_workflow
from test_slurm_path import launchpad_of

from fwspool.testing import jobflow_jobs as jf_jobs
from fwspool.testing.jobflow_twins import differences, job_store, run_online, run_state
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import Site, qlaunch_command
from fwspool.testing.waiting import wait_for

#: The twins' flows, each built afresh for every run (new job uuids; the comparison pairs them).
FLOWS: dict[str, Callable[[], Flow]] = {
    "chain with nested references": jf_jobs.nested_chain,
    "failing job and stop_children": jf_jobs.failing_and_stopping,
    "dynamic replace and addition": jf_jobs.dynamic,
    "blob over 16 MB in GridFS": jf_jobs.blob_and_reader,
}


def _qlaunch_r(site: Site, *more: str) -> list[str]:
    """FireWorks' own ``qlaunch -r rapidfire`` on the site, ``more`` options after it."""
    return qlaunch_command(
        site.launchpad_file, site.fw / "my_fworker.yaml", site.qadapter, "rapidfire", "--sleep", "1", *more
    )


#: The submission command of each offline twin: FireWorks' own, fwspool's.
SUBMIT = {
    "qlaunch -r": _qlaunch_r,
    "fwspool qlaunch": lambda site, *more: [
        str(site.fw / ".venv" / "bin" / "fwspool"),
        "qlaunch",
        *_qlaunch_r(site, *more)[1:],
    ],
}


#: The flows whose jobs add Fireworks. FireWorks' own rapidfire, left to stop when it sees no
#: work to come, can stop for good while the push writes such a completion (docs/jobflow.md):
#: it is told how many jobs to submit, as the docs say. ``fwspool qlaunch`` needs no count.
ADDS_FIREWORKS = {"dynamic replace and addition"}


def launch_dirs(lp: Any) -> list[str]:
    """The launch directories of a LaunchPad's launches, longest first (none a prefix of one left
    out of the comparison before it)."""
    dirs = {d["launch_dir"] for d in lp.launches.find({}, {"launch_dir": 1})}
    return sorted(dirs, key=len, reverse=True)


def fw_states(lp: Any) -> list[str]:
    return sorted(d["state"] for d in lp.fireworks.find({}, {"state": 1}))


@pytest.fixture(scope="module")
def online(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """The online run of a flow (FireWorks' rlaunch with database access), made once per module
    and flow, as :func:`run_state` reads it: the twin of both submission commands' runs."""
    made: dict[str, dict[str, Any]] = {}

    def of(flow_name: str) -> dict[str, Any]:
        if flow_name not in made:
            work = tmp_path_factory.mktemp("online")
            name = f"jf_online_{uuid.uuid4().hex[:8]}"
            lp = make_launchpad(mongo_uri, name)
            store = job_store(mongo_uri, name + "_js")
            try:
                lp.add_wf(flow_to_workflow(FLOWS[flow_name](), store=store))
                lp.to_file(str(work / "my_launchpad.yaml"))
                run_online(lp, work, str(work / "my_launchpad.yaml"))
                made[flow_name] = run_state(lp, store, (*launch_dirs(lp), name + "_js"))
            finally:
                lp.connection.drop_database(name)
                lp.connection.drop_database(name + "_js")
                lp.connection.close()
        return made[flow_name]

    return of


@pytest.mark.parametrize("flow_name", list(FLOWS))
@pytest.mark.parametrize("command", sorted(SUBMIT))
def test_each_flow_submitted_by_rapidfire_equals_its_online_twin(
    command: str, flow_name: str, site: Site, mongo_uri: str, db_name: str, online: Any
) -> None:
    """One rapidfire submits the whole flow, a job per Firework, each child once ``sync --watch``
    pushed its parent (its outputs in the JobStore and the output cache, then the completion);
    a failed or stopped parent's children never run; a replaced job's new Fireworks run too."""
    twin = online(flow_name)
    ends = sorted(fw["state"] for fw in twin["launchpad"]["fireworks"].values())
    lp = make_launchpad(*launchpad_of(site))
    store = job_store(mongo_uri, db_name + "_js")
    lp.add_wf(flow_to_workflow(FLOWS[flow_name](), store=store))
    site.start_sync()
    try:
        count = len(twin["launchpad"]["launches"])
        more = ("--nlaunches", str(count)) if command == "qlaunch -r" and flow_name in ADDS_FIREWORKS else ()
        res = site.as_user(SUBMIT[command](site, *more), cwd=site.runs)
        assert res.returncode == 0, res.stdout + res.stderr
        try:
            wait_for(lambda: fw_states(lp) == ends, 120, f"the online run's Firework states {ends}")
        except AssertionError as e:
            said = f"the submission said:\n{res.stdout[-3000:]}\nsync said:\n{site.log()[-3000:]}"
            raise AssertionError(f"{e}; here {fw_states(lp)}; {said}") from None
    finally:
        site.stop_sync()
    try:
        offline = run_state(lp, store, (*launch_dirs(lp), db_name + "_js"))
        diff = differences(offline, twin, {})
        assert not diff, "\n".join(diff[:20])
        assert len(lp.launches.distinct("launch_id")) == len(twin["launchpad"]["launches"])
    finally:
        lp.connection.drop_database(db_name + "_js")
