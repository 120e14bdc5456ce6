"""A journal by its path, for tests and tools: one ingest pass, one push pass, both, and a query."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fwspool.ingest import Ingester, IngestSummary
from fwspool.journal import Journal
from fwspool.push import Pusher
from fwspool.testing.launchpad import uplink_for

__all__ = ["ingest", "ingest_and_push", "query"]


def ingest(journal_path: str, *roots: str | Path, **kwargs: Any) -> IngestSummary:
    """One ingest pass over ``roots``; ``kwargs`` go to :class:`Ingester`."""
    with Journal.open(journal_path) as journal:
        return Ingester(journal, roots=[str(r) for r in roots], **kwargs).run_pass()


def query(journal_path: str, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    with Journal.open(journal_path) as journal:
        return journal.query(sql, params)


def ingest_and_push(journal_path: str, uri: str, name: str, roots: Iterable[str] = ()) -> Any:
    """One ingest pass over ``roots``, then one push pass to LaunchPad ``name``; the push summary."""
    with Journal.open(journal_path) as journal:
        Ingester(journal, roots=tuple(roots)).run_pass()
        uplink = uplink_for(uri, name)
        try:
            return Pusher(journal, uplink).run_pass()
        finally:
            uplink.close()
