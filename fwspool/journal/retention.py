"""Retention: what the journal drops once it can no longer matter, and the space it gives back
(``fwspool prune``, and ``fwspool sync`` once a day).

The policy, for a horizon (``--older-than``, ``--retain``; 30 days by default):

- **Pings and checkpoints** of launches that are over: final (``terminal_at`` set) before the
  horizon, every event pushed, not forgotten, and no spool file of theirs with a torn tail still
  waiting for its bytes. They are the running phase's heartbeat; the LaunchPad already holds the
  last of them (the RUNNING entry's ``updated_on`` and ``checkpoint``).
- **Quarantined bytes** older than the horizon: the copy in ``quarantine.bytes`` becomes empty.
  The row stays (path, offset, length, reason), and so does the damaged range in its spool file,
  which is what ``--retry-quarantined`` reads.
- Kept for the record, always: every launch, its started, completed, exited, lost and released
  events, notes and directory changes, every source file's row and committed offset, forget
  requests. Nothing of a launch that is still open, pending, forgotten or torn.

Why a pruned event cannot come back and be applied again. Exactly-once rests on two things: a
source file is read from its committed offset (and the offsets stay), and an event already in the
journal is one row (its id). Pruning removes the second guard for pings and checkpoints, so:

- Ingest does not read the files of a final launch at all (only a torn tail, and launches with a
  torn tail are not pruned), and reads any file from its committed offset, not from 0.
- A file is read from 0 only when it is new to the journal (a copy of the launch directory found
  under another ``--root`` path) or was replaced or truncated under its name
  (:mod:`fwspool.ingest.spool_file`). Then its pruned pings and checkpoints come back as new
  events (the others are still rows: duplicates). They cannot change the LaunchPad: the launch is
  final there, and a ping or checkpoint touches only a RUNNING launch, as FireWorks'
  ``ping_launch`` does (:func:`fwspool.runs.changed_launch_doc`); they are pushed as no-ops and
  pruned again later.

Space: SQLite reuses freed pages but does not shrink its file unless ``auto_vacuum`` is
``INCREMENTAL`` (or ``FULL``). A journal that is not is converted once, by ``VACUUM`` (which
rewrites the file: it needs as much free disk as the journal takes, and holds the journal's write
lock meanwhile); from then on ``PRAGMA incremental_vacuum`` hands the freed pages back to the
filesystem after each prune.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from dataclasses import dataclass

from fwspool.errors import JournalError
from fwspool.events import iso, utcnow
from fwspool.journal.database import JournalDatabase
from fwspool.journal.schema import in_chunks
from fwspool.journal.summary import summarize

#: The ``meta`` key of the last prune (its time, ISO-8601 UTC): ``sync`` prunes once a day.
LAST_PRUNE_KEY = "last_prune"
#: Event types retention drops from launches that are over.
PRUNED_TYPES = ("ping", "checkpoint")

#: Launches that are over, whose pings and checkpoints may go: final before the horizon, not
#: forgotten, nothing pending, no torn tail waiting, and something left to drop.
_PRUNABLE_LAUNCHES = """
SELECT l.launch_id FROM launches AS l
WHERE l.terminal_at IS NOT NULL AND l.terminal_at < ? AND l.forgotten_at IS NULL
  AND l.launch_id NOT IN (SELECT launch_id FROM events WHERE pushed_at IS NULL)
  AND l.launch_id NOT IN (SELECT launch_id FROM sources WHERE status = 'torn' AND launch_id IS NOT NULL)
  AND EXISTS (SELECT 1 FROM events AS e WHERE e.launch_id = l.launch_id AND e.type IN ('ping', 'checkpoint'))
ORDER BY l.launch_id"""


@dataclass(slots=True)
class PruneSummary:
    """What one prune dropped and gave back."""

    #: Launches whose pings and checkpoints were dropped, and how many events that was.
    launches: int = 0
    events: int = 0
    #: Quarantined ranges whose copied bytes were dropped, and how many bytes.
    quarantined: int = 0
    quarantined_bytes: int = 0
    #: The journal's size on disk (the file and its write-ahead log) before and after.
    size_before: int = 0
    size_after: int = 0
    #: Whether this prune converted the journal to incremental vacuum (a one-time VACUUM).
    vacuumed: bool = False

    def changed(self) -> bool:
        """Whether anything was dropped."""
        return bool(self.events or self.quarantined)

    def line(self) -> str:
        return (
            f"prune: {self.events} pings and checkpoints of {self.launches} finished launches dropped, "
            f"{self.quarantined} quarantined copies ({_size(self.quarantined_bytes)}) dropped; "
            f"journal {_size(self.size_before)} -> {_size(self.size_after)}"
            + (" (converted to incremental vacuum, once)" if self.vacuumed else "")
        )


class Retention(JournalDatabase):
    """The journal's retention policy (this module's docstring)."""

    def prune(self, horizon: dt.datetime, *, now: dt.datetime | None = None) -> PruneSummary:
        """Drop what can no longer matter from before ``horizon``, then reclaim the space."""
        summary = PruneSummary(size_before=self.size_on_disk())
        cutoff = iso(horizon)
        with self.transaction() as db:
            launch_ids = [row[0] for row in db.execute(_PRUNABLE_LAUNCHES, (cutoff,))]
            for chunk, marks in in_chunks(launch_ids):
                summary.events += db.execute(
                    f"DELETE FROM events WHERE launch_id IN ({marks}) "
                    "AND type IN ('ping', 'checkpoint') AND pushed_at IS NOT NULL",
                    tuple(chunk),
                ).rowcount
            summary.launches = len(launch_ids)
            if summary.events:
                summarize(db, launch_ids)  # what status reads, in the same transaction
            # Empty, not NULL: a NULL copy marks a refused file, which --retry-quarantined skips.
            summary.quarantined, summary.quarantined_bytes = db.execute(
                "SELECT count(*), coalesce(sum(length(bytes)), 0) FROM quarantine "
                "WHERE quarantined_at < ? AND length(bytes) > 0",
                (cutoff,),
            ).fetchone()
            db.execute(
                "UPDATE quarantine SET bytes = X'' WHERE quarantined_at < ? AND length(bytes) > 0", (cutoff,)
            )
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (LAST_PRUNE_KEY, iso(now or utcnow())),
            )
        summary.vacuumed = self.reclaim_space(convert=summary.changed())
        try:
            # The write-ahead log back to nothing, so that the sizes compare the journal itself.
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:
            pass  # a reader holds it: the next checkpoint will do
        summary.size_after = self.size_on_disk()
        return summary

    def reclaim_space(self, *, convert: bool = True) -> bool:
        """Give the free pages back to the filesystem (they leave the file at the next
        checkpoint); whether that took the one-time VACUUM (only with ``convert``: not for the few
        pages a day without pruning leaves)."""
        db = self.db
        try:
            if not db.execute("PRAGMA freelist_count").fetchone()[0]:
                return False
            incremental = db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            if incremental:
                # One page per step: through sqlite3_exec, which steps until done (execute()
                # steps once).
                db.executescript("PRAGMA incremental_vacuum;")
            elif convert:
                # Setting it changes nothing on a journal with tables until the VACUUM rebuilds it.
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                db.execute("VACUUM")
            else:
                return False
        except sqlite3.OperationalError as exc:
            raise JournalError(
                f"journal {self.path}: cannot reclaim space: {exc} (VACUUM needs as much free disk as the journal takes)"
            ) from exc
        return not incremental

    def size_on_disk(self) -> int:
        """Bytes of the journal file and its write-ahead log."""
        total = 0
        for path in (self.path, self.path + "-wal"):
            try:
                total += os.path.getsize(path)
            except OSError:
                pass
        return total


def _size(n: int) -> str:
    if n < 10 * 1024:
        return f"{n} B"
    if n < 10 * 1024 * 1024:
        return f"{n // 1024} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"
