"""FireWorks' own database documents of a Launch and a Firework, without the work they throw away.

``Launch.to_db_dict()`` serializes the whole Launch twice (``recursive_dict`` of ``to_dict()``,
whose result ``to_dict`` already serialized), and ``Firework.to_db_dict()`` serializes every
Launch of the Firework in full, to replace each by its id. A push writes a launch document per
launch and a Firework document per completion: these two functions give the same documents,
key for key and in the same order, at about half the cost. ``tests/test_fireworks_documents.py``
holds them to FireWorks' own methods (FireWorks is pinned to 2.1.x in pyproject.toml).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

__all__ = [
    "firework_db_dict",
    "launch_db_dict",
    "set_launch_state",
    "stored_action",
    "stored_fworker",
    "stored_launch_doc",
    "with_launch_times",
]


def launch_db_dict(launch: Any) -> dict[str, Any]:
    """``launch.to_db_dict()``: its ``to_dict()`` (already serialized: ``recursive_dict`` gives
    its own output back unchanged) and the times ``to_db_dict`` adds, serialized alone."""
    from fireworks.utilities.fw_serializers import recursive_dict

    m_d: dict[str, Any] = launch.to_dict()
    m_d["time_start"] = recursive_dict(launch.time_start)
    m_d["time_end"] = recursive_dict(launch.time_end)
    m_d["runtime_secs"] = recursive_dict(launch.runtime_secs)
    reserved = launch.reservedtime_secs
    if reserved:
        m_d["reservedtime_secs"] = recursive_dict(reserved)
    return m_d


class _LaunchId:
    """A Launch as ``recursive_dict`` serializes it inside ``Firework.to_dict()`` when only its
    id is kept: ``Firework.to_db_dict()`` replaces each launch of its ``to_dict()`` by the id."""

    __slots__ = ("launch_id",)

    def __init__(self, launch_id: Any) -> None:
        self.launch_id = launch_id

    def to_dict(self) -> Any:
        return self.launch_id


def firework_db_dict(firework: Any) -> dict[str, Any]:
    """``firework.to_db_dict()`` (a Firework or FireWorks' ``LazyFirework``), with its launches
    standing in as their ids while FireWorks' own ``to_db_dict`` runs, then put back."""
    fw = getattr(firework, "full_fw", firework)  # a LazyFirework loads its launches, as to_db_dict does
    launches, archived = fw.launches, fw.archived_launches
    fw.launches = [_LaunchId(launch.launch_id) for launch in launches]
    fw.archived_launches = [_LaunchId(launch.launch_id) for launch in archived]
    try:
        doc: dict[str, Any] = fw.to_db_dict()
    finally:
        fw.launches, fw.archived_launches = launches, archived
    return doc


# -- A launch document as FireWorks would write it back, without the Launch ----------------------
#
# The push reads a launch document from MongoDB, changes its history and writes it back. Through
# FireWorks that is ``Launch.from_dict(doc)`` then ``to_db_dict()``: every value read is parsed
# (``_recursive_load``: text that reads as a time becomes a datetime) and serialized again
# (``recursive_dict``: a datetime becomes ``isoformat()``), and the state setter appends a history
# entry when the state is not the last entry's. The functions below give the same document from
# the dict, in one walk; whatever they are not sure of (objects FireWorks would load by
# ``_fw_name``, values that are not JSON, a document FireWorks would complete with this
# machine's host or a new history entry) goes through FireWorks' own code instead.


class _NotPlain(Exception):
    """A value whose serialization only FireWorks' own code can say."""


@functools.lru_cache(maxsize=4096)
def _fireworks_time(text: str) -> Any:
    """``reconstitute_dates(text)``: the time FireWorks reads in a text, else the text. Cached:
    the same times come back every pass, for the history and for the times computed from it."""
    from fireworks.utilities.fw_serializers import reconstitute_dates

    return reconstitute_dates(text)


@functools.lru_cache(maxsize=4096)
def _stored_text(text: str) -> str:
    """A text as FireWorks writes it back: a time it can read as one, in ``isoformat()``;
    anything else as it was."""
    value = _fireworks_time(text)
    return value.isoformat() if isinstance(value, dt.datetime) else text


def _stored_value(value: Any) -> Any:
    """``recursive_dict(_recursive_load(value))`` for a JSON value read from MongoDB."""
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind is str:
        return _stored_text(value) if "T" in value else value  # FireWorks parses only text with a T
    if kind is int or kind is float:
        return value
    if kind is dict:
        if "_fw_name" in value or "@module" in value:
            raise _NotPlain  # FireWorks would load an object of its own, or monty's
        return {k: _stored_value(v) for k, v in value.items()}
    if kind is list:
        return [_stored_value(v) for v in value]
    raise _NotPlain


@functools.lru_cache(maxsize=256)
def _stored_query(query: str) -> str:
    import json

    from fireworks.utilities.fw_serializers import DATETIME_HANDLER

    return json.dumps(json.loads(query) or {}, default=DATETIME_HANDLER)


def stored_fworker(fworker: dict[str, Any]) -> dict[str, Any]:
    """``recursive_dict(FWorker.from_dict(fworker))``: a FireWorker as a launch document holds it
    (its query is JSON text, read and written again)."""
    try:
        query = fworker["query"]
        if type(query) is not str or ("T" in query and _stored_text(query) != query):
            raise _NotPlain
        env = fworker.get("env")
        return {
            "name": _stored_value(fworker["name"]),
            "category": _stored_value(fworker["category"]),
            "query": _stored_query(query),
            "env": _stored_value(env) if env else {},
        }
    except _NotPlain:
        from fireworks.core.fworker import FWorker
        from fireworks.utilities.fw_serializers import recursive_dict

        return recursive_dict(FWorker.from_dict(fworker))


def stored_action(action: dict[str, Any]) -> dict[str, Any]:
    """``recursive_dict(FWAction.from_dict(action))``: an action as a launch document holds it."""
    try:
        return _plain_action(action)
    except _NotPlain:
        from fireworks.core.firework import FWAction
        from fireworks.utilities.fw_serializers import recursive_dict

        return recursive_dict(FWAction.from_dict(action))


def _empty(value: Any) -> bool:
    return type(value) is list and not value


def _plain_action(action: dict[str, Any]) -> dict[str, Any]:
    """An action that adds no Fireworks (no additions, detours or appended workflows, which
    FireWorks loads as Workflows), as ``FWAction.__init__`` and ``to_dict`` leave it."""
    appended = action.get("append_wfs", [])
    if not (
        _empty(action["additions"]) and _empty(action["detours"]) and (appended is None or _empty(appended))
    ):
        raise _NotPlain
    stored, update, mod = action["stored_data"], action["update_spec"], action["mod_spec"]
    return {
        "stored_data": _stored_value(stored) if stored else {},
        "exit": _stored_value(action["exit"]),
        "update_spec": _stored_value(update) if update else {},
        "mod_spec": [] if mod is None else _stored_value(mod if type(mod) is list else [mod]),
        "additions": [],
        "detours": [],
        "append_wfs": [],
        "defuse_children": _stored_value(action["defuse_children"]),
        "defuse_workflow": _stored_value(action.get("defuse_workflow", False)),
        "propagate": _stored_value(action.get("propagate", False)),
    }


def stored_launch_doc(doc: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """``launch_db_dict(Launch.from_dict(doc))``: the launch document FireWorks would write back
    unchanged, key for key and in order (``now``: when a launch that never started is measured
    to, for ``reservedtime_secs``)."""
    try:
        stored = _plain_launch_dict(doc)
    except _NotPlain:
        from fireworks.core.firework import Launch

        stored = Launch.from_dict(doc).to_dict()
    return with_launch_times(stored, now)


def _plain_launch_dict(doc: dict[str, Any]) -> dict[str, Any]:
    """``Launch.from_dict(doc).to_dict()`` for a document FireWorks wrote: raises _NotPlain for
    one it would complete (default FireWorker, this machine's host or ip, a history entry)."""
    from fireworks.core.firework import Firework

    if not (doc["fworker"] and doc["host"] and doc["ip"]) or doc.get("trackers"):
        raise _NotPlain
    state = _stored_value(doc["state"])
    history = _stored_value(doc["state_history"])
    if state not in Firework.STATE_RANKS or not history or history[-1]["state"] != state:
        raise _NotPlain
    action = doc.get("action")
    if action and ("_fw_name" in action or "@module" in action):
        raise _NotPlain  # Launch.from_dict would load it as an object before FWAction.from_dict
    return {
        "fworker": stored_fworker(doc["fworker"]),
        "fw_id": _stored_value(doc["fw_id"]),
        "launch_dir": _stored_value(doc["launch_dir"]),
        "host": _stored_value(doc["host"]),
        "ip": _stored_value(doc["ip"]),
        "trackers": [],
        "action": stored_action(action) if action else None,
        "state": state,
        "state_history": history,
        "launch_id": _stored_value(doc["launch_id"]),
    }


def set_launch_state(doc: dict[str, Any], state: str, now: dt.datetime) -> None:
    """FireWorks' ``Launch.state`` setter on a launch document: a new state gets a history entry
    made ``now``, carrying the last entry's checkpoint (not into COMPLETED), and a RUNNING or
    RESERVED entry its ``updated_on``."""
    doc["state"] = state
    history = doc["state_history"]
    last = history[-1] if history else {}
    if last.get("state") == state:
        return
    entry: dict[str, Any] = {"state": state, "created_on": now.isoformat()}
    if state != "COMPLETED" and last.get("checkpoint"):
        entry["checkpoint"] = last["checkpoint"]
    if state in ("RUNNING", "RESERVED"):
        entry["updated_on"] = now.isoformat()
    history.append(entry)


def _history_time(text: str) -> dt.datetime:
    value = _fireworks_time(text)
    if not isinstance(value, dt.datetime):
        raise ValueError(f"not a time FireWorks reads: {text!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _first_time(history: list[dict[str, Any]], states: tuple[str, ...]) -> dt.datetime | None:
    """``Launch._get_time``: the creation time of the first entry in one of these states."""
    for entry in history:
        if entry["state"] in states:
            created = entry["created_on"]
            return None if created is None else _history_time(created)
    return None


def with_launch_times(doc: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The times ``Launch.to_db_dict()`` adds to a launch document, from its history (the time
    a launch that never started spent reserved is counted to ``now``)."""
    history = doc["state_history"]
    start = _first_time(history, ("RUNNING",))
    end = _first_time(history, ("COMPLETED", "FIZZLED"))
    reserved = _first_time(history, ("RESERVED",))
    doc["time_start"] = start.isoformat() if start else None
    doc["time_end"] = end.isoformat() if end else None
    doc["runtime_secs"] = (end - start).total_seconds() if start and end else None
    reserved_secs = ((start or now) - reserved).total_seconds() if reserved else None
    if reserved_secs:
        doc["reservedtime_secs"] = reserved_secs
    else:
        doc.pop("reservedtime_secs", None)
    return doc
