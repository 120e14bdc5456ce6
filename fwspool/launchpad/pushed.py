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
from typing import Any

from fwspool.events import FINAL_STATES
from fwspool.launchpad.supersede import HELD_FW_STATES
from fwspool.launchpad.vocabulary import ApplyResult, Disposition
from fwspool.outcomes import RUNNING, SUPERSEDED, PushedLaunch, of_end
from fwspool.runs import LaunchReading, PendingEvent

__all__ = ["pushed_launches"]


def pushed_launches(
    readings: list[LaunchReading],
    launch_docs: Mapping[int, dict[str, Any]],
    fireworks: Mapping[int, dict[str, Any]],
    reopen: frozenset[int],
    result: ApplyResult,
) -> list[PushedLaunch]:
    """One record per launch of the batch that this application moved, in batch order.

    ``launch_docs`` and ``fireworks`` are the documents as the batch read them, before it wrote.
    """
    outcome_of = {event_id: (outcome, detail) for event_id, outcome, detail in result.outcomes}
    completed, released = set(result.completed_launches), set(result.released_launches)
    records: list[PushedLaunch] = []
    for reading in readings:
        launch = reading.launch
        mine = [outcome_of[e.event_id] for e in launch.events if e.event_id in outcome_of]
        doc = launch_docs.get(launch.launch_id)
        if mine and doc is not None:  # else nothing of it applied: its events stay pending
            ended = _ended(reading, completed, released)
            records.extend(_record(reading, doc, fireworks.get(doc["fw_id"]), mine, ended, reopen))
    return records


def _record(
    reading: LaunchReading,
    doc: dict[str, Any],
    fw: dict[str, Any] | None,
    mine: list[tuple[Disposition, str | None]],
    ended: PendingEvent | None,
    reopen: frozenset[int],
) -> Iterator[PushedLaunch]:
    """What the application left of one launch, if it changed anything of it."""
    lid = reading.launch.launch_id
    held = fw.get("state") if fw is not None and fw.get("state") in HELD_FW_STATES else None
    record = PushedLaunch(lid, doc["fw_id"], (fw or {}).get("name"), None, RUNNING, None)
    superseded = next((detail for outcome, detail in mine if outcome == Disposition.SUPERSEDED), None)
    if superseded is not None:
        yield record._replace(state=(fw or {}).get("state"), outcome=SUPERSEDED, detail=superseded)
    elif ended is not None:
        state, outcome, detail = of_end(ended)
        yield record._replace(state=held or state, outcome=outcome, detail=detail)
    elif doc.get("state") not in FINAL_STATES or lid in reopen:
        yield record._replace(state=held or "RUNNING")
    # Else the launch had ended before: these events (notes, a late exit) change nothing.


def _ended(reading: LaunchReading, completed: set[int], released: set[int]) -> PendingEvent | None:
    """The pending event that ended the launch in this batch (its reading's ending, or its
    ``released``); None when the batch did not end it."""
    lid = reading.launch.launch_id
    if lid in released:
        return next(e for e in reading.launch.events if e.type == "released")
    return reading.ending if lid in completed else None
