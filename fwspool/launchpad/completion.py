"""Completing many launches with a handful of commands, through FireWorks' own Workflow code.

What ``complete_launch`` + ``_refresh_wf`` do per launch (lock the workflow, load it, set the
launch's state and action, ``Workflow.refresh``, give new Fireworks their ids, write launches,
Fireworks and the workflow, unlock) is done here once for all the workflows of a batch: one
lock, four reads, three bulk writes, and one id allocation per completion that adds Fireworks.

It happens in two steps. :func:`plan_completions` is the decision, as data: from documents
read in bulk it computes the :class:`~fwspool.launchpad.writeset.WriteSet`, running FireWorks'
own Workflow, Firework and Launch objects and their refresh/apply_action logic on them.
:func:`complete_in_bulk` does the I/O around it: lock, read, plan, save the write set for a
redo, write, unlock. Launches are completed in journal order, as one-by-one completion would,
so new Fireworks get the same ids.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import bson

from fwspool.launchpad.fireworks_internals import PrefetchedCollection, load_workflow, renumber_new_fireworks
from fwspool.launchpad.locks import WorkflowLocks
from fwspool.launchpad.undo import UNDO_FIELD, undo_mark
from fwspool.launchpad.writeset import WriteSet
from fwspool.runs import LaunchEvents, apply_running_phase, stamp_completion

if TYPE_CHECKING:
    from fwspool.launchpad.apply import ApplyResult

__all__ = ["CompletionPlan", "Ending", "complete_in_bulk", "plan_completions"]

#: Launch documents larger than this go through FireWorks' own complete_launch (GridFS spill).
MAX_BULK_DOC = 12 * 1024 * 1024


class Ending(NamedTuple):
    """A launch whose pending events end it, with its LaunchPad document and how it ends."""

    launch: LaunchEvents
    doc: dict[str, Any]
    state: str
    action: dict[str, Any]
    completed_on: dt.datetime


@dataclass(slots=True)
class CompletionPlan:
    """What one bulk completion writes, and which launches it completes."""

    write_set: WriteSet
    completed: list[LaunchEvents] = field(default_factory=list)
    #: Too large for a bulk write: FireWorks' own complete_launch spills their action to GridFS.
    too_large: list[Ending] = field(default_factory=list)


class Prefetched(NamedTuple):
    """Every Firework and launch document of the workflows being completed, by id."""

    fireworks: dict[int, dict[str, Any]]
    launches: dict[int, dict[str, Any]]


def complete_in_bulk(
    lp: Any,
    owner: str,
    endings: list[Ending],
    result: ApplyResult,
    redo: Callable[[bytes], None] | None,
    reopen: frozenset[int] = frozenset(),
) -> list[Ending]:
    """Complete these launches in bulk; returns those that must take the one-by-one path."""
    with WorkflowLocks(lp, owner) as locks:
        held = locks.acquire(sorted({e.doc["fw_id"] for e in endings}))
        shared = _launches_of_several_fireworks(lp, endings)
        one_by_one = [e for e in endings if e.launch.launch_id in shared]
        mine = []
        for e in endings:
            if e.launch.launch_id in shared:
                continue
            if e.doc["fw_id"] in held:
                mine.append(e)
            else:
                result.problems.append(
                    f"workflow of Firework {e.doc['fw_id']} is locked by another process; "
                    f"launch {e.launch.launch_id} is retried next pass"
                )
        if not mine:
            return one_by_one
        plan = plan_completions(
            mine, held, _prefetch(lp, held), locks.token, lp.gridfs_fallback, lambda: _next_fw_id(lp), reopen
        )
        one_by_one.extend(plan.too_large)
        if redo is not None:
            redo(plan.write_set.to_bytes())
            # From here on the write set is the next pass's to finish: its workflows stay
            # locked if this write dies halfway.
            locks.keep(d["_id"] for d in plan.write_set.workflows)
        written = plan.write_set.write(lp)
        locks.keep(())
        if not written:
            result.problems.append(
                "new Firework ids were taken by another process during the push; "
                f"{len(plan.completed)} completions are retried next pass"
            )
            return one_by_one
        for launch in plan.completed:
            result.completed_launches.append(launch.launch_id)
            result.applied(launch)
        return one_by_one


def plan_completions(
    endings: list[Ending],
    held: dict[int, dict[str, Any]],
    docs: Prefetched,
    token: str,
    gridfs: Any,
    read_next_fw_id: Callable[[], int],
    reopen: frozenset[int] = frozenset(),
) -> CompletionPlan:
    """The write set that completes these launches, computed from prefetched documents alone.

    ``held`` maps each Firework to its (locked) workflow document; ``read_next_fw_id`` reads the
    id counter, called only if a completion adds Fireworks.

    A Firework written in bulk carries what it replaced until its workflow is written (its undo
    mark): a large spec that the action changes would take it over MongoDB's document limit.
    The launches of such a workflow go through FireWorks' own complete_launch instead
    (``too_large``), and the rest is planned again without them.
    """
    args = (held, token, gridfs, read_next_fw_id, reopen)
    plan, oversized = _plan(endings, Prefetched(docs.fireworks, dict(docs.launches)), *args)
    if not oversized:
        return plan
    keep: list[Ending] = []
    too_large: list[Ending] = []
    for e in endings:
        (too_large if held[e.doc["fw_id"]]["_id"] in oversized else keep).append(e)
    plan, _ = _plan(keep, Prefetched(docs.fireworks, dict(docs.launches)), *args)
    plan.too_large.extend(too_large)
    return plan


def _plan(
    endings: list[Ending],
    docs: Prefetched,
    held: dict[int, dict[str, Any]],
    token: str,
    gridfs: Any,
    read_next_fw_id: Callable[[], int],
    reopen: frozenset[int],
) -> tuple[CompletionPlan, set[Any]]:
    """The plan, and the workflows with a Firework document over :data:`MAX_BULK_DOC`.
    ``docs.launches`` is updated as each launch completes, so a later refresh in the same
    workflow sees it completed."""
    plan = CompletionPlan(WriteSet(token=token))
    oversized: set[Any] = set()
    fireworks = PrefetchedCollection(docs.fireworks, "fw_id")
    launches = PrefetchedCollection(docs.launches, "launch_id")
    new_ids = _NewIds(plan.write_set, read_next_fw_id)
    workflows: dict[Any, tuple[Any, set[int]]] = {}
    for ending in endings:
        lid = ending.launch.launch_id
        new_doc = _completed_launch_doc(ending, docs.launches[lid], lid in reopen)
        if len(bson.encode(new_doc)) > MAX_BULK_DOC:
            plan.too_large.append(ending)
            continue
        plan.write_set.prior_launches.append([lid, docs.launches[lid]["state"]])
        docs.launches[lid] = new_doc
        plan.write_set.launches.append(new_doc)
        wf_doc = held[ending.doc["fw_id"]]
        if wf_doc["_id"] not in workflows:
            workflows[wf_doc["_id"]] = (load_workflow(wf_doc, fireworks, launches, gridfs), set())
        wf, updated = workflows[wf_doc["_id"]]
        updated |= _refresh(wf, ending.doc["fw_id"], new_ids)
        plan.completed.append(ending.launch)
    for wf_id, (wf, updated) in workflows.items():
        for i in sorted(updated):
            doc = wf.id_fw[i].to_db_dict()
            doc[UNDO_FIELD] = undo_mark(token, wf_id, docs.fireworks.get(i), doc)
            if len(bson.encode(doc)) > MAX_BULK_DOC:
                oversized.add(wf_id)
            plan.write_set.fireworks.append(doc)
        plan.write_set.workflows.append(dict(wf.to_db_dict(), _id=wf_id))
    plan.write_set.prior_fireworks = [
        [i, docs.fireworks[i].get("state"), docs.fireworks[i].get("updated_on")]
        for i in sorted(d["fw_id"] for d in plan.write_set.fireworks)
        if i in docs.fireworks
    ]
    return plan, oversized


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


def _completed_launch_doc(ending: Ending, prior: dict[str, Any], reopen: bool) -> dict[str, Any]:
    """The launch document as FireWorks' complete_launch leaves it, with the real times."""
    from fireworks.core.firework import FWAction, Launch

    launch_obj = Launch.from_dict(copy.deepcopy(prior))
    apply_running_phase(launch_obj, ending.launch.events, reopen=reopen)
    launch_obj.state = ending.state
    launch_obj.action = FWAction.from_dict(ending.action)
    stamp_completion(launch_obj, ending.state, ending.completed_on)
    return dict(launch_obj.to_db_dict(), _id=prior["_id"])


def _launches_of_several_fireworks(lp: Any, endings: list[Ending]) -> set[int]:
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
