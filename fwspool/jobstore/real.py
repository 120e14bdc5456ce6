"""Login node: the real JobStores the pushed outputs go to, connected once per pusher.

A launch's outputs name their JobStore as the task did (:attr:`fwspool.events.JobOutputs.job_store`):
the task's own, serialized, else None for the login node's ``jobflow.SETTINGS.JOB_STORE``
(``~/.jobflow.yaml``, ``JOBFLOW_CONFIG_FILE``, ``JOBFLOW_JOB_STORE``). Each write is replayed
with the key jobflow gave it: ``(uuid, index)`` for the docs store, ``blob_uuid`` for an
additional store's blobs, so writing an output twice leaves one copy (maggma's ``MongoStore``
replaces by key, ``GridFSStore`` drops the older file of a key).
"""

from __future__ import annotations

import json
from typing import Any

from fwspool.errors import DataError, UplinkUnavailable
from fwspool.events import JobOutputs

__all__ = ["JobStores", "blob_references", "in_memory", "referenced_jobs"]


class JobStores:
    """The JobStores of one pusher, by their serialized form, and the shared output cache."""

    def __init__(self, cache: str | None = None) -> None:
        from fwspool.jobstore.cache import cache_dir

        self.cache = cache or cache_dir()
        self._connected: dict[str, Any] = {}

    def store_for(self, described: dict[str, Any] | None) -> Any:
        """The connected JobStore a launch's outputs name."""
        name = json.dumps(described, sort_keys=True)
        store = self._connected.get(name)
        if store is None:
            from jobflow import SETTINGS, JobStore

            store = SETTINGS.JOB_STORE if described is None else JobStore.from_dict(described)
            if in_memory(store):
                raise DataError(
                    "the JobStore is an in-memory store (jobflow's JOB_STORE on this login node, which the "
                    "task uses as it names none): the outputs would be lost; set JOB_STORE in ~/.jobflow.yaml "
                    "(or JOBFLOW_CONFIG_FILE) to the store the flow should write"
                )
            self._connected[name] = store = _connected(store)
        return store

    def write(self, outputs: JobOutputs, docs_of: list[tuple[str, list[str], list[dict[str, Any]]]]) -> None:
        """Write one job's outputs to its real JobStore, then to the cache its children read."""
        from fwspool.jobstore.cache import put_outputs

        store = self.store_for(outputs.job_store)
        try:
            # Blobs first: a docs document never names a blob that is not there yet.
            for name, key, docs in sorted(docs_of, key=lambda w: w[0] == "docs"):
                target = store.docs_store if name == "docs" else store.additional_stores[name]
                target.update(docs, key=key)
        except Exception as exc:
            raise _unavailable(store, exc) from exc
        put_outputs(self.cache, outputs.job_uuid, outputs.job_index, [(n, d) for n, _, d in docs_of])

    def fill_cache(self, described: dict[str, Any] | None, uuids: list[str]) -> list[str]:
        """Put the outputs of these jobs (and of the jobs their outputs refer to) from the real
        JobStore into the cache, where they are not yet: for a job whose inputs did not pass
        through fwspool (a parent run online). Returns the uuids the JobStore has no output of."""
        from fwspool.jobstore.cache import cached_outputs, put_outputs

        store = self.store_for(described)
        missing: list[str] = []
        wanted, seen = sorted(set(uuids)), set(uuids)
        try:
            while wanted:
                uuid = wanted.pop()
                if cached_outputs(self.cache, uuid) is not None:
                    continue
                docs = [_without_id(d) for d in store.docs_store.query({"uuid": uuid})]
                if not docs:
                    missing.append(uuid)
                for doc in docs:
                    writes: list[tuple[str, list[dict[str, Any]]]] = [("docs", [doc])]
                    for ref in blob_references(doc):
                        blob_store = store.additional_stores[ref["store"]]
                        found = [_without_id(b) for b in blob_store.query({"blob_uuid": ref["blob_uuid"]})]
                        writes.append((ref["store"], found))
                    put_outputs(self.cache, uuid, doc["index"], writes)
                    further = referenced_jobs(doc.get("output")) - seen
                    seen |= further
                    wanted.extend(sorted(further))
        except Exception as exc:
            raise _unavailable(store, exc) from exc
        return missing

    def close(self) -> None:
        for store in self._connected.values():
            try:
                store.close()
            except Exception:
                pass
        self._connected.clear()


def _without_id(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


def blob_references(value: Any) -> list[dict[str, Any]]:
    """The references to additional-store blobs in a docs-store document (``blob_uuid``, ``store``)."""
    if isinstance(value, dict):
        if isinstance(value.get("blob_uuid"), str) and isinstance(value.get("store"), str):
            return [value]
        return [r for v in value.values() for r in blob_references(v)]
    if isinstance(value, list):
        return [r for v in value for r in blob_references(v)]
    return []


def referenced_jobs(value: Any) -> set[str]:
    """The job uuids of the serialized OutputReferences in a value (a job's arguments, an output)."""
    if isinstance(value, dict):
        if value.get("@class") == "OutputReference" and isinstance(value.get("uuid"), str):
            return {value["uuid"]}
        return {u for v in value.values() for u in referenced_jobs(v)}
    if isinstance(value, list):
        return {u for v in value for u in referenced_jobs(v)}
    return set()


def in_memory(store: Any) -> bool:
    """Whether a JobStore keeps its documents in this process only (maggma's ``MemoryStore``)."""
    from maggma.stores import MemoryStore

    return isinstance(store.docs_store, MemoryStore)


def _connected(store: Any) -> Any:
    try:
        store.connect()
    except Exception as exc:
        raise _unavailable(store, exc) from exc
    return store


def _unavailable(store: Any, exc: Exception) -> UplinkUnavailable:
    from pymongo.errors import PyMongoError

    if not isinstance(exc, PyMongoError | OSError):
        raise exc
    where = getattr(store.docs_store, "name", type(store.docs_store).__name__)
    return UplinkUnavailable(f"the JobStore {where} is unreachable ({type(exc).__name__})")
