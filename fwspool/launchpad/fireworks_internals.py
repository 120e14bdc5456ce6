"""The FireWorks internals fwspool relies on, behind one narrow adapter.

fwspool applies results with FireWorks' own ``Workflow``, ``Firework`` and ``Launch`` code, but a
few of the calls it needs are not FireWorks' public API: the workflow refresh
(``LaunchPad._refresh_wf``), renumbering new Fireworks (``Workflow._reassign_ids``), the workflow
state rule (``Workflow.state``'s getter, run on a stand-in) and ``LazyFirework`` over documents
fetched in bulk. They are all here, so that a FireWorks upgrade that changes one touches this
file only (FireWorks is pinned to 2.1.x in pyproject.toml for the same reason).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

__all__ = [
    "PrefetchedCollection",
    "load_workflow",
    "refresh_workflow",
    "renumber_new_fireworks",
    "workflow_state",
]


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


def refresh_workflow(launchpad: Any, fw_id: int) -> None:
    """FireWorks' own refresh of the workflow holding ``fw_id`` (its lock, its writes)."""
    launchpad._refresh_wf(fw_id)


class PrefetchedCollection:
    """A read-only stand-in for a pymongo collection over documents already fetched in bulk.

    It answers the two query shapes FireWorks' ``LazyFirework`` uses (``find_one({key: v})`` and
    ``find({key: {"$in": [...]}})``), so FireWorks' own Workflow code runs on it unchanged.

    Each answer is a shallow copy: ``LazyFirework`` deletes and sets top-level keys of what it
    reads, and hands it to ``from_dict``, which builds every nested dict and list anew
    (``_recursive_load``), so the prefetched documents stay as read without a deep copy.
    """

    def __init__(self, docs: dict[int, dict[str, Any]], key: str) -> None:
        self.docs = docs
        self.key = key

    def find_one(self, filter: dict[str, Any], projection: Any = None, **_: Any) -> dict[str, Any] | None:
        doc = self.docs.get(filter[self.key])
        return dict(doc) if doc is not None else None

    def find(self, filter: dict[str, Any], projection: Any = None, **_: Any) -> list[dict[str, Any]]:
        wanted = filter[self.key]["$in"]
        return [dict(self.docs[k]) for k in sorted(wanted) if k in self.docs]


def load_workflow(
    wf_doc: dict[str, Any], fireworks: PrefetchedCollection, launches: PrefetchedCollection, gridfs: Any
) -> Any:
    """FireWorks' ``Workflow`` of a workflow document, its Fireworks loaded lazily from prefetched ones."""
    from fireworks.core.firework import Workflow
    from fireworks.core.launchpad import LazyFirework

    lazy = [LazyFirework(n, fireworks, launches, gridfs) for n in wf_doc["nodes"]]
    states = {int(k): v for k, v in wf_doc["fw_states"].items()} if "fw_states" in wf_doc else None
    return Workflow(
        lazy,
        dict(wf_doc["links"]),  # Workflow() adds int keys to the dict it is given
        wf_doc["name"],
        wf_doc["metadata"],
        wf_doc["created_on"],
        wf_doc["updated_on"],
        states,
    )


def renumber_new_fireworks(workflow: Any, old_new: dict[int, int]) -> None:
    """Give the workflow's new Fireworks (negative ids) their ids, as ``_upsert_fws`` does."""
    for old, fresh in old_new.items():
        workflow.id_fw[old].fw_id = fresh
    workflow._reassign_ids(old_new)
