"""``fwspool emit``: one event from a shell job script, appended to the launch's spool.

The event's fields come as JSON text (``--data``); what a script leaves out is filled in as
``fwspool rlaunch`` would record it: times are now (UTC), a ``started`` event's host and IP are
this node's, a ``completed`` event's partial FWAction gets FWAction's defaults.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import msgspec

from fwspool.errors import DataError, InputError
from fwspool.events import EVENT_CLASSES, Event, Record, utcnow
from fwspool.spool import DEFAULT_MAX_RECORD, SpoolWriter

#: The field each event type's time goes in, when the script does not give it.
_TIME_FIELDS = {
    "started": "started_on",
    "ping": "ping_time",
    "checkpoint": "ping_time",
    "completed": "completed_on",
}


def append_event(
    launch_dir: str,
    event_type: str,
    data_json: str | None = None,
    *,
    launch_id: int | None = None,
    fw_id: int | None = None,
    spool_mode: int = 0o600,
) -> tuple[Record, str]:
    """Append one ``event_type`` event built from ``data_json`` (:func:`build_event`) to a spool
    file of its own in ``launch_dir``; returns the record and the spool file's path.

    ``launch_id`` defaults to the one ``qlaunch -r`` wrote to ``FW_offline.json``, ``fw_id`` to
    the one in ``FW.json`` (None without one).
    """
    from fwspool.offline import read_fw_id
    from fwspool.rlaunch import read_launch_id

    launch_dir = os.path.abspath(launch_dir)
    if not os.path.isdir(launch_dir):
        raise InputError(f"launch directory {launch_dir} does not exist")
    if launch_id is None:
        launch_id = read_launch_id(launch_dir)
    if fw_id is None:
        # FW.json is written at reservation (`qlaunch -r`); without it the event has no fw_id.
        fw_id = read_fw_id(launch_dir, DEFAULT_MAX_RECORD)
    event = build_event(event_type, data_json)
    with SpoolWriter(launch_dir, launch_id, fw_id, mode=spool_mode) as writer:
        return writer.append(event), writer.path


def build_event(event_type: str, data_json: str | None) -> Event:
    """An event of ``event_type`` from ``--data`` JSON, filling in missing times with now."""
    try:
        data = json.loads(data_json) if data_json else {}
    except json.JSONDecodeError as exc:
        raise DataError(f"--data is not valid JSON: {exc}") from exc
    if event_type == "note":
        return EVENT_CLASSES["note"](data=data)
    if not isinstance(data, dict):
        raise DataError("--data must be a JSON object")
    if event_type in _TIME_FIELDS:
        data.setdefault(_TIME_FIELDS[event_type], utcnow().isoformat())
    if event_type == "started":
        from fireworks.utilities.fw_utilities import get_my_host, get_my_ip

        # As FireWorks' checkout_fw (and `fwspool rlaunch`): the node this runs on.
        data.setdefault("host", get_my_host())
        data.setdefault("ip", get_my_ip())
    if event_type == "completed":
        data["action"] = complete_action(data.get("action", {}))
    try:
        return msgspec.convert(data, EVENT_CLASSES[event_type], strict=False)
    except msgspec.ValidationError as exc:
        raise DataError(f"--data does not fit a {event_type} event: {exc}") from exc


def complete_action(action: Any) -> dict[str, Any]:
    """A whole FWAction dict from a partial one (``{"stored_data": {...}}``): the fields left out
    take FWAction's defaults, as in what `fwspool rlaunch` records, and the result must load with
    ``FWAction.from_dict`` (which needs every field), so a bad action fails here, not at the push."""
    from fireworks.core.firework import FWAction

    if not isinstance(action, dict):
        raise DataError("--data: a completed event's action must be a JSON object")
    full = {**json.loads(json.dumps(FWAction().to_dict())), **action}
    try:
        FWAction.from_dict(copy.deepcopy(full))
    except Exception as exc:  # FireWorks raises anything from KeyError to its own errors
        raise DataError(f"--data: the action is not a valid FWAction: {exc!r}") from exc
    return full
