"""Completing many launches with a handful of commands, through FireWorks' own Workflow code.

What ``complete_launch`` + ``_refresh_wf`` do per launch (lock the workflow, load it, set the
launch's state and action, ``Workflow.refresh``, give new Fireworks their ids, write launches,
Fireworks and the workflow, unlock) is done here once for all the workflows of a batch: one
lock, four reads, three bulk writes, and one id allocation per completion that adds Fireworks.

It happens in two steps. :func:`plan_completions` is the decision, as data: from documents
read in bulk it computes the :class:`~fwspool.launchpad.writeset.WriteSet`, running FireWorks'
own Workflow, Firework and Launch objects and their refresh/apply_action logic on them.
:func:`complete_in_bulk` does the I/O around it, in named steps: lock, partition (bulk, one by
one, or the next pass), prefetch, plan (from a :class:`PlanInputs`), save the write set for a
redo then write it, unlock. Launches are completed in journal order, as one-by-one completion would,
so new Fireworks get the same ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import bson

from fwspool.fireworks_documents import firework_db_dict, set_launch_state, stored_action, with_launch_times
from fwspool.launchpad.fireworks_internals import PrefetchedCollection, load_workflow, renumber_new_fireworks
from fwspool.launchpad.locks import WorkflowLocks
from fwspool.launchpad.undo import UNDO_FIELD, undo_mark
from fwspool.launchpad.vocabulary import ApplyResult, Routed
from fwspool.launchpad.writeset import WriteSet
from fwspool.runs import LaunchEvents, running_phase, stamp_completion

__all__ = [
    "CompletionPlan",
    "PlanInputs",
    "Prefetched",
    "complete_in_bulk",
    "completed_launch_doc",
    "plan_completions",
]

#: Launch documents larger than this go through FireWorks' own complete_launch (GridFS spill).
MAX_BULK_DOC = 12 * 1024 * 1024


@dataclass(slots=True)
class CompletionPlan:
    """What one bulk completion writes, and which launches it completes."""

    write_set: WriteSet
    completed: list[LaunchEvents] = field(default_factory=list)
    #: Too large for a bulk write: FireWorks' own complete_launch spills their action to GridFS.
    too_large: list[Routed] = field(default_factory=list)


class Prefetched(NamedTuple):
    """Every Firework and launch document of the workflows being completed, by id."""

    fireworks: dict[int, dict[str, Any]]
    launches: dict[int, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What a plan is computed from, besides the launches: read once, never written to."""

    #: Each Firework's (locked) workflow document.
    held: dict[int, dict[str, Any]]
    #: The Fireworks and launches of those workflows.
    docs: Prefetched
    #: The lock token, which the write set and its undo marks carry.
    token: str
    #: FireWorks' GridFS fallback, where a large action of an existing launch lives.
    gridfs: Any
    #: Reads the Firework id counter; called only if a completion adds Fireworks.
    read_next_fw_id: Callable[[], int]


class _Split(NamedTuple):
    """The launches of a bulk completion, by the path they take."""

    #: In workflows this run locked.
    mine: list[Routed]
    #: Shared by several Fireworks (FireWorks' duplicate detection): FireWorks' own completion.
    one_by_one: list[Routed]


def complete_in_bulk(
    lp: Any, owner: str, endings: list[Routed], result: ApplyResult, redo: Callable[[bytes], None] | None
) -> list[Routed]:
    """Complete these launches in bulk: lock, partition, plan, save then write. Returns those
    that must take the one-by-one path."""
    with WorkflowLocks(lp, owner) as locks:
        held = locks.acquire(sorted({e.doc["fw_id"] for e in endings}))
        split = _partition(lp, endings, held, result)
        if not split.mine:
            return split.one_by_one
        inputs = PlanInputs(
            held, _prefetch(lp, held), str(locks.token), lp.gridfs_fallback, lambda: _next_fw_id(lp)
        )
        plan = plan_completions(split.mine, inputs)
        _save_then_write(lp, plan, locks, redo, result)
        return split.one_by_one + plan.too_large


def _partition(
    lp: Any, endings: list[Routed], held: dict[int, dict[str, Any]], result: ApplyResult
) -> _Split:
    """Which launches this run completes in bulk, which go one by one; those in a workflow
    someone else holds wait for the next pass."""
    shared = _launches_of_several_fireworks(lp, endings)
    split = _Split([], [e for e in endings if e.launch.launch_id in shared])
    for e in endings:
        if e.launch.launch_id in shared:
            continue
        if e.doc["fw_id"] in held:
            split.mine.append(e)
        else:
            result.retry(
                f"workflow of Firework {e.doc['fw_id']} is locked by another process; "
                f"launch {e.launch.launch_id} is retried next pass"
            )
    return split


def _save_then_write(
    lp: Any,
    plan: CompletionPlan,
    locks: WorkflowLocks,
    redo: Callable[[bytes], None] | None,
    result: ApplyResult,
) -> None:
    """Save the write set for a redo (its workflows then stay locked until it is written), write
    it, and say which launches it completed."""
    if redo is not None:
        redo(plan.write_set.to_bytes())
        # From here on the write set is the next pass's to finish: its workflows stay
        # locked if this write dies halfway.
        locks.keep(d["_id"] for d in plan.write_set.workflows)
    written = plan.write_set.write(lp)
    locks.keep(())
    if not written:
        result.retry(
            "new Firework ids were taken by another process during the push; "
            f"{len(plan.completed)} completions are retried next pass"
        )
        return
    for launch in plan.completed:
        result.completed(launch)


def plan_completions(endings: list[Routed], inputs: PlanInputs) -> CompletionPlan:
    """The write set that completes these launches, computed from prefetched documents alone
    (nothing is read from the LaunchPad but, if a completion adds Fireworks, the id counter).

    A Firework written in bulk carries what it replaced until its workflow is written (its undo
    mark): a large spec that the action changes would take it over MongoDB's document limit.
    The launches of such a workflow go through FireWorks' own complete_launch instead
    (``too_large``), and the rest is planned again without them (FireWorks' objects were
    refreshed in place by the first plan: planning afresh is the only way to leave them out).
    """
    plan, oversized = _plan(endings, inputs)
    if not oversized:
        return plan
    keep = [e for e in endings if inputs.held[e.doc["fw_id"]]["_id"] not in oversized]
    plan, _ = _plan(keep, inputs)
    plan.too_large.extend(e for e in endings if inputs.held[e.doc["fw_id"]]["_id"] in oversized)
    return plan


def _plan(endings: list[Routed], inputs: PlanInputs) -> tuple[CompletionPlan, set[Any]]:
    """The plan, and the workflows with a Firework document over :data:`MAX_BULK_DOC`."""
    plan = CompletionPlan(WriteSet(token=inputs.token))
    # Each completed launch replaces its prior here, so that a later refresh in the same
    # workflow sees it completed; the inputs stay as they were read.
    launches = dict(inputs.docs.launches)
    workflows = _Workflows(inputs, launches, _NewIds(plan.write_set, inputs.read_next_fw_id))
    for ending in endings:
        lid = ending.launch.launch_id
        new_doc = completed_launch_doc(ending, launches[lid])
        if len(bson.encode(new_doc)) > MAX_BULK_DOC:
            plan.too_large.append(ending)
            continue
        plan.write_set.prior_launches.append([lid, launches[lid]["state"]])
        launches[lid] = new_doc
        plan.write_set.launches.append(new_doc)
        workflows.refresh(ending.doc["fw_id"])
        plan.completed.append(ending.launch)
    oversized = workflows.write_into(plan.write_set)
    return plan, oversized


class _Workflows:
    """FireWorks' Workflows of a plan, loaded once each from the prefetched documents, and the
    Fireworks each completion's refresh changed in them."""

    def __init__(self, inputs: PlanInputs, launches: dict[int, dict[str, Any]], new_ids: _NewIds) -> None:
        self.inputs = inputs
        self.fireworks = PrefetchedCollection(inputs.docs.fireworks, "fw_id")
        self.launches = PrefetchedCollection(launches, "launch_id")
        self.new_ids = new_ids
        self.loaded: dict[Any, tuple[Any, set[int]]] = {}

    def refresh(self, fw_id: int) -> None:
        """FireWorks' refresh of this Firework's workflow after its launch completed."""
        wf_doc = self.inputs.held[fw_id]
        if wf_doc["_id"] not in self.loaded:
            wf = load_workflow(wf_doc, self.fireworks, self.launches, self.inputs.gridfs)
            self.loaded[wf_doc["_id"]] = (wf, set())
        wf, updated = self.loaded[wf_doc["_id"]]
        updated |= _refresh(wf, fw_id, self.new_ids)

    def write_into(self, write_set: WriteSet) -> set[Any]:
        """Their changed Fireworks (with undo marks) and the workflows themselves into the write
        set, with the prior state of each existing Firework; returns the workflows with a
        Firework document over :data:`MAX_BULK_DOC`."""
        prior = self.inputs.docs.fireworks
        oversized: set[Any] = set()
        for wf_id, (wf, updated) in self.loaded.items():
            for i in sorted(updated):
                doc = firework_db_dict(wf.id_fw[i])
                doc[UNDO_FIELD] = undo_mark(self.inputs.token, wf_id, prior.get(i), doc)
                if len(bson.encode(doc)) > MAX_BULK_DOC:
                    oversized.add(wf_id)
                write_set.fireworks.append(doc)
            write_set.workflows.append(dict(wf.to_db_dict(), _id=wf_id))
        write_set.prior_fireworks = [
            [i, prior[i].get("state"), prior[i].get("updated_on")]
            for i in sorted(d["fw_id"] for d in write_set.fireworks)
            if i in prior
        ]
        return oversized


class _NewIds:
    """New Fireworks' ids, handed out from the counter as read once; the write takes them."""

    def __init__(self, write_set: WriteSet, read_next_fw_id: Callable[[], int]) -> None:
        self.write_set = write_set
        self.read = read_next_fw_id
        self.next: int | None = None

    def take(self, n: int) -> int:
        if self.next is None:
            self.next = self.read()
            self.write_set.new_ids = [self.next, self.next]
        first = self.next
        self.next += n
        self.write_set.new_ids[1] = self.next
        return first


def _refresh(wf: Any, fw_id: int, new_ids: _NewIds) -> set[int]:
    """FireWorks' ``Workflow.refresh`` after a completion; returns the Fireworks it changed."""
    step = set(wf.refresh(fw_id))
    # As _upsert_fws right after this refresh: new Fireworks get ids in old-id order.
    new = sorted(i for i in step if i < 0)
    if not new:
        return step
    first = new_ids.take(len(new))
    old_new = {old: first + k for k, old in enumerate(new)}
    renumber_new_fireworks(wf, old_new)
    return {old_new.get(i, i) for i in step}


def completed_launch_doc(
    ending: Routed, prior: dict[str, Any], now: dt.datetime | None = None
) -> dict[str, Any]:
    """The launch document as FireWorks' complete_launch leaves it, with the real times: its
    running phase, then the state setter and the action (``launch.state = ...; launch.action =
    ...``), the completion time on the final entry, and the times ``to_db_dict`` adds."""
    final = ending.final
    now = now or dt.datetime.now(dt.UTC)  # when FireWorks' state setter would run
    # The running phase leaves the prior as read (the plan's inputs are never written to).
    doc = running_phase(prior, ending.launch.events, reopen=ending.reopen, now=now).after
    set_launch_state(doc, final.state, now)
    doc["action"] = stored_action(final.action)
    stamp_completion(doc["state_history"], final.state, final.completed_on)
    return dict(with_launch_times(doc, now), _id=prior["_id"])


def _launches_of_several_fireworks(lp: Any, endings: list[Routed]) -> set[int]:
    """Launches another Firework lists too (FireWorks' duplicate detection shares launches)."""
    completing = [e.launch.launch_id for e in endings]
    owner_of = {e.launch.launch_id: e.doc["fw_id"] for e in endings}
    return {
        lid
        for d in lp.fireworks.find({"launches": {"$in": completing}}, {"fw_id": 1, "launches": 1})
        for lid in d["launches"]
        if lid in owner_of and d["fw_id"] != owner_of[lid]
    }


def _prefetch(lp: Any, held: dict[int, dict[str, Any]]) -> Prefetched:
    """Every Firework and launch (current and archived) of the held workflows, in two reads."""
    nodes = sorted({n for wf in held.values() for n in wf["nodes"]})
    fw_docs = {d["fw_id"]: d for d in lp.fireworks.find({"fw_id": {"$in": nodes}})}
    lids = sorted(
        {i for d in fw_docs.values() for i in d.get("launches", []) + d.get("archived_launches", [])}
    )
    return Prefetched(fw_docs, {d["launch_id"]: d for d in lp.launches.find({"launch_id": {"$in": lids}})})


def _next_fw_id(lp: Any) -> int:
    return int(lp.fw_id_assigner.find_one({}, {"next_fw_id": 1})["next_fw_id"])
