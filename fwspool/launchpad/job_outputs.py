"""A jobflow job's outputs written to its JobStore before its launch is completed.

One step, between routing and completion (:meth:`~fwspool.launchpad.apply.LaunchPadApplier.apply`):
for each ending launch whose ``completed`` event carries JobStore writes
(:class:`fwspool.events.JobOutputs`), write them to the real JobStore and to the shared output
cache (:class:`fwspool.jobstore.real.JobStores`). Only then does the launch go on to completion,
so a child becomes READY only once its inputs exist. A push killed in between writes them again
(the same keys: one copy) and completes once. A launch whose writes cannot be read (a side file
missing or damaged) is held, visibly; so is one whose JobStore cannot be reached, and the batch
says so (``ApplyResult.unreachable``: the pass then ends with exit 75), while the other launches
of the batch complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from fwspool.errors import DataError, UplinkUnavailable
from fwspool.events import JobOutputs
from fwspool.failpoints import failpoint
from fwspool.launchpad.vocabulary import ApplyResult, Routed

if TYPE_CHECKING:
    from fwspool.jobstore.real import JobStores

__all__ = ["fill_inputs", "write_job_outputs"]


def write_job_outputs(stores: JobStores, ending: list[Routed], result: ApplyResult) -> list[Routed]:
    """Write the outputs of the ``ending`` launches that have some; returns the launches that
    may be completed now (the others are held in ``result``)."""
    ready: list[Routed] = []
    wrote = False
    down: dict[str, str] = {}  # a JobStore found unreachable is not asked again in this batch
    for routed in ending:
        try:
            for outputs in _outputs_of(routed):
                where = msgspec.json.encode(outputs.job_store).decode()
                if where in down:
                    raise UplinkUnavailable(down[where])
                try:
                    stores.write(outputs, _docs_of(outputs, routed))
                except UplinkUnavailable as exc:
                    down[where] = exc.message
                    result.unreachable.append(exc.message)
                    raise
                wrote = True
        except (DataError, UplinkUnavailable) as exc:
            result.hold(
                routed.launch,
                f"launch {routed.launch.launch_id} (Firework {routed.doc.get('fw_id')}): {exc.message}; "
                "its completion waits",
            )
            continue
        ready.append(routed)
    if wrote:
        failpoint("push.after_store_write")  # chaos: killed between the two steps
    return ready


def _outputs_of(routed: Routed) -> list[JobOutputs]:
    ending = routed.reading.ending
    raw = ending.payload.get("job_outputs") if ending is not None and ending.type == "completed" else None
    return msgspec.convert(raw, list[JobOutputs]) if raw else []


def _docs_of(outputs: JobOutputs, routed: Routed) -> list[tuple[str, list[str], list[dict[str, Any]]]]:
    from fwspool.jobstore.outputs import read_write

    dirs = [d for d in (routed.doc.get("launch_dir"), *routed.launch.announced_dirs) if d]
    return [(w.store, w.key, read_write(w, dirs)) for w in outputs.writes]


def fill_inputs(lp: Any, stores: JobStores, releasing: list[Routed], result: ApplyResult) -> None:
    """Before reservations are handed back: for each jobflow Firework among them, the outputs its
    references name, from its JobStore into the cache, so that it finds them when it is reserved
    again (a job refused for missing inputs: a parent that ran online, a cache deleted)."""
    from fwspool.jobstore.real import referenced_jobs

    fw_ids = sorted({r.doc["fw_id"] for r in releasing})
    if not fw_ids:
        return
    from fwspool.jobstore import is_job_task

    for fw in lp.fireworks.find({"fw_id": {"$in": fw_ids}}, {"fw_id": 1, "spec._tasks": 1}):
        for task in fw.get("spec", {}).get("_tasks", []):
            if not is_job_task(task):
                continue
            job = task.get("job") or {}
            uuids = referenced_jobs([job.get("function_args"), job.get("function_kwargs")])
            try:
                missing = stores.fill_cache(task.get("store"), sorted(uuids)) if uuids else []
            except DataError as exc:
                result.problems.append(f"Firework {fw['fw_id']}: its inputs cannot be cached: {exc.message}")
                continue
            if missing:
                result.problems.append(
                    f"Firework {fw['fw_id']}: its JobStore has no output of {', '.join(missing)}; it will be "
                    "refused again when it runs"
                )
