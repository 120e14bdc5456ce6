"""Undo marks: how any pusher takes back the half a dead bulk completion left behind a broken lock.

A bulk completion (:class:`~fwspool.launchpad.writeset.WriteSet`) writes launches, then
Fireworks, then their workflows. Killed after the Fireworks and before the workflows, it leaves
the completed Firework COMPLETED, its children's specs changed and its new Fireworks inserted
WAITING, with the workflow not yet holding any of it but still locked, marked with the dead
push's token (:data:`~fwspool.launchpad.locks.LOCK_FIELD`). Its own journal finishes the write on
its next push. But once somebody breaks that lock (``lpad admin unlock``), another journal's push
may come first, and FireWorks' refresh, seeing the Firework COMPLETED already, would apply no
FWAction: its additions and detours lost, the children waiting for good. Applying the action
again over the written Fireworks is no answer either: ``_push`` and ``_inc`` would count twice.

So every Firework a bulk completion writes carries an undo mark (:data:`UNDO_FIELD`) until its
workflow is written: the token of that completion, its workflow, and the fields to put back (a new
Firework's mark says only that it is new). Invariant: *a workflow still marked with a completion's
token is not written by it*; the workflow write drops the token. So a workflow whose lock is
broken (no ``locked``) but still carries another journal's token is half-written, and
:func:`take_back_broken_writes` takes the half back: it claims the workflow (one atomic update,
so the dead push's own redo and any other pusher find it held), restores the marked Fireworks,
deletes the new ones, and releases it. The LaunchPad is then as the completion found it, but with
the launch COMPLETED, which FireWorks' own refresh completes correctly (exactly once) whoever
pushes next. The dead push's redo, finding its token gone and the workflow not as it planned,
abandons its write set, and its events are applied afresh.

A claimed workflow records whose half it is taking back (:data:`UNDOING_FIELD`), so a taker that
dies midway is resumed by the next (its own journal first, anyone once its lock is broken too).
"""

from __future__ import annotations

from typing import Any

from fwspool.failpoints import failpoint
from fwspool.launchpad.locks import LOCK_FIELD
from fwspool.launchpad.vocabulary import LockToken, lock_holder

__all__ = ["UNDOING_FIELD", "UNDO_FIELD", "completion_in_flight", "take_back_broken_writes", "undo_mark"]

#: Firework field: ``{"token", "wf", "set", "unset"}`` for a Firework a bulk completion replaced,
#: ``{"token", "wf"}`` for one it inserted; removed once the completion's workflow is written.
UNDO_FIELD = "_fwspool_undo"
#: Workflow field: the token of the completion whose half is being taken back.
UNDOING_FIELD = "_fwspool_undoing"

_MISSING = object()


def undo_mark(token: str, wf_id: Any, prior: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The mark of a Firework document ``new`` that a bulk completion writes over ``prior``
    (None: a Firework it adds): what puts ``prior`` back. Only the fields that differ are kept."""
    if prior is None:
        return {"token": token, "wf": wf_id}
    restore = {k: v for k, v in prior.items() if k not in ("_id", UNDO_FIELD) and new.get(k, _MISSING) != v}
    added = sorted(k for k in new if k not in prior and k != UNDO_FIELD)
    return {"token": token, "wf": wf_id, "set": restore, "unset": added}


def completion_in_flight(lp: Any, query: dict[str, Any] | None = None) -> bool:
    """Whether a Firework matching ``query`` carries an undo mark: a bulk completion is being
    written (or a dead one waits for its redo or its taking back), and the Fireworks its
    FWAction adds are not READY yet while the Firework it completes is no longer RUNNING.

    FireWorks' ``future_run_exists`` answers False at that moment (nothing READY, nothing
    RUNNING or RESERVED with a WAITING child), so a ``rapidfire`` asking it alone would stop for
    good with the workflow half done."""
    return lp.fireworks.find_one({**(query or {}), UNDO_FIELD: {"$exists": True}}, {"_id": 1}) is not None


def take_back_broken_writes(lp: Any, owner: str, fw_ids: list[int]) -> list[str]:
    """Take back what a dead push of another journal half-wrote into these Fireworks' workflows
    and whose lock was broken since; returns one line per workflow taken back.

    Our own journal's half-written workflows are left to its redo (it runs first in a push);
    a workflow someone else is taking back right now (locked) is left to them.
    """
    if not fw_ids:
        return []
    broken = {LOCK_FIELD: {"$exists": True}, "locked": {"$exists": False}}
    notes = []
    for wf in lp.workflows.find(
        {"nodes": {"$in": fw_ids}, "$or": [broken, {UNDOING_FIELD: {"$exists": True}}]},
        {"nodes": 1, "locked": 1, LOCK_FIELD: 1, UNDOING_FIELD: 1},
    ):
        half_of = _half_to_take_back(wf, owner)
        if half_of is not None and _take_back(lp, owner, wf, half_of):
            notes.append(
                f"workflow of Firework {wf['nodes'][0]}: a push of journal {LockToken.parse(half_of).owner} "
                "died halfway and its lock was broken; its writes are taken back and its launches "
                "completed afresh"
            )
    return notes


def _half_to_take_back(wf: dict[str, Any], owner: str) -> str | None:
    """The token of the completion whose half-written workflow ``owner`` should take back now,
    or None: a taking back that died midway is resumed (unless another pusher holds it now);
    ``owner``'s own half is left to its redo; anyone else's, behind a broken lock, is taken."""
    holder = lock_holder(wf.get(LOCK_FIELD))
    ours = holder is not None and holder.of(owner)
    if UNDOING_FIELD in wf:
        return None if wf.get("locked") and not ours else str(wf[UNDOING_FIELD])
    return None if ours else str(wf.get(LOCK_FIELD) or "")


def _take_back(lp: Any, owner: str, wf: dict[str, Any], half_of: str) -> bool:
    """Claim the workflow as it was read, restore what ``half_of`` wrote, release it."""
    token = str(LockToken.new(owner))
    as_read = {
        "_id": wf["_id"],
        LOCK_FIELD: wf.get(LOCK_FIELD),
        "locked": wf.get("locked", {"$exists": False}),
    }
    claim = {"$set": {"locked": True, LOCK_FIELD: token, UNDOING_FIELD: half_of}}
    if not lp.workflows.update_one(as_read, claim).matched_count:
        return False  # somebody moved first: their redo, or another taker
    failpoint("undo.after_claim")
    _restore_fireworks(lp, half_of, wf["_id"], wf["nodes"])
    failpoint("undo.after_restore")
    lp.workflows.update_one(
        {"_id": wf["_id"], LOCK_FIELD: token}, {"$unset": {"locked": "", LOCK_FIELD: "", UNDOING_FIELD: ""}}
    )
    return True


def _restore_fireworks(lp: Any, half_of: str, wf_id: Any, nodes: list[int]) -> None:
    """Put back every Firework ``half_of`` marked for this workflow; delete those it added.

    Its new Fireworks have ids above every Firework of the workflow (they were drawn from the
    counter), and they are still WAITING: they are promoted only after their workflow is written.
    """
    from pymongo import DeleteOne, UpdateOne

    mine = {f"{UNDO_FIELD}.token": half_of, f"{UNDO_FIELD}.wf": wf_id}
    ops: list[Any] = []
    for d in lp.fireworks.find({"fw_id": {"$gte": min(nodes)}, **mine}, {"fw_id": 1, UNDO_FIELD: 1}):
        mark = d[UNDO_FIELD]
        if "set" not in mark:
            ops.append(DeleteOne({"fw_id": d["fw_id"], "state": "WAITING", **mine}))
            continue
        update: dict[str, Any] = {"$unset": {UNDO_FIELD: "", **dict.fromkeys(mark["unset"], "")}}
        if mark["set"]:
            update["$set"] = mark["set"]
        ops.append(UpdateOne({"fw_id": d["fw_id"], **mine}, update))
    if ops:
        lp.fireworks.bulk_write(ops, ordered=False)
