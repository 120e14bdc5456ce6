"""The operator's side of the journal: the questions ``fwspool status`` and people ask.

The same answers are views in the database itself (``launch_status``, ``pending_events``,
``quarantined``: ``schema/journal.sql``), for the ``sqlite3`` shell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fwspool.journal.database import JournalDatabase

#: The ``meta`` key of the last push pass that reached the database (its end, ISO-8601 UTC).
LAST_PUSH_KEY = "last_successful_push"

_SUMMARY = """
SELECT (SELECT count(*) FROM launches) AS launches,
       (SELECT count(*) FROM launches WHERE terminal_at IS NULL AND forgotten_at IS NULL) AS open,
       (SELECT count(*) FROM launches WHERE terminal_at IS NOT NULL AND forgotten_at IS NULL) AS final,
       (SELECT count(*) FROM launches WHERE forgotten_at IS NOT NULL) AS forgotten,
       (SELECT count(*) FROM events) AS events,
       (SELECT count(*) FROM pending_events) AS pending,
       (SELECT min(ingested_at) FROM pending_events) AS oldest_pending,
       (SELECT value FROM meta WHERE key = ?) AS last_push,
       (SELECT count(*) FROM quarantine) AS quarantined"""


@dataclass(frozen=True, slots=True)
class JournalSummary:
    """The journal in a few numbers: what the daemon logs on SIGUSR1 and when idle."""

    launches: int
    #: Launches still running or waiting for their end; final ones; forgotten ones.
    open: int
    final: int
    forgotten: int
    events: int
    #: Events waiting to be pushed, and the oldest one's ingest time (the push lag).
    pending: int
    oldest_pending: str | None
    #: When the last push pass that reached the database ended.
    last_push: str | None
    quarantined: int


class OperatorViews(JournalDatabase):
    """The journal as people read it."""

    def launch_status(self) -> list[dict[str, Any]]:
        """One row per launch: its last event, how many events are pending, pushed, superseded."""
        return self.query("SELECT * FROM launch_status")

    def count_events(self, where: str = "1=1", params: Sequence[Any] = ()) -> int:
        """How many events match an SQL condition on the ``events`` table."""
        with self.reading() as db:
            value = db.execute(f"SELECT count(*) FROM events WHERE {where}", tuple(params)).fetchone()[0]
        return int(value or 0)

    def summary(self) -> JournalSummary:
        """Counts, the push lag and the last push, in one read."""
        with self.reading() as db:
            cursor = db.execute(_SUMMARY, (LAST_PUSH_KEY,))
            names = [d[0] for d in cursor.description]
            row = dict(zip(names, cursor.fetchone(), strict=True))
        return JournalSummary(**row)

    def pending_summary(self) -> tuple[int, str | None]:
        """How many events wait to be pushed, and the oldest one's ingest time."""
        rows = self.query("SELECT count(*) AS n, min(ingested_at) AS oldest FROM pending_events")
        return int(rows[0]["n"]), rows[0]["oldest"]
