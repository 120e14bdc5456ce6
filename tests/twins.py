"""Twin LaunchPads: the same workflow run once through FireWorks' own offline path
(``rlaunch singleshot --offline`` + ``recover_offline``) and once through fwspool
(``fwspool rlaunch`` + ingest + push), and a field-by-field comparison of the results."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from fwspool.config import LaunchPadConfig
from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.push import Pusher
from fwspool.uplink import MongoUplink

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = TESTS_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return env


def reserve_offline(lp: Any, launch_dir: str, fw_id: int | None = None) -> tuple[int, int]:
    """What `qlaunch -r` does for one job: reserve, write FW.json + FW_offline.json, register."""
    from fireworks import FWorker
    from fireworks.queue.queue_launcher import setup_offline_job

    os.makedirs(launch_dir, exist_ok=True)
    fw, launch_id = lp.checkout_fw(FWorker(), launch_dir, fw_id=fw_id, state="RESERVED")
    assert fw is not None, "nothing READY to reserve"
    cwd = os.getcwd()
    os.chdir(launch_dir)
    try:
        setup_offline_job(lp, fw, launch_id)
    finally:
        os.chdir(cwd)
    return fw.fw_id, launch_id


def run_fireworks_offline(launch_dir: str) -> subprocess.CompletedProcess[str]:
    rlaunch = os.path.join(os.path.dirname(sys.executable), "rlaunch")
    return subprocess.run(
        [rlaunch, "singleshot", "--offline"],
        cwd=launch_dir,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_fwspool(launch_dir: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fwspool.cli", "rlaunch", *extra],
        cwd=launch_dir,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def recover_all(lp: Any) -> None:
    """`lpad recover_offline`, as its command does it."""
    for run in lp.offline_runs.find({"completed": False, "deprecated": False}, {"launch_id": 1}):
        lp.recover_offline(run["launch_id"], False, False)


def uplink_for(uri: str, name: str, **kwargs: Any) -> MongoUplink:
    return MongoUplink(LaunchPadConfig({"host": uri, "uri_mode": True, "name": name}, "test"), **kwargs)


def ingest_and_push(journal_path: str, uri: str, name: str, roots: tuple[str, ...] = ()) -> Any:
    with Journal.open(journal_path) as journal:
        Ingester(journal, roots=roots).run_pass()
        uplink = uplink_for(uri, name)
        try:
            return Pusher(journal, uplink).run_pass()
        finally:
            uplink.close()


_VOLATILE_FW = {"_id", "created_on", "updated_on"}
_VOLATILE_LAUNCH = {
    "_id",
    "host",
    "ip",
    "time_start",
    "time_end",
    "time_reserved",
    "runtime_secs",
    "reservedtime_secs",
    "launch_dir",
    "fworker",
}


def _strip_paths(value: Any, dirs: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _strip_paths(v, dirs) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_paths(v, dirs) for v in value]
    if isinstance(value, str):
        for d in dirs:
            value = value.replace(d, "<launch_dir>")
        return value
    return value


def _drop_times(value: Any) -> Any:
    """Creation times inside an FWAction's additions/detours are those of two different runs."""
    if isinstance(value, dict):
        return {k: _drop_times(v) for k, v in value.items() if k not in ("created_on", "updated_on")}
    if isinstance(value, list):
        return [_drop_times(v) for v in value]
    return value


def _drop_stacktrace(action: Any) -> Any:
    if isinstance(action, dict) and isinstance(action.get("stored_data"), dict):
        exc = action["stored_data"].get("_exception")
        if isinstance(exc, dict):
            exc = dict(exc, _stacktrace="<stacktrace>")
            action = dict(action, stored_data=dict(action["stored_data"], _exception=exc))
    return action


def snapshot(lp: Any, dirs: tuple[str, ...] = ()) -> dict[str, Any]:
    """The LaunchPad's state, minus what legitimately differs between two runs."""
    fws = {}
    for d in lp.fireworks.find({}, sort=[("fw_id", 1)]):
        fws[d["fw_id"]] = _strip_paths({k: v for k, v in d.items() if k not in _VOLATILE_FW}, dirs)
    launches = {}
    for d in lp.launches.find({}, sort=[("launch_id", 1)]):
        launches[d["launch_id"]] = {
            "fw_id": d["fw_id"],
            "state": d["state"],
            "states": [h["state"] for h in d.get("state_history", [])],
            "action": _drop_times(_strip_paths(_drop_stacktrace(d.get("action")), dirs)),
        }
    wfs = []
    for d in lp.workflows.find({}, sort=[("nodes", 1)]):
        wfs.append(
            {
                "nodes": sorted(d["nodes"]),
                "links": d["links"],
                "fw_states": d["fw_states"],
                "state": d["state"],
                "name": d.get("name"),
            }
        )
    runs = sorted((r["launch_id"], r["completed"], r["deprecated"]) for r in lp.offline_runs.find({}))
    return {"fireworks": fws, "launches": launches, "workflows": wfs, "offline_runs": runs}
