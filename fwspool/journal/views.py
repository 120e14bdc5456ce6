"""The operator's side of the journal: the questions ``fwspool status`` and people ask.

The same answers are views in the database itself (``launch_status``, ``pending_events``,
``quarantined``: ``schema/journal.sql``), for the ``sqlite3`` shell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fwspool.journal.database import JournalDatabase


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

    def pending_summary(self) -> tuple[int, str | None]:
        """How many events wait to be pushed, and the oldest one's ingest time."""
        rows = self.query("SELECT count(*) AS n, min(ingested_at) AS oldest FROM pending_events")
        return int(rows[0]["n"]), rows[0]["oldest"]
