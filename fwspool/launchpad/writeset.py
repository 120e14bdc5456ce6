"""A bulk completion as data: every document it writes, so a crash halfway can be redone.

The completion is planned first (:mod:`fwspool.launchpad.completion`), as a :class:`WriteSet`
computed from documents read in bulk; the pusher saves it in the journal, then it is written;
the journal deletes it with the events' pushed mark. The next pass replays a leftover one
(:meth:`WriteSet.replay`), but only over the documents it was planned from: if another login
node's push or FireWorks itself wrote one of its workflows meanwhile (a broken lock), the write
set is abandoned and its launches' events are applied afresh by the next pass. Every Firework it
writes carries an undo mark until its workflow is written, so that another journal's push can take
a half-written completion back once its lock is broken (:mod:`fwspool.launchpad.undo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fwspool.failpoints import failpoint
from fwspool.launchpad.locks import LOCK_FIELD, unlock_token
from fwspool.launchpad.undo import UNDO_FIELD, UNDOING_FIELD
from fwspool.launchpad.vocabulary import Verdict

__all__ = ["BSON_PREFIX", "TAKEN_FIELD", "WriteSet"]

#: The field of the LaunchPad's ``fw_id_assigner`` document that says which write set took
#: Firework ids last, and which: ``[token, first, end]`` (FireWorks' own takes leave it as is).
TAKEN_FIELD = "fwspool_ids_taken"
#: The first bytes of a write set saved as BSON: Extended JSON, its earlier form, starts with '{'.
BSON_PREFIX = b"fwspool-bson\x00"


@dataclass(slots=True)
class WriteSet:
    """Every document one bulk completion writes, and what they must still be for it to write.

    Each write replaces a document only while it is still what the completion read (``prior_*``),
    so replaying is idempotent and never undoes what happened on the LaunchPad after the first
    attempt (a rocket that took a new READY Firework); workflows are written last and only while
    still locked by this run. The ids of new Fireworks are taken on the counter by the write
    itself (``new_ids``), so a push that dies before saving its write set wastes none.
    """

    launches: list[dict[str, Any]] = field(default_factory=list)
    fireworks: list[dict[str, Any]] = field(default_factory=list)
    workflows: list[dict[str, Any]] = field(default_factory=list)
    token: str = ""
    #: [launch_id, state] of each launch before the completion.
    prior_launches: list[list[Any]] = field(default_factory=list)
    #: [fw_id, state, updated_on] of each existing Firework before it; new Fireworks are not listed.
    prior_fireworks: list[list[Any]] = field(default_factory=list)
    #: [first, end): the Firework ids this completion gives new Fireworks; [] when none.
    new_ids: list[int] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """The write set as the journal keeps it: BSON, which gives back every value a LaunchPad
        document holds (datetimes, ObjectIds, 64-bit integers) as the database would, after
        :data:`BSON_PREFIX`. What BSON cannot encode (the database would refuse it too) is
        saved as canonical Extended JSON, as every write set was before BSON."""
        import bson

        data = self._as_document()
        try:
            return BSON_PREFIX + bson.encode(data)
        except (bson.errors.BSONError, OverflowError, ValueError):
            from bson import json_util

            return json_util.dumps(data, json_options=json_util.CANONICAL_JSON_OPTIONS).encode()

    def _as_document(self) -> dict[str, Any]:
        return {
            "launches": self.launches,
            "fireworks": self.fireworks,
            "workflows": self.workflows,
            "token": self.token,
            "prior_launches": self.prior_launches,
            "prior_fireworks": self.prior_fireworks,
            "new_ids": self.new_ids,
        }

    @classmethod
    def from_bytes(cls, data: bytes) -> WriteSet:
        """A write set from :meth:`to_bytes`, BSON or (saved before BSON) Extended JSON."""
        if data.startswith(BSON_PREFIX):
            import bson

            d = bson.decode(data[len(BSON_PREFIX) :])
        else:
            from bson import json_util

            d = json_util.loads(data.decode(), json_options=json_util.CANONICAL_JSON_OPTIONS)
        return cls(
            d["launches"],
            d["fireworks"],
            d["workflows"],
            d["token"],
            d.get("prior_launches", []),
            d.get("prior_fireworks", []),
            d.get("new_ids", []),
        )

    def replay(self, lp: Any) -> Verdict:
        """Finish what a dead push of this write set left undone, if it is still this one's to do.

        :attr:`~Verdict.WRITTEN` when its workflows are still as it left them (locked by its token, or
        already written by it); :attr:`~Verdict.WAITING` when someone else holds one of them now, or is
        taking this write set's half back (:mod:`fwspool.launchpad.undo`): try again next pass;
        :attr:`~Verdict.ABANDONED` when someone else wrote one since (its lock was broken, or it was
        written and then written again before the new Fireworks were promoted), or took its half
        back: replaying would write over theirs and duplicate its additions, so nothing is written,
        the new Fireworks it inserted that no workflow holds are removed, those a workflow holds
        get the state it gives them, its undo marks are removed, and the events stay pending.
        """
        self._retake_broken_locks(lp)
        verdict = self._workflows_verdict(lp)
        if verdict == Verdict.WRITTEN and not self.write(lp):
            verdict = Verdict.ABANDONED  # its new Fireworks' ids were taken: someone else completed it
        if verdict == Verdict.ABANDONED:
            self._remove_unheld_new_fireworks(lp)
            self._promote_held_new_fireworks(lp)
            self._unmark_fireworks(lp, [])
        if verdict != Verdict.WAITING:
            unlock_token(lp, self.token)
        return verdict

    def _retake_broken_locks(self, lp: Any) -> None:
        """Lock again, atomically, this write set's workflows whose lock was broken and that still
        carry its token: before the verdict, so that another journal's push cannot be taking
        this half-written completion back while it is written forward (:mod:`~fwspool.launchpad.undo`)."""
        lp.workflows.update_many(
            {
                "_id": {"$in": [d["_id"] for d in self.workflows]},
                LOCK_FIELD: self.token,
                "locked": {"$exists": False},
            },
            {"$set": {"locked": True}},
        )

    def _workflows_verdict(self, lp: Any) -> Verdict:
        """Whether its workflows are still this write set's to write (reads only)."""
        written_on = {d["_id"]: d.get("updated_on") for d in self.workflows}
        seen = 0
        for doc in lp.workflows.find(
            {"_id": {"$in": list(written_on)}},
            {"locked": 1, LOCK_FIELD: 1, UNDOING_FIELD: 1, "updated_on": 1},
        ):
            seen += 1
            if doc.get(LOCK_FIELD) == self.token:
                continue  # still ours: locked, or unlocked by hand and untouched since
            if doc.get("locked") or UNDOING_FIELD in doc:
                return Verdict.WAITING  # held, or being taken back (its taker died): not ours to touch
            if doc.get("updated_on") != written_on[doc["_id"]]:
                return Verdict.ABANDONED  # rewritten by someone else: FireWorks' writes drop our token
        return Verdict.WRITTEN if seen == len(written_on) else Verdict.ABANDONED

    def _new_fireworks(self) -> dict[int, tuple[Any, Any]]:
        """The Fireworks this write set adds, by id: their name and creation time, which tell
        them from Fireworks someone else gave the same ids."""
        if not self.new_ids:
            return {}
        first, end = self.new_ids
        return {
            d["fw_id"]: (d.get("name"), d.get("created_on"))
            for d in self.fireworks
            if first <= d["fw_id"] < end
        }

    def _remove_unheld_new_fireworks(self, lp: Any) -> None:
        """Remove the new Fireworks this write set inserted if no workflow holds them (a rocket
        would fizzle one: "Could not find workflow"). They are still WAITING: never promoted."""
        mine = self._new_fireworks()
        if not mine:
            return
        held = {
            n for wf in lp.workflows.find({"nodes": {"$in": list(mine)}}, {"nodes": 1}) for n in wf["nodes"]
        }
        unheld = [
            d["fw_id"]
            for d in lp.fireworks.find(
                {"fw_id": {"$in": list(mine)}, "state": "WAITING"}, {"fw_id": 1, "name": 1, "created_on": 1}
            )
            if d["fw_id"] not in held and mine[d["fw_id"]] == (d.get("name"), d.get("created_on"))
        ]
        if unheld:
            lp.fireworks.delete_many({"fw_id": {"$in": unheld}, "state": "WAITING"})

    def _promote_held_new_fireworks(self, lp: Any) -> None:
        """The new Fireworks this write set inserted that a workflow holds, still WAITING as
        inserted: the push died after writing their workflow and before promoting them, and
        someone wrote that workflow since (a verdict of :attr:`~Verdict.ABANDONED`). They get the state
        their workflow gives them, as the promotion would have; left WAITING, nobody would ever
        run them (the workflow says READY, the Firework WAITING)."""
        from pymongo import UpdateOne

        mine = self._new_fireworks()
        if not mine:
            return
        ops = []
        for wf in lp.workflows.find({"nodes": {"$in": list(mine)}}, {"nodes": 1, "fw_states": 1}):
            for fw_id in wf["nodes"]:
                state = (wf.get("fw_states") or {}).get(str(fw_id))
                if fw_id in mine and state not in (None, "WAITING"):
                    name, created_on = mine[fw_id]
                    ops.append(
                        UpdateOne(
                            {"fw_id": fw_id, "state": "WAITING", "name": name, "created_on": created_on},
                            {"$set": {"state": state}},
                        )
                    )
        if ops:
            lp.fireworks.bulk_write(ops, ordered=False)

    def write(self, lp: Any) -> bool:
        """Write what is not written yet. False (and nothing written) when the new Fireworks' ids
        were taken by someone else meanwhile: the completion must be computed again."""
        if self.new_ids and not self._take_ids(lp):
            return False
        self._write_launches(lp)
        failpoint("bulk.after_launches")
        self._write_fireworks(lp)
        failpoint("bulk.after_fireworks")
        self._write_workflows(lp)
        self._settle_fireworks(lp)
        return True

    def _write_launches(self, lp: Any) -> None:
        from pymongo import ReplaceOne

        if not self.launches:
            return
        prior_state = {lid: state for lid, state in self.prior_launches}
        lp.launches.bulk_write(
            [
                ReplaceOne(
                    {"launch_id": d["launch_id"], "state": prior_state[d["launch_id"]]}
                    if d["launch_id"] in prior_state
                    else {"launch_id": d["launch_id"]},
                    d,
                )
                for d in self.launches
            ],
            ordered=False,
        )

    def _write_fireworks(self, lp: Any) -> None:
        from pymongo import ReplaceOne, UpdateOne

        if not self.fireworks:
            return
        prior = {fw_id: (state, updated_on) for fw_id, state, updated_on in self.prior_fireworks}
        ops: list[Any] = []
        for d in self.fireworks:
            if d["fw_id"] in prior:
                state, updated_on = prior[d["fw_id"]]
                ops.append(ReplaceOne({"fw_id": d["fw_id"], "state": state, "updated_on": updated_on}, d))
            elif self.new_ids:
                # New: inserted once, never replaced (a rocket may have taken it since), and not
                # READY before its workflow holds it (below): a rocket must not run a Firework
                # no workflow knows, should this write die in between.
                rest = {k: v for k, v in d.items() if k != "fw_id"}
                rest["state"] = "WAITING"
                ops.append(UpdateOne({"fw_id": d["fw_id"]}, {"$setOnInsert": rest}, upsert=True))
            else:  # a write set saved before priors were recorded
                ops.append(ReplaceOne({"fw_id": d["fw_id"]}, d, upsert=True))
        lp.fireworks.bulk_write(ops, ordered=False)

    def _write_workflows(self, lp: Any) -> None:
        from pymongo import ReplaceOne

        if not self.workflows:
            return
        # Replacing the document drops `locked` and our token: the write is also the unlock.
        lp.workflows.bulk_write(
            [ReplaceOne({"_id": d["_id"], LOCK_FIELD: self.token}, d) for d in self.workflows],
            ordered=False,
        )

    def _settle_fireworks(self, lp: Any) -> None:
        """Once their workflow holds them: new Fireworks get their real state (READY...), and
        every Firework written loses its undo mark, in one command."""
        from pymongo import UpdateOne

        promote = [
            UpdateOne(
                {"fw_id": d["fw_id"], "state": "WAITING", "created_on": d.get("created_on")},
                {"$set": {"state": d["state"]}},
            )
            for d in self.fireworks
            if self.new_ids and d["fw_id"] >= self.new_ids[0] and d["state"] != "WAITING"
        ]
        if promote:
            failpoint("bulk.before_promote")
        self._unmark_fireworks(lp, promote)

    def _unmark_fireworks(self, lp: Any, also: list[Any]) -> None:
        """Remove this write set's undo marks from its Fireworks (with ``also``, in one write)."""
        from pymongo import UpdateMany

        marked = [d["fw_id"] for d in self.fireworks if UNDO_FIELD in d]
        if marked:
            also = [
                *also,
                UpdateMany(
                    {"fw_id": {"$in": marked}, f"{UNDO_FIELD}.token": self.token},
                    {"$unset": {UNDO_FIELD: ""}},
                ),
            ]
        if also:
            lp.fireworks.bulk_write(also, ordered=False)

    def _take_ids(self, lp: Any) -> bool:
        """Move the Firework id counter past ``new_ids``, unless someone else took them.

        The counter document records the last take (:data:`TAKEN_FIELD`) with the move, so that
        the replay of a write that died after its take knows the ids are its own."""
        first, end = self.new_ids
        mine = [self.token, first, end]
        if lp.fw_id_assigner.update_one(
            {"next_fw_id": first}, {"$set": {"next_fw_id": end, TAKEN_FIELD: mine}}
        ).matched_count:
            return True
        counter = lp.fw_id_assigner.find_one({}, {"next_fw_id": 1, TAKEN_FIELD: 1}) or {}
        if counter.get("next_fw_id", 0) < end:
            return False
        if counter.get(TAKEN_FIELD) == mine:
            return True  # taken by this write set's write that died, and no take of fwspool's since
        # Past them, and fwspool took ids since (or instead): the write that died took these if
        # Fireworks of its own are there. None there proves nothing: another push (or FireWorks'
        # _upsert_fws) may have taken them and not inserted yet. Then the completion is planned
        # again, and the ids, if they were ours, are a gap (as FireWorks leaves when it dies in
        # _upsert_fws).
        mine_by_id = self._new_fireworks()
        found = [
            mine_by_id.get(d["fw_id"]) == (d.get("name"), d.get("created_on"))
            for d in lp.fireworks.find(
                {"fw_id": {"$gte": first, "$lt": end}}, {"fw_id": 1, "name": 1, "created_on": 1}
            )
        ]
        return bool(found) and all(found)
