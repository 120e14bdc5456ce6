"""The operator's side of the journal: the questions ``fwspool status`` and people ask.

The same answers are views in the database itself (``launch_status``, ``pending_events``,
``quarantined``: ``schema/journal.sql``), for the ``sqlite3`` shell.
"""

from __future__ import annotations

import posixpath
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

    def blocks(self) -> list[dict[str, Any]]:
        """Launches grouped by block directory and batch job (``fwspool qlaunch --pack``: one
        ``block_*`` directory per job, one ``launcher_*`` directory per launch), each group with
        how many of its launches completed, fizzled, run now, ended without a result (a signal,
        a lost job, a failed start), were released, or have recorded nothing yet. Only launches
        whose directory's parent is a ``block_*`` directory count; FireWorks' own ``qlaunch
        rapidfire`` jobs (one launch per job) appear as blocks of one launch each."""
        rows = self.query(_BLOCK_LAUNCHES)
        groups: dict[tuple[str, str | None], dict[str, Any]] = {}
        for row in rows:
            launch_dir = row["launch_dir"] or ""
            block_dir = posixpath.dirname(launch_dir.rstrip("/"))
            if not posixpath.basename(block_dir).startswith("block_"):
                continue
            key = (block_dir, row["batch_job_id"])
            group = groups.setdefault(
                key,
                {
                    "block_dir": block_dir,
                    "batch_job_id": row["batch_job_id"],
                    "launches": 0,
                    **dict.fromkeys(BLOCK_COUNTS, 0),
                },
            )
            group["launches"] += 1
            group[_block_count(row["completed_state"], row["last_run"])] += 1
        return sorted(groups.values(), key=lambda g: (g["block_dir"], g["batch_job_id"] or ""))


#: The counts of :meth:`OperatorViews.blocks`, one per launch.
BLOCK_COUNTS = ("completed", "fizzled", "running", "ended", "released", "not_started")

_BLOCK_LAUNCHES = """
SELECT l.launch_id, l.launch_dir, l.batch_job_id,
       (SELECT json_extract(e.payload, '$.state') FROM events AS e
        WHERE e.launch_id = l.launch_id AND e.type = 'completed'
        ORDER BY e.occurred_at DESC, e.event_id DESC LIMIT 1) AS completed_state,
       (SELECT e.type FROM events AS e
        WHERE e.launch_id = l.launch_id AND e.type IN ('started', 'exited', 'completed', 'lost', 'released')
        ORDER BY e.occurred_at DESC, e.event_id DESC LIMIT 1) AS last_run
FROM launches AS l
WHERE l.launch_dir IS NOT NULL AND l.forgotten_at IS NULL
ORDER BY l.launch_id"""


def _block_count(completed_state: str | None, last_run: str | None) -> str:
    if completed_state == "COMPLETED":
        return "completed"
    if completed_state == "FIZZLED":
        return "fizzled"
    if last_run == "released":
        return "released"
    if last_run == "started":
        return "running"
    if last_run in ("exited", "lost"):
        return "ended"
    return "not_started"
