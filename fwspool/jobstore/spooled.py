"""Compute node: a ``JobFiretask`` run against a JobStore of fwspool's own.

:func:`spool_job_tasks` prepares each jobflow task of a reserved Firework before the Rocket runs
it. The task's JobStore (its ``store``, else ``jobflow.SETTINGS.JOB_STORE``) is replaced, for the
run only, by a :class:`jobflow.JobStore` of in-memory stores with the same additional store
names and ``save``/``load`` settings:

- loaded first with the outputs the job's references name, from the shared cache
  (:mod:`fwspool.jobstore.cache`), so that jobflow resolves them itself, as it would online;
- recording every ``update`` (the docs store's and each additional store's) as a
  :class:`~fwspool.events.StoreWrite`, which the launch's ``completed`` event carries
  (:class:`~fwspool.events.JobOutputs`).

No connection is opened: the task's own store is never connected. The FWAction's new
Fireworks (``replace``, ``addition``, ``detour``) get the task's own store back, as jobflow gives
them online.

This module imports jobflow and maggma: import it only for a Firework that has a JobFiretask.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from maggma.stores import MemoryStore
from monty.json import jsanitize

from fwspool.errors import DataError
from fwspool.events import JobOutputs
from fwspool.jobstore import MissingInputs, is_job_task
from fwspool.jobstore.cache import cached_outputs
from fwspool.jobstore.outputs import record_writes
from fwspool.jobstore.real import referenced_jobs

__all__ = ["MissingInputs", "RecordingStore", "spool_job_tasks"]

#: The key each kind of store is written with by ``JobStore.update``.
DOCS_KEY = ["uuid", "index"]
BLOB_KEY = ["blob_uuid"]


class RecordingStore(MemoryStore):
    """An in-memory maggma store that also records each ``update`` (what the real store would
    have been given) in ``writes``, shared by the stores of one JobStore."""

    def __init__(
        self, collection_name: str, store_name: str, writes: list[tuple[str, list[str], list[dict[str, Any]]]]
    ):
        super().__init__(collection_name)
        self.store_name = store_name
        self.writes = writes

    def preload(self, docs: list[dict[str, Any]], key: list[str]) -> None:
        """Documents read from the cache: readable by the job, not recorded as its writes."""
        self.connect()
        super().update(docs, key=key)

    def update(self, docs: list[dict[str, Any]] | dict[str, Any], key: list[str] | str | None = None) -> None:
        batch = docs if isinstance(docs, list) else [docs]
        # As MongoStore.update serializes them: what reaches the real store is the same.
        batch = [jsanitize(d, allow_bson=True, recursive_msonable=True) for d in batch]
        keys = [key] if isinstance(key, str) else list(key or [self.key])
        self.writes.append((self.store_name, keys, copy.deepcopy(batch)))
        super().update(batch, key=key)


def job_store_of(task: Any) -> Any:
    """The JobStore the task would use online: its ``store``, else jobflow's settings'."""
    from jobflow import SETTINGS

    store = task.get("store")
    return SETTINGS.JOB_STORE if store is None else store


def spool_job_tasks(
    firework: Any,
    launch_dir: str,
    launch_id: int,
    cache: str,
    record: Callable[[JobOutputs], None],
    spool_mode: int = 0o600,
) -> int:
    """Make each ``JobFiretask`` of ``firework`` run against a spooled JobStore; ``record``
    receives each task's writes once it ran. Returns how many tasks were prepared.

    Raises DataError for a job that needs the store while it runs (``expose_store``), and
    :class:`MissingInputs` when a reference's outputs are not in ``cache``.
    """
    prepared = 0
    for task in firework.tasks:
        if not is_job_task(task):
            continue
        job = task.get("job")
        if job.config.expose_store:
            raise DataError(
                f"job {job.name} ({job.uuid}) sets expose_store=True: it needs the JobStore while it runs, "
                "which a compute node without a database route cannot give (docs/jobflow.md)"
            )
        original = job_store_of(task)
        writes: list[tuple[str, list[str], list[dict[str, Any]]]] = []
        spooled = _spooled_store(original, launch_id, writes)
        _load_inputs(job, spooled, cache)
        run_task = functools.partial(
            _run_spooled, task, type(task).run_task, spooled, writes, launch_dir, record, spool_mode
        )
        task.run_task = run_task  # the Rocket calls the instance's run_task
        prepared += 1
    return prepared


def _spooled_store(original: Any, launch_id: int, writes: list[Any]) -> Any:
    from jobflow import JobStore

    def store(name: str) -> RecordingStore:
        # Distinct collections: mongomock clients share one in-process server.
        return RecordingStore(f"fwspool-{launch_id}-{name}", name, writes)

    spooled = JobStore(
        store("docs"),
        {name: store(name) for name in original.additional_stores},
        save=original.save,
        load=original.load,
    )
    spooled.connect()
    return spooled


def _load_inputs(job: Any, spooled: Any, cache: str) -> None:
    """The outputs the job's references name, from the cache into the spooled stores; and the
    outputs those name in turn (a replaced job's output is a reference to its replacement's)."""
    from jobflow.core.reference import OnMissing

    missing = []
    wanted = sorted(set(job.input_uuids))
    seen = set(wanted)
    while wanted:
        uuid = wanted.pop()
        outputs = cached_outputs(cache, uuid)
        if outputs is None:
            missing.append(uuid)
            continue
        for store_name, docs in outputs:
            if store_name == "docs":
                spooled.docs_store.preload(docs, DOCS_KEY)
                further = {u for doc in docs for u in referenced_jobs(doc.get("output"))} - seen
                seen |= further
                wanted.extend(sorted(further))
            elif store_name in spooled.additional_stores:
                spooled.additional_stores[store_name].preload(docs, BLOB_KEY)
    if missing and job.config.on_missing_references == OnMissing.ERROR:
        raise MissingInputs(
            f"job {job.name} ({job.uuid}) needs the outputs of {', '.join(sorted(missing))}, which are not in "
            f"the jobflow output cache {cache}: not run; its reservation is handed back (READY again at "
            "the next push)"
        )


def _run_spooled(
    task: Any,
    run_task: Callable[[Any, dict[str, Any]], Any],
    spooled: Any,
    writes: list[tuple[str, list[str], list[dict[str, Any]]]],
    launch_dir: str,
    record: Callable[[JobOutputs], None],
    spool_mode: int,
    fw_spec: dict[str, Any],
) -> Any:
    """The task's own ``run_task`` with the spooled store in place of its own; its writes
    recorded (large ones to side files) whether the job succeeded or raised."""
    own = task.get("store")
    job = task.get("job")
    task["store"] = spooled
    try:
        action = run_task(task, fw_spec)
    finally:
        task["store"] = own
        if writes:
            stored = record_writes(launch_dir, writes, spool_mode)
            described = None if own is None else jsanitize(own.as_dict(), strict=True, allow_bson=False)
            record(JobOutputs(job_uuid=job.uuid, job_index=job.index, job_store=described, writes=stored))
    _give_back_store(action, spooled, own)
    return action


def _give_back_store(action: Any, spooled: Any, own: Any) -> None:
    """New Fireworks of the FWAction carry the task's own store (jobflow gives them
    ``self.get("store")``, which was the spooled one during the run)."""
    for wf in list(action.detours or []) + list(action.additions or []):
        for fw in getattr(wf, "fws", [wf]):
            for t in fw.tasks:
                if is_job_task(t) and t.get("store") is spooled:
                    t["store"] = own
