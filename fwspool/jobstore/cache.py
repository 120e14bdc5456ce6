"""The shared cache of job outputs: where a child's references resolve on the compute node.

The push that writes a job's outputs to the real JobStore writes them here too, before it
completes the launch (:mod:`fwspool.launchpad.job_outputs`): the children of that Firework become
READY only afterwards, so whoever reserves them (FireWorks' own ``qlaunch -r`` included) and
however soon their job starts, their inputs are here. The compute node only reads it.

One file per job output, ``<cache>/<job uuid>/<index>.ejson``: the writes of that output (the
docs store's document and every additional store's blobs) as Extended JSON, written under a
temporary name and renamed, so a reader never sees half of one. The directory must be on a
filesystem both nodes see, like the launch directories: ``$FWSPOOL_JOBFLOW_CACHE``, else
``~/.fwspool/jobflow-outputs``.

Retention (``fwspool prune``, and ``sync``'s daily prune) drops the outputs written before its
horizon (:func:`prune_cache`). A child that still needs one later is not lost: its job finds the
output missing and does not run, and the push that hands its reservation back copies the output
from the JobStore into the cache again (one wasted batch job).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fwspool.errors import DataError
from fwspool.jobstore.outputs import decode_docs, encode_docs, write_durably

__all__ = ["CachePruneSummary", "cache_dir", "cached_outputs", "prune_cache", "put_outputs"]

#: A job uuid as a directory name: what jobflow draws (uuid4, or a ULID), nothing with a separator.
_UUID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$FWSPOOL_JOBFLOW_CACHE``, else ``~/.fwspool/jobflow-outputs``."""
    env = os.environ if environ is None else environ
    return env.get("FWSPOOL_JOBFLOW_CACHE") or os.path.join(
        os.path.expanduser("~"), ".fwspool", "jobflow-outputs"
    )


def _job_dir(cache: str, job_uuid: str) -> str:
    if not _UUID.match(job_uuid):
        raise DataError(f"{job_uuid!r} is not a job uuid fwspool can cache")
    return os.path.join(cache, job_uuid)


def put_outputs(
    cache: str, job_uuid: str, job_index: int, writes: list[tuple[str, list[dict[str, Any]]]]
) -> str:
    """Keep one job output's writes (``(store name, documents)``, ``docs`` for the docs store);
    writing the same output again replaces it with the same content. Returns the file's path."""
    directory = _job_dir(cache, job_uuid)
    # Outputs are results: private to their owner, like the journal (makedirs' mode is the leaf's).
    os.makedirs(cache, mode=0o700, exist_ok=True)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f"{int(job_index)}.ejson")
    body = [{"store": store, "docs": docs} for store, docs in writes]
    write_durably(path, encode_docs(body).encode())
    return path


def cached_outputs(cache: str, job_uuid: str) -> list[tuple[str, list[dict[str, Any]]]] | None:
    """Every cached output of a job, all indices, as ``(store name, documents)``; None when the
    cache has none of its outputs."""
    directory = _job_dir(cache, job_uuid)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".ejson"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DataError(f"cannot read the jobflow output cache {directory}: {exc.strerror or exc}") from exc
    if not names:
        return None
    writes: list[tuple[str, list[dict[str, Any]]]] = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as f:
                body = decode_docs(f.read())
        except OSError as exc:
            raise DataError(f"cannot read the jobflow output cache {path}: {exc.strerror or exc}") from exc
        writes.extend((entry["store"], entry["docs"]) for entry in body)
    return writes


@dataclass(slots=True)
class CachePruneSummary:
    """What one prune of the output cache dropped."""

    cache: str
    #: Output files (and leftover temporary files) dropped, the jobs left with none, their bytes.
    files: int = 0
    jobs: int = 0
    size: int = 0

    def changed(self) -> bool:
        return bool(self.files or self.jobs)

    def line(self) -> str:
        return (
            f"prune: {self.files} cached jobflow outputs ({self.size / (1024 * 1024):.1f} MiB) dropped, "
            f"{self.jobs} jobs left with none, from {self.cache}"
        )


def prune_cache(cache: str, horizon: float) -> CachePruneSummary:
    """Drop the cached outputs written before ``horizon`` (seconds since the epoch, compared with
    each file's modification time), and the job directories left empty. A directory that is
    not a job's, or a file that vanished meanwhile, is left alone."""
    summary = CachePruneSummary(cache)
    try:
        jobs = sorted(os.scandir(cache), key=lambda e: e.name)
    except FileNotFoundError:
        return summary
    except OSError as exc:
        raise DataError(f"cannot read the jobflow output cache {cache}: {exc.strerror or exc}") from exc
    for job in jobs:
        if not _UUID.match(job.name) or not job.is_dir(follow_symlinks=False):
            continue
        try:
            entries = list(os.scandir(job.path))
        except FileNotFoundError:  # pruned meanwhile by another prune
            continue
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
                if not entry.is_file(follow_symlinks=False) or stat.st_mtime >= horizon:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            summary.files += 1
            summary.size += stat.st_size
        try:
            os.rmdir(job.path)  # only if empty: a push may have written an output meanwhile
        except OSError:
            continue
        summary.jobs += 1
    return summary
