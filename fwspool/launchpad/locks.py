"""FireWorks' workflow lock, taken for a bulk completion, as a context manager that owns its unlock.

FireWorks serialises writes to a workflow with a ``locked: True`` field on its document
(``WFLock``). A bulk completion takes that same lock on every workflow it completes, marking it
with :data:`LOCK_FIELD` = ``<owner>:<run token>`` so that it knows its own locks: a lock of the
same owner from an earlier run is one a pass of ours left when it died, and is reclaimed.

On leaving the ``with`` block every lock of this run is given back, except those
:meth:`WorkflowLocks.keep` names: the workflows of a write set already saved in the journal stay
locked until its replay writes (and so unlocks) them.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from fwspool.launchpad.vocabulary import LockToken, lock_holder

__all__ = ["LOCK_FIELD", "WorkflowLocks", "foreign_lock", "unlock_token"]

#: Workflow field naming who holds FireWorks' ``locked`` flag when fwspool set it:
#: ``<owner>:<run>`` (a :class:`~fwspool.launchpad.vocabulary.LockToken`); a lock of this owner
#: from an earlier run is stale and reclaimed.
LOCK_FIELD = "_fwspool_lock"


def unlock_token(launchpad: Any, token: str) -> None:
    """Give back every workflow lock of this token (a replayed write set's leftovers)."""
    launchpad.workflows.update_many({LOCK_FIELD: token}, {"$unset": {"locked": "", LOCK_FIELD: ""}})


def foreign_lock(launchpad: Any, owner: str, fw_id: int) -> str | None:
    """Who else holds the lock of this Firework's workflow ("FireWorks" when unmarked), or None.

    A lock of this owner is one a dead pass of ours left (no bulk completion of ours is running
    when this is asked): it is given back. Someone else's is never waited for, as FireWorks'
    WFLock would (300 s by default): the caller retries the launch next pass.
    """
    wf = launchpad.workflows.find_one({"nodes": fw_id}, {"locked": 1, LOCK_FIELD: 1})
    if wf is None:
        return None
    holder = lock_holder(wf.get(LOCK_FIELD))
    if holder is None:
        return "FireWorks" if wf.get("locked") else None
    if holder.of(owner):
        unlock_token(launchpad, str(holder))
        return None
    # Another journal's push holds it, or held it and died halfway with its lock broken
    # since: that half is taken back first (fwspool.launchpad.undo), never written over.
    return holder.owner


class WorkflowLocks:
    """The workflow locks of one bulk completion: ``with WorkflowLocks(lp, owner) as locks: ...``."""

    def __init__(self, launchpad: Any, owner: str) -> None:
        self.lp = launchpad
        self.owner = owner
        self.token = LockToken.new(owner)
        self._kept: list[Any] = []

    def __enter__(self) -> WorkflowLocks:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Whatever was not written (nothing to do, an error before the write set was saved):
        # give the locks back; a saved write set's workflows wait for its replay.
        try:
            self.lp.workflows.update_many(
                {LOCK_FIELD: str(self.token), "_id": {"$nin": self._kept}},
                {"$unset": {"locked": "", LOCK_FIELD: ""}},
            )
        except Exception:
            if exc is None:
                raise
            # The database failed already (that error is the one to report): the locks left are
            # this owner's, and its next pass reclaims them.

    def acquire(self, fw_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Lock the workflows of these Fireworks where nobody else holds them.

        Returns the workflow document of every Firework whose workflow this run now holds, read
        after locking; a Firework missing from the answer is in a workflow someone else holds
        (or held: a workflow still marked by another journal's push is never taken).
        """
        token = str(self.token)
        self.lp.workflows.update_many(
            {"nodes": {"$in": fw_ids}, "locked": {"$exists": False}, LOCK_FIELD: {"$exists": False}},
            {"$set": {"locked": True, LOCK_FIELD: token}},
        )
        wf_docs = list(self.lp.workflows.find({"nodes": {"$in": fw_ids}}))
        self._reclaim([wf for wf in wf_docs if self._left_by_earlier_run(wf)])
        return {n: wf for wf in wf_docs if wf.get(LOCK_FIELD) == token for n in wf["nodes"]}

    def keep(self, wf_ids: Iterable[Any]) -> None:
        """Leave these workflows locked on exit (their write set is saved; its replay unlocks)."""
        self._kept = list(wf_ids)

    def _left_by_earlier_run(self, wf: dict[str, Any]) -> bool:
        holder = lock_holder(wf.get(LOCK_FIELD))
        return holder is not None and holder.of(self.owner) and holder != self.token

    def _reclaim(self, stale: list[dict[str, Any]]) -> None:
        """Take over locks a pass of ours left when it died (one pusher per journal at a time)."""
        if not stale:
            return
        from pymongo import UpdateOne

        self.lp.workflows.bulk_write(
            [
                UpdateOne(
                    {"_id": wf["_id"], LOCK_FIELD: wf[LOCK_FIELD]},
                    {"$set": {"locked": True, LOCK_FIELD: str(self.token)}},
                )
                for wf in stale
            ],
            ordered=False,
        )
        for wf in stale:
            wf[LOCK_FIELD] = str(self.token)
