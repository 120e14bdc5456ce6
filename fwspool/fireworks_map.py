"""How journal events become LaunchPad state, the way FireWorks itself would write it.

Completion goes through FireWorks' own ``LaunchPad.complete_launch`` (so FWActions, additions,
detours, update_spec, mod_spec and defusing are applied by FireWorks' code), then the real
``completed_on`` is written into the state history, ``time_end`` and ``runtime_secs``. The
running phase (started, pings, checkpoints, launch-dir changes) is what ``checkout_fw``,
``ping_launch`` and ``change_launch_dir`` do, applied for many launches at once with bulk writes.

Every application is idempotent, which is what makes push exactly-once without transactions:
the journal marks an event pushed only after the database acknowledged it, and if a crash falls
between the two, applying the event again changes nothing (a final launch is not completed
twice; a Firework whose launch is final but whose workflow was not refreshed is refreshed, once,
by FireWorks' own refresh, which applies an FWAction only when the Firework's state changes).

Events are not applied when the LaunchPad moved on meanwhile (FireWorks issue #326): the
Firework was rerun (the launch is no longer one of its current launches), defused, paused or
archived, or the offline run was forgotten with ``lpad forget_offline``. Those events are
*superseded*.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import bson

from fwspool.events import FINAL_STATES
from fwspool.failpoints import failpoint
from fwspool.runs import INFERRED_KEYS, LaunchEvents, PendingEvent, apply_running_phase, final_of, reopens

__all__ = ["ApplyResult", "LaunchEvents", "LaunchPadApplier", "PendingEvent", "WriteSet"]

#: Firework states in which a launch's results no longer belong on the LaunchPad.
_SUPERSEDING_FW_STATES = ("DEFUSED", "PAUSED", "ARCHIVED")
#: Firework states that checkout_fw moves to RUNNING.
_RUNNABLE_FW_STATES = ["WAITING", "READY", "RESERVED", "FIZZLED"]


@dataclass(slots=True)
class ApplyResult:
    #: (event_id, outcome, detail): outcome is "applied", "superseded" or "skipped".
    outcomes: list[tuple[str, str, str | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    completed_launches: list[int] = field(default_factory=list)
    superseded_launches: list[int] = field(default_factory=list)
    touched_launches: list[int] = field(default_factory=list)
    #: Reservations handed back (``released`` events): the Firework is READY again.
    released_launches: list[int] = field(default_factory=list)


def same_launch(batch: LaunchEvents, doc: dict[str, Any]) -> bool:
    """Whether the LaunchPad's launch of this id is the one the inbox announced (same directory)."""
    import os

    if not batch.announced_dirs or not doc.get("launch_dir"):
        return True
    here = os.path.realpath(doc["launch_dir"])
    return any(os.path.realpath(d) == here for d in batch.announced_dirs)


def superseded_reason(
    launch: dict[str, Any], fw: dict[str, Any] | None, offline_run: dict[str, Any] | None
) -> str | None:
    """Why a launch's events must not be applied any more, or None when they may be."""
    if fw is None:
        return f"Firework {launch.get('fw_id')} is no longer on the LaunchPad"
    if launch["launch_id"] not in (fw.get("launches") or []):
        return f"launch {launch['launch_id']} is no longer Firework {fw['fw_id']}'s current launch (rerun?)"
    if fw.get("state") in _SUPERSEDING_FW_STATES:
        return f"Firework {fw['fw_id']} is {fw['state']} on the LaunchPad"
    if offline_run is not None and offline_run.get("deprecated"):
        return f"offline run of launch {launch['launch_id']} was forgotten on the LaunchPad (forget_offline)"
    return None


def _iso_fw(value: dt.datetime) -> str:
    """A time the way FireWorks stores it in MongoDB (``recursive_dict``: ``isoformat()``)."""
    return value.isoformat()


def workflow_state(wf_doc: dict[str, Any], fw_states: dict[int, str]) -> str | None:
    """FireWorks' own ``Workflow.state`` computed from a workflow document's fw_states and links.

    Returns None when the computation needs the Fireworks themselves (a FIZZLED Firework whose
    children may allow fizzled parents); the caller then refreshes through FireWorks.
    """
    from fireworks.core.firework import Workflow

    links = {int(k): v for k, v in (wf_doc.get("links") or {}).items()}
    leaves = [fw_id for fw_id, children in links.items() if not children]
    shim = SimpleNamespace(fw_states=fw_states, leaf_fw_ids=leaves, links=links)
    try:
        return str(Workflow.state.fget(shim))
    except AttributeError:
        return None


#: Workflow field naming who holds FireWorks' ``locked`` flag when fwspool set it:
#: ``<owner>:<run>``; a lock of this owner from an earlier run is stale and reclaimed.
LOCK_FIELD = "_fwspool_lock"
#: Launch documents larger than this go through FireWorks' own complete_launch (GridFS spill).
_MAX_BULK_DOC = 12 * 1024 * 1024


class _Prefetched:
    """A read-only stand-in for a pymongo collection over documents already fetched in bulk.

    It answers the two query shapes FireWorks' ``LazyFirework`` uses (``find_one({key: v})`` and
    ``find({key: {"$in": [...]}})``), so FireWorks' own Workflow code runs on it unchanged.
    """

    def __init__(self, docs: dict[int, dict[str, Any]], key: str) -> None:
        self.docs = docs
        self.key = key

    def find_one(self, filter: dict[str, Any], projection: Any = None, **_: Any) -> dict[str, Any] | None:
        doc = self.docs.get(filter[self.key])
        return copy.deepcopy(doc) if doc is not None else None

    def find(self, filter: dict[str, Any], projection: Any = None, **_: Any) -> list[dict[str, Any]]:
        wanted = filter[self.key]["$in"]
        return [copy.deepcopy(self.docs[k]) for k in sorted(wanted) if k in self.docs]


@dataclass(slots=True)
class WriteSet:
    """Every document one bulk completion writes, so a crash halfway can be redone.

    The pusher stores it in the journal before writing and deletes it with the events' pushed
    mark; the next pass replays a leftover one. Each write replaces a document only while it is
    still what the completion read (``prior_*``), so replaying is idempotent and never undoes what
    happened on the LaunchPad after the first attempt (a rocket that took a new READY Firework);
    workflows are written last and only while still locked by this run. The ids of new Fireworks
    are taken on the counter by the write itself (``new_ids``), so a push that dies before saving
    its write set wastes none.
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
        from bson import json_util

        data = {
            "launches": self.launches,
            "fireworks": self.fireworks,
            "workflows": self.workflows,
            "token": self.token,
            "prior_launches": self.prior_launches,
            "prior_fireworks": self.prior_fireworks,
            "new_ids": self.new_ids,
        }
        return json_util.dumps(data, json_options=json_util.CANONICAL_JSON_OPTIONS).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> WriteSet:
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

    def write(self, lp: Any) -> bool:
        """Write what is not written yet. False (and nothing written) when the new Fireworks' ids
        were taken by someone else meanwhile: the completion must be computed again."""
        from pymongo import ReplaceOne, UpdateOne

        if self.new_ids and not self._take_ids(lp):
            return False
        if self.launches:
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
        failpoint("bulk.after_launches")
        if self.fireworks:
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
        failpoint("bulk.after_fireworks")
        if self.workflows:
            # Replacing the document drops `locked` and our token: the write is also the unlock.
            lp.workflows.bulk_write(
                [ReplaceOne({"_id": d["_id"], LOCK_FIELD: self.token}, d) for d in self.workflows],
                ordered=False,
            )
        promote = [
            d
            for d in self.fireworks
            if self.new_ids and d["fw_id"] >= self.new_ids[0] and d["state"] != "WAITING"
        ]
        if promote:
            failpoint("bulk.before_promote")
            lp.fireworks.bulk_write(
                [
                    UpdateOne(
                        {"fw_id": d["fw_id"], "state": "WAITING", "created_on": d.get("created_on")},
                        {"$set": {"state": d["state"]}},
                    )
                    for d in promote
                ],
                ordered=False,
            )
        return True

    def _take_ids(self, lp: Any) -> bool:
        """Move the Firework id counter past ``new_ids``, unless someone else took them."""
        first, end = self.new_ids
        if lp.fw_id_assigner.update_one({"next_fw_id": first}, {"$set": {"next_fw_id": end}}).matched_count:
            return True
        counter = (lp.fw_id_assigner.find_one({}, {"next_fw_id": 1}) or {}).get("next_fw_id", 0)
        if counter < end:
            return False
        # Past them: taken by the write that died, if the Fireworks with these ids are ours.
        mine = {d["fw_id"]: (d.get("name"), d.get("created_on")) for d in self.fireworks}
        return all(
            mine.get(d["fw_id"]) == (d.get("name"), d.get("created_on"))
            for d in lp.fireworks.find(
                {"fw_id": {"$gte": first, "$lt": end}}, {"fw_id": 1, "name": 1, "created_on": 1}
            )
        )


class LaunchPadApplier:
    """Applies batches of journal events to one FireWorks LaunchPad."""

    def __init__(self, launchpad: Any, owner: str = "fwspool") -> None:
        self.lp = launchpad
        #: Identifies this pusher's workflow locks (one pusher per journal at a time).
        self.owner = owner

    def apply(
        self, batches: list[LaunchEvents], now: dt.datetime, redo: Callable[[bytes], None] | None = None
    ) -> ApplyResult:
        """Apply the pending events of these launches. ``redo`` receives the serialized write set of
        the bulk completion before it is written (see :class:`WriteSet`); None skips saving it."""
        from fireworks.core.firework import Launch
        from pymongo import ReplaceOne, UpdateOne

        lp = self.lp
        result = ApplyResult()
        lids = [b.launch_id for b in batches]
        launch_docs = {
            d["launch_id"]: d for d in lp.launches.find({"launch_id": {"$in": lids}}, {"action": 0})
        }
        fw_ids = sorted({d["fw_id"] for d in launch_docs.values()})
        fw_docs = {
            d["fw_id"]: d
            for d in lp.fireworks.find({"fw_id": {"$in": fw_ids}}, {"fw_id": 1, "state": 1, "launches": 1})
        }
        offline = {
            d["launch_id"]: d
            for d in lp.offline_runs.find({"launch_id": {"$in": lids}}, {"launch_id": 1, "deprecated": 1})
        }
        reopen = self._reopened(batches, launch_docs)
        if reopen:
            # Undoing the inferred end keeps it in interrupted_runs: read the action too.
            launch_docs.update(
                (d["launch_id"], d) for d in lp.launches.find({"launch_id": {"$in": sorted(reopen)}})
            )
        releasing: list[tuple[LaunchEvents, dict[str, Any]]] = []
        running_replaces: list[Any] = []
        running_outcomes: list[tuple[str, str, str | None]] = []
        running_fw_ids: set[int] = set()
        sequential: list[tuple[LaunchEvents, dict[str, Any]]] = []
        ending: list[tuple[LaunchEvents, dict[str, Any], tuple[str, dict[str, Any], dt.datetime]]] = []
        for batch in batches:
            doc = launch_docs.get(batch.launch_id)
            if doc is None:
                result.problems.append(
                    f"launch {batch.launch_id} is not on this LaunchPad: its {len(batch.events)} events stay pending"
                )
                continue
            if not same_launch(batch, doc):
                result.problems.append(
                    f"launch {batch.launch_id} on this LaunchPad runs in {doc.get('launch_dir')}, but the inbox "
                    f"announced it in {', '.join(batch.announced_dirs)}: another LaunchPad's launch? Its events "
                    "stay pending (give each LaunchPad its own FWSPOOL_INBOX, then `fwspool forget --launch-id`)"
                )
                continue
            fw = fw_docs.get(doc["fw_id"])
            reason = superseded_reason(doc, fw, offline.get(batch.launch_id))
            if reason is not None:
                result.outcomes.extend((e.event_id, "superseded", reason) for e in batch.events)
                result.superseded_launches.append(batch.launch_id)
                continue
            if any(e.type == "released" for e in batch.events):
                releasing.append((batch, doc))
                continue
            if doc.get("state") in FINAL_STATES and batch.launch_id not in reopen:
                sequential.append((batch, doc))  # applied before: the idempotent re-check
                continue
            final = final_of(batch)
            if final is not None:
                ending.append((batch, doc, final))
                continue
            launch_obj = Launch.from_dict(doc)
            if apply_running_phase(launch_obj, batch.events, reopen=batch.launch_id in reopen):
                new_doc = launch_obj.to_db_dict()
                # Optimistic: only if nobody changed the launch's state since we read it.
                running_replaces.append(ReplaceOne({"_id": doc["_id"], "state": doc["state"]}, new_doc))
            if launch_obj.state == "RUNNING":
                running_fw_ids.add(doc["fw_id"])
            running_outcomes.extend(
                (e.event_id, "skipped" if e.type == "note" else "applied", None) for e in batch.events
            )
            result.touched_launches.append(batch.launch_id)
        if running_replaces:
            res = lp.launches.bulk_write(running_replaces, ordered=False)
            if res.matched_count != len(running_replaces):
                # A launch changed under us: re-apply everything next pass (idempotent).
                result.problems.append(
                    "some launches changed on the LaunchPad during the push; retrying next pass"
                )
                running_outcomes = []
                result.touched_launches = []
        result.outcomes.extend(running_outcomes)
        if running_fw_ids:
            self._mark_fireworks_running(sorted(running_fw_ids), now, UpdateOne)
        if ending:
            sequential.extend(self._complete_in_bulk(ending, now, result, redo, reopen))
        for batch, doc in sequential:
            self._apply_sequential(batch, doc, now, result)
        for batch, doc in releasing:
            self._release(batch, doc, result)
        if result.completed_launches:
            lp.offline_runs.update_many(
                {"launch_id": {"$in": result.completed_launches}},
                {"$set": {"completed": True}},
            )
        if result.superseded_launches:
            # recover_offline would otherwise clobber the LaunchPad with these (FireWorks #326).
            lp.offline_runs.update_many(
                {"launch_id": {"$in": result.superseded_launches}, "deprecated": False},
                {"$set": {"deprecated": True}},
            )
        touched = result.touched_launches + result.completed_launches
        if touched:
            lp.offline_runs.update_many(
                {"launch_id": {"$in": touched}}, {"$set": {"updated_on": now.isoformat()}}
            )
        return result

    def _reopened(
        self, batches: list[LaunchEvents], launch_docs: dict[int, dict[str, Any]]
    ) -> frozenset[int]:
        """The launches FIZZLED by fwspool's own inference (an exit, a lost job) that these events
        reopen: a requeued job's new run, or the real result arriving late (fwspool.runs)."""
        candidates = [
            b.launch_id
            for b in batches
            if (launch_docs.get(b.launch_id) or {}).get("state") == "FIZZLED"
            and any(e.type in ("started", "completed") for e in b.events)
        ]
        if not candidates:
            return frozenset()
        actions = {
            d["launch_id"]: d.get("action")
            for d in self.lp.launches.find(
                {"launch_id": {"$in": candidates}},
                {"launch_id": 1, **{f"action.stored_data.{k}": 1 for k in INFERRED_KEYS}},
            )
        }
        by_id = {b.launch_id: b for b in batches}
        return frozenset(lid for lid in candidates if reopens("FIZZLED", actions.get(lid), by_id[lid]))

    def _release(self, batch: LaunchEvents, doc: dict[str, Any], result: ApplyResult) -> None:
        """Hand a reservation that will never run back, as FireWorks does after a failed
        submission: ``cancel_reservation`` (the Firework READY again) and ``forget_offline``."""
        lid = batch.launch_id
        if doc.get("state") != "RESERVED":
            reason = f"launch {lid} is {doc.get('state')} on the LaunchPad, not RESERVED: it is not released"
            result.outcomes.extend((e.event_id, "superseded", reason) for e in batch.events)
            return
        self.lp.cancel_reservation(lid)
        self.lp.forget_offline(lid, launch_mode=True)
        result.released_launches.append(lid)
        result.outcomes.extend(
            (e.event_id, "skipped" if e.type == "note" else "applied", None) for e in batch.events
        )

    def _mark_fireworks_running(self, fw_ids: list[int], now: dt.datetime, UpdateOne: Any) -> None:
        """checkout_fw's Firework and workflow updates, in bulk: Firework RUNNING, workflow refreshed."""
        lp = self.lp
        lp.fireworks.update_many(
            {"fw_id": {"$in": fw_ids}, "state": {"$in": _RUNNABLE_FW_STATES}},
            {"$set": {"state": "RUNNING", "updated_on": _iso_fw(now)}},
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
                    lp._refresh_wf(i)  # FireWorks' own path for the rare complicated case
                continue
            update = {f"fw_states.{i}": "RUNNING" for i in stale}
            update.update(state=wf_state, updated_on=_iso_fw(now))
            updates.append(UpdateOne({"_id": wf["_id"], "locked": {"$exists": False}}, {"$set": update}))
        if updates:
            lp.workflows.bulk_write(updates, ordered=False)

    def _complete_in_bulk(
        self,
        items: list[tuple[LaunchEvents, dict[str, Any], tuple[str, dict[str, Any], dt.datetime]]],
        now: dt.datetime,
        result: ApplyResult,
        redo: Callable[[bytes], None] | None,
        reopen: frozenset[int] = frozenset(),
    ) -> list[tuple[LaunchEvents, dict[str, Any]]]:
        """Complete many launches with a handful of commands, through FireWorks' own Workflow code.

        What ``complete_launch`` + ``_refresh_wf`` do per launch (lock the workflow, load it, set
        the launch's state and action, ``Workflow.refresh``, give new Fireworks their ids, write
        launches, Fireworks and the workflow, unlock) is done here once for all the workflows of
        the batch: one lock, four reads, three bulk writes, and one id allocation per completion
        that adds Fireworks. Launches are completed in journal order, as one-by-one completion
        would, so new Fireworks get the same ids. The Workflow, Firework and Launch objects and
        their refresh/apply_action logic are FireWorks' own.
        Returns the launches that must take the one-by-one path instead.
        """
        from fireworks.core.firework import FWAction, Launch, Workflow
        from fireworks.core.launchpad import LazyFirework
        from pymongo import UpdateOne

        lp = self.lp
        token = f"{self.owner}:{uuid.uuid4().hex}"
        fallback: list[tuple[LaunchEvents, dict[str, Any]]] = []
        keep_locked: list[Any] = []
        fw_ids = sorted({doc["fw_id"] for _, doc, _ in items})
        lp.workflows.update_many(
            {"nodes": {"$in": fw_ids}, "locked": {"$exists": False}},
            {"$set": {"locked": True, LOCK_FIELD: token}},
        )
        try:
            wf_docs = list(lp.workflows.find({"nodes": {"$in": fw_ids}}))
            stale = [
                wf
                for wf in wf_docs
                if str(wf.get(LOCK_FIELD, "")).startswith(self.owner + ":") and wf[LOCK_FIELD] != token
            ]
            if stale:
                # Left by a pass of ours that died holding them (one pusher per journal at a time).
                lp.workflows.bulk_write(
                    [
                        UpdateOne(
                            {"_id": wf["_id"], LOCK_FIELD: wf[LOCK_FIELD]}, {"$set": {LOCK_FIELD: token}}
                        )
                        for wf in stale
                    ],
                    ordered=False,
                )
                for wf in stale:
                    wf[LOCK_FIELD] = token
            ours = {n: wf for wf in wf_docs if wf.get(LOCK_FIELD) == token for n in wf["nodes"]}
            completing = [b.launch_id for b, _, _ in items]
            shared = {
                lid
                for d in lp.fireworks.find({"launches": {"$in": completing}}, {"fw_id": 1, "launches": 1})
                for lid in d["launches"]
                if lid in completing
                and d["fw_id"] != next(doc["fw_id"] for b, doc, _ in items if b.launch_id == lid)
            }
            mine = []
            for batch, doc, final in items:
                if batch.launch_id in shared:
                    fallback.append((batch, doc))  # a launch of several Fireworks (duplicates)
                elif doc["fw_id"] in ours:
                    mine.append((batch, doc, final))
                else:
                    result.problems.append(
                        f"workflow of Firework {doc['fw_id']} is locked by another process; "
                        f"launch {batch.launch_id} is retried next pass"
                    )
            if not mine:
                return fallback
            wf_by_id = {wf["_id"]: wf for wf in ours.values()}
            nodes = sorted({n for wf in wf_by_id.values() for n in wf["nodes"]})
            fw_docs = {d["fw_id"]: d for d in lp.fireworks.find({"fw_id": {"$in": nodes}})}
            lids = sorted(
                {i for d in fw_docs.values() for i in d.get("launches", []) + d.get("archived_launches", [])}
            )
            launch_docs = {d["launch_id"]: d for d in lp.launches.find({"launch_id": {"$in": lids}})}
            fws_coll = _Prefetched(fw_docs, "fw_id")
            launches_coll = _Prefetched(launch_docs, "launch_id")
            workflows: dict[Any, tuple[Any, set[int]]] = {}
            written = WriteSet(token=token)
            done: list[LaunchEvents] = []
            # New Fireworks get ids from the counter as read now; the write takes them (WriteSet).
            next_id: int | None = None
            for batch, doc, (state, action, completed_on) in mine:
                launch_obj = Launch.from_dict(copy.deepcopy(launch_docs[batch.launch_id]))
                apply_running_phase(launch_obj, batch.events, reopen=batch.launch_id in reopen)
                launch_obj.state = state
                launch_obj.action = FWAction.from_dict(action)
                for entry in reversed(launch_obj.state_history):
                    if entry["state"] == state:
                        entry["created_on"] = completed_on  # the compute node's time, not the push's
                        break
                new_doc = dict(launch_obj.to_db_dict(), _id=launch_docs[batch.launch_id]["_id"])
                if len(bson.encode(new_doc)) > _MAX_BULK_DOC:
                    fallback.append((batch, doc))  # FireWorks spills such an action to GridFS
                    continue
                written.prior_launches.append([batch.launch_id, launch_docs[batch.launch_id]["state"]])
                launch_docs[batch.launch_id] = new_doc
                written.launches.append(new_doc)
                wf_doc = ours[doc["fw_id"]]
                if wf_doc["_id"] not in workflows:
                    lazy = [
                        LazyFirework(n, fws_coll, launches_coll, lp.gridfs_fallback) for n in wf_doc["nodes"]
                    ]
                    states = (
                        {int(k): v for k, v in wf_doc["fw_states"].items()} if "fw_states" in wf_doc else None
                    )
                    wf = Workflow(
                        lazy,
                        wf_doc["links"],
                        wf_doc["name"],
                        wf_doc["metadata"],
                        wf_doc["created_on"],
                        wf_doc["updated_on"],
                        states,
                    )
                    workflows[wf_doc["_id"]] = (wf, set())
                wf, updated = workflows[wf_doc["_id"]]
                step = set(wf.refresh(doc["fw_id"]))
                # As _upsert_fws right after this refresh: new Fireworks get ids in old-id order.
                new = sorted(i for i in step if i < 0)
                if new:
                    if next_id is None:
                        next_id = int(lp.fw_id_assigner.find_one({}, {"next_fw_id": 1})["next_fw_id"])
                        written.new_ids = [next_id, next_id]
                    first, next_id = next_id, next_id + len(new)
                    written.new_ids[1] = next_id
                    old_new = {old: first + k for k, old in enumerate(new)}
                    for old, fresh in old_new.items():
                        wf.id_fw[old].fw_id = fresh
                    wf._reassign_ids(old_new)
                    step = {old_new.get(i, i) for i in step}
                updated |= step
                done.append(batch)
            for wf_id, (wf, updated) in workflows.items():
                written.fireworks.extend(wf.id_fw[i].to_db_dict() for i in sorted(updated))
                written.workflows.append(dict(wf.to_db_dict(), _id=wf_id))
            written.prior_fireworks = [
                [i, fw_docs[i].get("state"), fw_docs[i].get("updated_on")]
                for i in sorted(d["fw_id"] for d in written.fireworks)
                if i in fw_docs
            ]
            if redo is not None:
                redo(written.to_bytes())
                # From here on the write set is the next pass's to finish: its workflows stay
                # locked if this write dies halfway.
                keep_locked = [d["_id"] for d in written.workflows]
            if not written.write(lp):
                keep_locked = []
                result.problems.append(
                    "new Firework ids were taken by another process during the push; "
                    f"{len(done)} completions are retried next pass"
                )
                return fallback
            keep_locked = []
            for batch in done:
                result.completed_launches.append(batch.launch_id)
                result.outcomes.extend(
                    (e.event_id, "skipped" if e.type == "note" else "applied", None) for e in batch.events
                )
            return fallback
        finally:
            # Whatever was not written (nothing to do, an error before the write set was saved):
            # give the locks back; a saved write set's workflows wait for its replay.
            lp.workflows.update_many(
                {LOCK_FIELD: token, "_id": {"$nin": keep_locked}}, {"$unset": {"locked": "", LOCK_FIELD: ""}}
            )

    def _apply_sequential(
        self, batch: LaunchEvents, doc: dict[str, Any], now: dt.datetime, result: ApplyResult
    ) -> None:
        """A launch that ends in this batch (or has ended): running phase, then FireWorks' completion."""
        from fireworks.core.firework import FWAction, Launch

        lp = self.lp
        lid = batch.launch_id
        launch_obj = Launch.from_dict(doc)
        if launch_obj.state not in FINAL_STATES and apply_running_phase(launch_obj, batch.events):
            lp.launches.replace_one({"_id": doc["_id"], "state": doc["state"]}, launch_obj.to_db_dict())
        final = final_of(batch)
        detail: str | None = None
        if final is not None:
            state, action, completed_on = final
            current = lp.launches.find_one({"launch_id": lid}, {"state": 1, "fw_id": 1})
            if current["state"] in FINAL_STATES and current["state"] != state:
                reason = f"launch {lid} is already {current['state']} on the LaunchPad"
                result.outcomes.extend((e.event_id, "superseded", reason) for e in batch.events)
                result.superseded_launches.append(lid)
                return
            if current["state"] != state:
                lp.complete_launch(lid, FWAction.from_dict(action), state)
            fw = lp.fireworks.find_one({"fw_id": current["fw_id"]}, {"state": 1})
            if fw is not None and fw.get("state") not in (state, *_SUPERSEDING_FW_STATES):
                # Completed before, by a push that died before marking the journal, or the
                # workflow was locked during complete_launch: refresh through FireWorks itself.
                lp._refresh_wf(current["fw_id"])
                fw = lp.fireworks.find_one({"fw_id": current["fw_id"]}, {"state": 1})
                if fw is not None and fw.get("state") not in (state, *_SUPERSEDING_FW_STATES):
                    result.problems.append(
                        f"workflow of Firework {current['fw_id']} is locked; launch {lid} is retried next pass"
                    )
                    return
            self._record_completion_time(lid, state, completed_on)
            result.completed_launches.append(lid)
        for ev in batch.events:
            if ev.type == "note":
                result.outcomes.append((ev.event_id, "skipped", None))
            elif ev.type == "exited" and batch.has_completion:
                result.outcomes.append((ev.event_id, "applied", detail))
            else:
                result.outcomes.append((ev.event_id, "applied", detail))

    def _record_completion_time(self, launch_id: int, state: str, completed_on: dt.datetime) -> None:
        """The real completion time in the history, time_end and runtime_secs (idempotent)."""
        from fireworks.core.firework import Launch

        doc = self.lp.launches.find_one({"launch_id": launch_id}, {"action": 0})
        launch_obj = Launch.from_dict(doc)
        for entry in reversed(launch_obj.state_history):
            if entry["state"] == state:
                entry["created_on"] = completed_on
                break
        new = launch_obj.to_db_dict()
        fields = {k: new.get(k) for k in ("state_history", "time_end", "runtime_secs")}
        if any(doc.get(k) != v for k, v in fields.items()):
            self.lp.launches.update_one({"launch_id": launch_id, "state": state}, {"$set": fields})
