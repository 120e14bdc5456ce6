"""The batch system's record of a job, added to the launch its signal FIZZLED (``job_ended``).

A run killed by a signal (``scancel``, the walltime) records the signal, and the push makes its
launch FIZZLED with ``stored_data._fwspool_exit`` saying so. Only later, once the job is gone,
does ingest ask the batch system why (a ``job_ended`` event, :mod:`fwspool.ingest.scheduler_check`).
This last step of an application writes that answer into ``stored_data._fwspool_exit.batch_end``,
so ``lpad get_fws -d all`` shows it.

It decides nothing and moves no state. One conditional write per launch matches only a launch
that is FIZZLED by fwspool's own exit and has no ``batch_end`` yet: a COMPLETED launch or a
task's own FIZZLED stays as it is, and a push that repeats it (one that died before the journal
was marked) writes nothing.
"""

from __future__ import annotations

from typing import Any

from fwspool.launchpad.vocabulary import ApplyResult, Disposition
from fwspool.runs import LaunchReading

__all__ = ["BATCH_END_FIELD", "add_batch_ends"]

#: Where the batch system's record goes on the launch document.
BATCH_END_FIELD = "action.stored_data._fwspool_exit.batch_end"


def add_batch_ends(lp: Any, readings: list[LaunchReading], result: ApplyResult) -> int:
    """Write the ``batch_end`` of each ``job_ended`` event this application applied into its
    launch's ``stored_data._fwspool_exit``, where it is not there yet; returns how many launches
    changed."""
    from pymongo import UpdateOne

    applied = {event_id for event_id, disposition, _ in result.outcomes if disposition == Disposition.APPLIED}
    writes = [
        UpdateOne(
            {
                "launch_id": reading.launch.launch_id,
                "state": "FIZZLED",
                "action.stored_data._fwspool_exit": {"$type": "object"},
                BATCH_END_FIELD: {"$exists": False},
            },
            {"$set": {BATCH_END_FIELD: event.payload["batch_end"]}},
        )
        for reading in readings
        for event in reading.launch.events
        if event.type == "job_ended" and event.event_id in applied and event.payload.get("batch_end")
    ]
    if not writes:
        return 0
    return int(lp.launches.bulk_write(writes, ordered=False).modified_count)
