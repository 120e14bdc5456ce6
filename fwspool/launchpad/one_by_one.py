"""Completion one launch at a time, through FireWorks' own ``LaunchPad.complete_launch``.

The path for what bulk completion does not take: a launch that was completed before (a push
that died before marking the journal: the idempotent re-check), a launch several Fireworks share
(FireWorks' duplicate detection), an action too large for a bulk write (FireWorks spills it to
GridFS). Afterwards the real ``completed_on`` replaces the push's time in the state history,
``time_end`` and ``runtime_secs``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fwspool.events import FINAL_STATES
from fwspool.fireworks_documents import stored_launch_doc, with_launch_times
from fwspool.launchpad.fireworks_internals import refresh_workflow
from fwspool.launchpad.locks import foreign_lock
from fwspool.launchpad.supersede import HELD_FW_STATES, SUPERSEDING_FW_STATES
from fwspool.launchpad.vocabulary import ApplyResult, Routed
from fwspool.runs import Final, LaunchEvents, changed_launch_doc, stamp_completion

__all__ = ["complete_one_by_one", "record_completion_time"]


def complete_one_by_one(lp: Any, owner: str, routed: Routed, result: ApplyResult) -> None:
    """A launch that ends in this batch (or has ended): running phase, then FireWorks' completion.

    Nothing is applied while someone else holds the workflow's lock (another login node's push,
    perhaps one that died halfway): its events wait for the next pass, instead of FireWorks'
    WFLock waiting minutes or this pass marking them applied over a half-written workflow.
    """
    launch, doc = routed.launch, routed.doc
    changed = changed_launch_doc(doc, launch.events) if doc["state"] not in FINAL_STATES else None
    if changed is not None:
        lp.launches.replace_one({"_id": doc["_id"], "state": doc["state"]}, changed)
    final = routed.reading.final
    if final is None:
        result.applied(launch)
    elif _complete(lp, owner, launch, final, result):
        result.completed(launch)


def _complete(lp: Any, owner: str, launch: LaunchEvents, final: Final, result: ApplyResult) -> bool:
    """FireWorks' ``complete_launch`` unless done already, the Firework caught up, the real
    completion time recorded; False when the launch is superseded or waits for the next pass."""
    from fireworks.core.firework import FWAction

    lid = launch.launch_id
    current = lp.launches.find_one({"launch_id": lid}, {"state": 1, "fw_id": 1})
    if current["state"] in FINAL_STATES and current["state"] != final.state:
        result.superseded(launch, f"launch {lid} is already {current['state']} on the LaunchPad")
        return False
    holder = foreign_lock(lp, owner, current["fw_id"])
    if holder is not None:
        result.retry(
            f"workflow of Firework {current['fw_id']} is locked by {holder}; launch {lid} is retried next pass"
        )
        return False
    if current["state"] != final.state:
        lp.complete_launch(lid, FWAction.from_dict(final.action), final.state)
    if not _firework_caught_up(lp, current["fw_id"], final.state):
        result.retry(f"workflow of Firework {current['fw_id']} is locked; launch {lid} is retried next pass")
        return False
    record_completion_time(lp, lid, final.state, final.completed_on)
    return True


def _firework_caught_up(lp: Any, fw_id: int, state: str) -> bool:
    """Whether the Firework shows its launch's end, refreshing its workflow once if not.

    It does not when the launch was completed by a push that died before marking the journal,
    or the workflow was locked during complete_launch: FireWorks' own refresh then catches up.
    """
    if _settled(lp, fw_id, state):
        return True
    refresh_workflow(lp, fw_id)
    return _settled(lp, fw_id, state)


def _settled(lp: Any, fw_id: int, state: str) -> bool:
    """The Firework shows its launch's end, and its workflow, unlocked, agrees."""
    fw = lp.fireworks.find_one({"fw_id": fw_id}, {"state": 1})
    if fw is None:
        return True
    if fw.get("state") not in (state, *HELD_FW_STATES, *SUPERSEDING_FW_STATES):
        return False
    wf = lp.workflows.find_one({"nodes": fw_id}, {"locked": 1, f"fw_states.{fw_id}": 1})
    return wf is None or (not wf.get("locked") and (wf.get("fw_states") or {}).get(str(fw_id)) == fw["state"])


def record_completion_time(lp: Any, launch_id: int, state: str, completed_on: dt.datetime) -> None:
    """The real completion time in the history, time_end and runtime_secs (idempotent)."""
    doc = lp.launches.find_one({"launch_id": launch_id}, {"action": 0})
    now = dt.datetime.now(dt.UTC)
    new = stored_launch_doc(doc, now)
    stamp_completion(new["state_history"], state, completed_on)
    with_launch_times(new, now)
    fields = {k: new.get(k) for k in ("state_history", "time_end", "runtime_secs")}
    if any(doc.get(k) != v for k, v in fields.items()):
        lp.launches.update_one({"launch_id": launch_id, "state": state}, {"$set": fields})
