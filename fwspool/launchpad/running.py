"""The running phase, for many launches at once: what ``checkout_fw`` and ``ping_launch`` write.

A launch's started, ping, checkpoint and launch-dir events change its launch document
(:func:`fwspool.runs.running_phase` works out how, on the document as FireWorks writes it); its
Firework becomes RUNNING and its workflow's ``fw_states`` and state follow, as ``checkout_fw``
leaves them. All of it in bulk writes, each conditional on the document being what was read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fwspool.launchpad.fireworks_internals import refresh_workflow, workflow_state
from fwspool.launchpad.vocabulary import ApplyResult, Routed
from fwspool.runs import running_phase

__all__ = ["apply_running"]

#: Firework states that checkout_fw moves to RUNNING.
_RUNNABLE_FW_STATES = ["WAITING", "READY", "RESERVED", "FIZZLED"]


def apply_running(
    lp: Any,
    running: list[Routed],
    now: dt.datetime,
    result: ApplyResult,
    *,
    held: set[int] | frozenset[int] = frozenset(),
) -> None:
    """Apply the running phase of these launches (each with its LaunchPad document, and whether
    its events undo an inferred FIZZLED).

    The Fireworks in ``held`` (paused or defused by the user) keep their state: only their
    launches run, as FireWorks' own refresh leaves a held Firework.
    """
    from pymongo import ReplaceOne

    replaces: list[Any] = []
    running_fw_ids: set[int] = set()
    for launch, doc, reopen in ((r.launch, r.doc, r.reopen) for r in running):
        phase = running_phase(doc, launch.events, reopen=reopen)
        changed = phase.changed
        if changed is not None:
            # Optimistic: only if nobody changed the launch's state since we read it.
            replaces.append(ReplaceOne({"_id": doc["_id"], "state": doc["state"]}, changed))
        if phase.after["state"] == "RUNNING" and doc["fw_id"] not in held:
            running_fw_ids.add(doc["fw_id"])
    if replaces and lp.launches.bulk_write(replaces, ordered=False).matched_count != len(replaces):
        # A launch changed under us: re-apply everything next pass (idempotent).
        result.retry("some launches changed on the LaunchPad during the push; retrying next pass")
    else:
        for routed in running:
            result.ran(routed.launch)
    if running_fw_ids:
        mark_fireworks_running(lp, sorted(running_fw_ids), now)


def mark_fireworks_running(lp: Any, fw_ids: list[int], now: dt.datetime) -> None:
    """checkout_fw's Firework and workflow updates, in bulk: Firework RUNNING, workflow refreshed."""
    from pymongo import UpdateOne

    lp.fireworks.update_many(
        {"fw_id": {"$in": fw_ids}, "state": {"$in": _RUNNABLE_FW_STATES}},
        {"$set": {"state": "RUNNING", "updated_on": now.isoformat()}},
    )
    wanted = set(fw_ids)
    updates = []
    for wf in lp.workflows.find(
        {"nodes": {"$in": fw_ids}}, {"fw_states": 1, "links": 1, "nodes": 1, "locked": 1}
    ):
        states = {int(k): v for k, v in wf["fw_states"].items()}
        stale = [i for i in wf["nodes"] if i in wanted and states.get(i) != "RUNNING"]
        if not stale:
            continue
        for i in stale:
            states[i] = "RUNNING"
        wf_state = workflow_state(wf, states)
        if wf_state is None or wf.get("locked"):
            for i in stale:
                refresh_workflow(lp, i)  # FireWorks' own path for the rare complicated case
            continue
        update = {f"fw_states.{i}": "RUNNING" for i in stale}
        # The time as FireWorks stores it in MongoDB (``recursive_dict``: ``isoformat()``).
        update.update(state=wf_state, updated_on=now.isoformat())
        updates.append(UpdateOne({"_id": wf["_id"], "locked": {"$exists": False}}, {"$set": update}))
    if updates:
        lp.workflows.bulk_write(updates, ordered=False)
