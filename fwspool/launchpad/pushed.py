"""What a batch's application left of each launch on the LaunchPad, for the journal to remember.

A separate last step of :meth:`~fwspool.launchpad.apply.LaunchPadApplier.apply`: it decides
nothing and writes nothing. From what the batch read (the launches and their Fireworks, names
included) and what the application reported (each event's outcome, the launches completed and
released), it says per launch the Firework's state and name and the launch's outcome
(:class:`~fwspool.outcomes.PushedLaunch`); the pusher stores them with the pushed mark, and
``fwspool status`` shows them. A launch none of whose events were applied (not on the
LaunchPad, its workflow locked...) stays pending and gets no record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from fwspool.events import FINAL_STATES
from fwspool.launchpad.supersede import HELD_FW_STATES
from fwspool.outcomes import RUNNING, SUPERSEDED, PushedLaunch, of_end
from fwspool.runs import LaunchEvents, PendingEvent, last_run_end

if TYPE_CHECKING:
    from fwspool.launchpad.apply import ApplyResult

__all__ = ["pushed_launches"]


def pushed_launches(
    launches: list[LaunchEvents],
    launch_docs: Mapping[int, dict[str, Any]],
    fireworks: Mapping[int, dict[str, Any]],
    reopen: frozenset[int],
    result: ApplyResult,
) -> list[PushedLaunch]:
    """One record per launch of the batch that this application moved, in batch order.

    ``launch_docs`` and ``fireworks`` are the documents as the batch read them, before it wrote.
    """
    return list(_records(launches, launch_docs, fireworks, reopen, result))


def _records(
    launches: list[LaunchEvents],
    launch_docs: Mapping[int, dict[str, Any]],
    fireworks: Mapping[int, dict[str, Any]],
    reopen: frozenset[int],
    result: ApplyResult,
) -> Iterator[PushedLaunch]:
    outcome_of = {event_id: (outcome, detail) for event_id, outcome, detail in result.outcomes}
    completed, released = set(result.completed_launches), set(result.released_launches)
    for launch in launches:
        mine = [outcome_of[e.event_id] for e in launch.events if e.event_id in outcome_of]
        doc = launch_docs.get(launch.launch_id)
        if not mine or doc is None:
            continue  # nothing of it applied: its events stay pending
        fw = fireworks.get(doc["fw_id"])
        held = fw.get("state") if fw is not None and fw.get("state") in HELD_FW_STATES else None
        record = PushedLaunch(launch.launch_id, doc["fw_id"], (fw or {}).get("name"), None, RUNNING, None)
        superseded = next((detail for outcome, detail in mine if outcome == "superseded"), None)
        ending = _ending(launch, completed, released)
        if superseded is not None:
            yield record._replace(state=(fw or {}).get("state"), outcome=SUPERSEDED, detail=superseded)
        elif ending is not None:
            state, outcome, detail = of_end(ending)
            yield record._replace(state=held or state, outcome=outcome, detail=detail)
        elif doc.get("state") not in FINAL_STATES or launch.launch_id in reopen:
            yield record._replace(state=held or "RUNNING")
        # Else the launch had ended before: these events (notes, a late exit) change nothing.


def _ending(launch: LaunchEvents, completed: set[int], released: set[int]) -> PendingEvent | None:
    """The pending event that ended the launch in this batch, as :func:`fwspool.runs.final_of`
    picks it (or its ``released``); None when the batch did not end it."""
    if launch.launch_id in released:
        return next(e for e in launch.events if e.type == "released")
    if launch.launch_id not in completed:
        return None
    completion = next((e for e in launch.events if e.type == "completed"), None)
    if completion is not None or launch.has_completion:
        return completion
    return last_run_end(launch)
