"""LaunchPads for tests and benchmarks: a fresh one, an uplink to it, `lpad recover_offline`, and
the snapshot that compares the LaunchPads of two twin runs field by field."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from fwspool.config import LaunchPadConfig
from fwspool.uplink import MongoUplink

__all__ = ["make_launchpad", "recover_offline", "snapshot", "throwaway_launchpad", "uplink_for"]


def make_launchpad(uri: str, name: str, *, reset: bool = True, listeners: Sequence[Any] = ()) -> Any:
    """A FireWorks LaunchPad on database ``name``; ``reset``: emptied, with FireWorks' own indexes.

    ``listeners``: pymongo command listeners on its client (to count what a pass sends).
    """
    from fireworks import LaunchPad

    kwargs: dict[str, Any] = {}
    if listeners:
        kwargs["mongoclient_kwargs"] = {"event_listeners": list(listeners)}
    lp = LaunchPad(host=uri, name=name, uri_mode=True, logdir=None, strm_lvl="ERROR", **kwargs)
    if reset:
        # reset() also runs tuneup(): FireWorks' indexes, without which the server scans collections.
        lp.reset("", require_password=False, max_reset_wo_password=10**9)
    return lp


@contextlib.contextmanager
def throwaway_launchpad(uri: str, name: str) -> Iterator[Any]:
    """A fresh LaunchPad whose database is dropped afterwards."""
    lp = make_launchpad(uri, name)
    try:
        yield lp
    finally:
        lp.connection.drop_database(name)
        lp.connection.close()


def uplink_for(uri: str, name: str, **kwargs: Any) -> MongoUplink:
    """What `fwspool push --uri URI --name NAME` connects with."""
    return MongoUplink(LaunchPadConfig({"host": uri, "uri_mode": True, "name": name}, "test"), **kwargs)


def recover_offline(lp: Any) -> None:
    """`lpad recover_offline`, as its command does it (fireworks/scripts/lpad_run.py), without
    the fworker filter."""
    for run in lp.offline_runs.find({"completed": False, "deprecated": False}, {"launch_id": 1}):
        lp.recover_offline(run["launch_id"], False, False)


_VOLATILE_FW = {"_id", "created_on", "updated_on"}


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
    """The LaunchPad's state, minus what legitimately differs between two runs (times, hosts,
    the launch directories ``dirs``, stack trace text)."""
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
