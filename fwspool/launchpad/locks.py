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

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from fwspool.launchpad.vocabulary import LockToken, lock_holder

__all__ = ["LOCK_FIELD", "LockWatch", "WorkflowLocks", "foreign_lock", "unlock_token"]

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


@dataclass
class LockWatch:
    """FireWorks' own workflow locks, as the login daemon sees them from one round to the next.

    The FireWorks calls the daemon makes to reserve and hand back (``reserve_fw``,
    ``cancel_reservation``) take a workflow's lock themselves and, when somebody holds it, wait
    up to ``WFLOCK_EXPIRATION_SECS`` (300 s) without a way to stop them. A process killed while
    holding one (the daemon itself, by ``kill -9`` or a reboot) leaves it for good, and the daemon
    then waited 300 s per call, round after round, deaf to SIGTERM. So the daemon makes no such
    call on a locked workflow: :meth:`look`, once a round (one query), names the Fireworks to
    leave for a later round. A lock seen held through FireWorks' own expiry is treated as
    FireWorks' config says a waiting ``WFLock`` treats it: ``WFLOCK_EXPIRATION_KILL: true``
    breaks it (as ``lpad admin unlock`` does), false (FireWorks' default) leaves it and says so
    once, with the command that breaks it. Locks a push of fwspool marked are not looked at:
    :class:`WorkflowLocks` knows its own.
    """

    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    #: None: FireWorks' ``WFLOCK_EXPIRATION_SECS`` and ``WFLOCK_EXPIRATION_KILL`` (FW_config.yaml).
    expire_secs: float | None = None
    kill: bool | None = None
    #: Each locked workflow's ``_id``: when it was first seen locked, without a break since.
    _since: dict[Any, float] = field(default_factory=dict)
    _reported: set[Any] = field(default_factory=set)

    def look(self, launchpad: Any) -> set[int]:
        """The Fireworks whose workflow FireWorks' lock holds now (after breaking expired ones
        where FireWorks' config says so): no reservation or hand-back touches them this round."""
        from fireworks import fw_config

        expire = fw_config.WFLOCK_EXPIRATION_SECS if self.expire_secs is None else self.expire_secs
        kill = fw_config.WFLOCK_EXPIRATION_KILL if self.kill is None else self.kill
        now = self.clock()
        docs = list(
            launchpad.workflows.find(
                {"locked": {"$exists": True}, LOCK_FIELD: {"$exists": False}}, {"nodes": 1}
            )
        )
        self._since = {wf["_id"]: self._since.get(wf["_id"], now) for wf in docs}
        self._reported &= set(self._since)
        busy: set[int] = set()
        for wf in docs:
            held = now - self._since[wf["_id"]]
            first = min(wf.get("nodes") or [0])
            if held >= expire and kill:
                # Only while it is still FireWorks' lock: a holder that let go meanwhile is not hit.
                broken = launchpad.workflows.update_one(
                    {"_id": wf["_id"], "locked": {"$exists": True}, LOCK_FIELD: {"$exists": False}},
                    {"$unset": {"locked": ""}},
                )
                del self._since[wf["_id"]]
                if broken.modified_count:
                    self.say(
                        f"workflow of Firework {first}: FireWorks' lock held for {held:.0f}s, past "
                        f"WFLOCK_EXPIRATION_SECS ({expire:g}s): broken, as WFLOCK_EXPIRATION_KILL says "
                        "(a process died holding it)"
                    )
                continue
            if held >= expire and wf["_id"] not in self._reported:
                self._reported.add(wf["_id"])
                self.say(
                    f"workflow of Firework {first}: FireWorks' lock held for {held:.0f}s, past "
                    f"WFLOCK_EXPIRATION_SECS ({expire:g}s); its Fireworks are neither reserved nor handed "
                    f"back until it is free (a process died holding it? `lpad admin unlock -i {first}` "
                    "breaks it)"
                )
            busy.update(int(n) for n in wf.get("nodes") or [])
        return busy
