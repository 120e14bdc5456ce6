"""Ingest's side of the journal: what to read, and committing what was read.

Exactly-once starts here. :meth:`IngestStore.commit_ingest` commits a batch's events together
with the source offsets that cover them, in one transaction: after a crash at any moment each
event is either in (with its offset) or out (and read again from the old offset). An event's id
is its writer's id and sequence number, and ``ON CONFLICT DO NOTHING`` makes a record read twice
one row; SQLite's change count says how many were really new.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from fwspool.events import iso, utcnow
from fwspool.journal.database import JournalDatabase, in_chunks, insert_rows
from fwspool.journal.rows import (
    EVENT_ROW_COLUMNS,
    BatchLaunch,
    BatchView,
    EventRow,
    IngestBatch,
    IngestCounts,
    KnownSource,
    LaunchRow,
    QuarantinedRecord,
    QuarantineRow,
)
from fwspool.journal.schema import quote

#: At most this many quarantined bytes are copied into the journal; the spool keeps the rest.
QUARANTINE_KEEP = 1024 * 1024

_EVENT_COLUMNS = (*EVENT_ROW_COLUMNS, "source_id", "ingested_at")
_QUARANTINE_COLUMNS = ("source_id", "path", "offset", "length", "reason", "bytes", "quarantined_at")
_LAUNCH_COLUMNS = (*LaunchRow._fields, "first_seen_at")

#: Fill in what an earlier source could not know (fw_id, launch_dir), never overwrite them; the
#: batch job of the newest run wins, and a new job is not "gone" because the old one was.
_LAUNCH_UPSERT = (
    "ON CONFLICT (launch_id) DO UPDATE SET fw_id = coalesce(launches.fw_id, excluded.fw_id), "
    "launch_dir = coalesce(launches.launch_dir, excluded.launch_dir), "
    "batch_gone_at = CASE WHEN excluded.batch_job_id IS NOT NULL "
    "AND excluded.batch_job_id IS NOT launches.batch_job_id THEN NULL ELSE launches.batch_gone_at END, "
    "batch_job_id = coalesce(excluded.batch_job_id, launches.batch_job_id), "
    "batch_system = coalesce(excluded.batch_system, launches.batch_system)"
)

_SCAN_DIRS = """
SELECT launch_id, launch_dir FROM launches
WHERE terminal_at IS NULL AND forgotten_at IS NULL AND launch_dir IS NOT NULL"""

_KNOWN_SOURCES = """
SELECT s.path, s.kind, s.launch_id, s.writer_id, s.dev, s.ino, s.fingerprint, s.committed_offset,
       s.content_hash, s.status, s.status_detail, l.terminal_at, l.forgotten_at,
       s.kind = 'fw_offline' AND EXISTS (
           SELECT 1 FROM events AS e
           WHERE e.launch_id = s.launch_id AND e.type = 'started' AND e.source_offset IS NOT NULL)
FROM sources AS s LEFT JOIN launches AS l ON l.launch_id = s.launch_id"""

_BATCH_LAUNCHES = """
SELECT l.launch_id, l.fw_id, l.launch_dir, l.batch_job_id, l.batch_system, l.batch_gone_at,
       (SELECT e.type || ':' || coalesce(json_extract(e.payload, '$.signal'), '')
        FROM events AS e
        WHERE e.launch_id = l.launch_id
          AND e.type IN ('started', 'exited', 'completed', 'lost', 'released')
        ORDER BY e.occurred_at DESC, e.event_id DESC LIMIT 1) AS last
FROM launches AS l
WHERE l.terminal_at IS NULL AND l.forgotten_at IS NULL AND l.batch_job_id IS NOT NULL
ORDER BY l.launch_id"""

_RETRYABLE_QUARANTINE = """
SELECT q.quarantine_id, q.path, q."offset", q.length, q.reason, s.launch_id, s.dev, s.ino
FROM quarantine AS q JOIN sources AS s ON s.source_id = q.source_id
WHERE s.kind = 'spool' AND q.bytes IS NOT NULL AND q.length > 0
  AND q.reason NOT LIKE 'event % is already in the journal%'
ORDER BY q.path, q."offset"
"""

#: Launches learned after a forget are forgotten too: the newest request per key decides.
_FORGET_LATE_LAUNCHES = """
UPDATE launches SET forgotten_at = ?
WHERE forgotten_at IS NULL AND (
    (SELECT forget FROM forget_requests WHERE kind = 'fw_id' AND value = launches.fw_id
     ORDER BY request_id DESC LIMIT 1) = 1
    OR (SELECT forget FROM forget_requests WHERE kind = 'launch_id' AND value = launches.launch_id
     ORDER BY request_id DESC LIMIT 1) = 1)"""


class IngestStore(JournalDatabase):
    """The journal as ingest uses it."""

    def scan_targets(self) -> tuple[list[tuple[int, str]], dict[str, KnownSource]]:
        """What an ingest pass looks at: the directories of launches still in progress, and every
        known source file's row by path (:class:`~fwspool.journal.rows.KnownSource`)."""
        with self.reading() as db:
            dirs = [(launch_id, launch_dir) for launch_id, launch_dir in db.execute(_SCAN_DIRS)]
            known = {
                row[0]: KnownSource._make((*row[:-1], bool(row[-1]))) for row in db.execute(_KNOWN_SOURCES)
            }
        return dirs, known

    def commit_ingest(self, batch: IngestBatch) -> IngestCounts:
        """Commit one ingest batch atomically: launches, events, source offsets, quarantine."""
        counts = IngestCounts()
        now = iso(utcnow())
        with self.transaction() as db:
            if batch.launches:
                insert_rows(
                    db, "launches", _LAUNCH_COLUMNS, [(*r, now) for r in batch.launches], _LAUNCH_UPSERT
                )
            _upsert_sources(db, batch, now)
            source_ids = _source_ids(db, {*batch.events, *(q.path for q in batch.quarantine)})
            if batch.events:
                event_rows: list[tuple[Any, ...]] = []
                for path, of_path in batch.events.items():
                    tail = (source_ids.get(path), now)
                    event_rows += [row + tail for row in of_path]  # one C-level concatenation each
                counts.new_events = insert_rows(
                    db, "events", _EVENT_COLUMNS, event_rows, "ON CONFLICT DO NOTHING"
                )
                counts.duplicates = len(event_rows) - counts.new_events
            if batch.quarantine:
                damaged = [(source_ids.get(q.path), *q, now) for q in batch.quarantine]
                counts.quarantined = insert_rows(
                    db, "quarantine", _QUARANTINE_COLUMNS, damaged, "ON CONFLICT DO NOTHING"
                )
            if counts.duplicates:
                _quarantine_conflicts(db, batch, source_ids, now, counts)
            for chunk, marks in in_chunks(batch.unquarantined):
                db.execute(f"DELETE FROM quarantine WHERE quarantine_id IN ({marks})", tuple(chunk))
            if batch.launches:
                forget_late_launches(db, now)
            _mark_terminal(db, batch.terminal_launches, now)
            # A signal ends the launch only when no batch job may run it again (fwspool.runs).
            _mark_terminal(db, batch.signal_exits, now, "AND batch_job_id IS NULL")
        return counts

    def quarantined_spool_records(self) -> list[QuarantinedRecord]:
        """Quarantined ranges of spool files that could be read again with larger limits: not
        those of refused files (never read) nor records whose id another file holds."""
        with self.reading() as db:
            rows = db.execute(_RETRYABLE_QUARANTINE).fetchall()
        return [QuarantinedRecord._make(row) for row in rows]

    # -- the batch system's view -------------------------------------------------------------

    def batch_launches(self) -> list[BatchLaunch]:
        """Open launches with a batch job whose fate is not decided yet (no lost/released event)."""
        with self.reading() as db:
            rows = db.execute(_BATCH_LAUNCHES).fetchall()
        out = []
        for launch_id, fw_id, launch_dir, job, system, gone_at, last in rows:
            kind, _, sig = (last or "").partition(":")
            out.append(
                BatchLaunch(launch_id, fw_id, launch_dir, job, system, gone_at, kind or None, bool(sig))
            )
        return out

    def record_batch_view(self, view: BatchView) -> int:
        """Commit one batch-system check; returns how many inferred events were new."""
        if view.empty():
            return 0
        now = iso(utcnow())
        with self.transaction() as db:
            db.executemany(
                "UPDATE launches SET batch_system = ? WHERE launch_id = ?",
                [(system, launch_id) for launch_id, system in view.systems.items()],
            )
            for chunk, marks in in_chunks(view.gone):
                db.execute(
                    f"UPDATE launches SET batch_gone_at = ? WHERE launch_id IN ({marks}) AND batch_gone_at IS NULL",
                    (now, *chunk),
                )
            for chunk, marks in in_chunks(view.back):
                db.execute(
                    f"UPDATE launches SET batch_gone_at = NULL WHERE launch_id IN ({marks})", tuple(chunk)
                )
            rows = [(*row, None, now) for row in view.inferred]
            new = insert_rows(db, "events", _EVENT_COLUMNS, rows, "ON CONFLICT DO NOTHING")
            _mark_terminal(db, view.terminal, now)
        return new

    def settled_launches(self, launch_ids: Sequence[int]) -> dict[int, bool]:
        """For each of these launch ids the journal knows: whether it is over (final or forgotten)."""
        out: dict[int, bool] = {}
        with self.reading() as db:
            for chunk, marks in in_chunks(launch_ids):
                for launch_id, terminal_at, forgotten_at in db.execute(
                    f"SELECT launch_id, terminal_at, forgotten_at FROM launches WHERE launch_id IN ({marks})",
                    tuple(chunk),
                ):
                    out[launch_id] = terminal_at is not None or forgotten_at is not None
        return out


def forget_late_launches(db: sqlite3.Connection, now: str) -> None:
    """Forget the launches a forget request names that were learned after it."""
    if db.execute("SELECT 1 FROM forget_requests LIMIT 1").fetchone() is None:
        return  # the common case: nothing was ever forgotten, so no scan of every launch
    db.execute(_FORGET_LATE_LAUNCHES, (now,))


def _upsert_sources(db: sqlite3.Connection, batch: IngestBatch, now: str) -> None:
    """Each source row by path, setting only the columns the row sets (one statement per shape)."""
    by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row in batch.sources:
        by_columns.setdefault(row.columns(), []).append((*row.values(), now, now))
    for columns, rows in by_columns.items():
        update = [c for c in columns if c != "path"] + ["updated_at"]
        conflict = f"ON CONFLICT (path) DO UPDATE SET {', '.join(f'{quote(c)} = excluded.{quote(c)}' for c in update)}"
        insert_rows(db, "sources", (*columns, "first_seen_at", "updated_at"), rows, conflict)


def _mark_terminal(
    db: sqlite3.Connection, launch_ids: Sequence[int] | set[int], now: str, extra: str = ""
) -> None:
    for chunk, marks in in_chunks(sorted(launch_ids)):
        db.execute(
            f"UPDATE launches SET terminal_at = ? WHERE launch_id IN ({marks}) AND terminal_at IS NULL {extra}",
            (now, *chunk),
        )


def _source_ids(db: sqlite3.Connection, paths: set[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk, marks in in_chunks(sorted(paths)):
        ids.update(db.execute(f"SELECT path, source_id FROM sources WHERE path IN ({marks})", tuple(chunk)))
    return ids


def _quarantine_conflicts(
    db: sqlite3.Connection, batch: IngestBatch, source_ids: dict[str, int], now: str, counts: IngestCounts
) -> None:
    """A duplicate is the same record read again, unless its content differs: then two writers
    claim one writer id (a copied or forged file), and the record is quarantined, not dropped."""
    conflicts = _conflicting_events(db, batch.events)
    if not conflicts:
        return
    rows = []
    per_file: dict[tuple[str, str], int] = {}
    for path, row, other in conflicts:
        assert row.source_offset is not None
        length, data = batch.frame_at(path, row.source_offset) if batch.frame_at else (0, b"")
        reason = (
            f"event {row.event_id} is already in the journal, from {other}, with other content: "
            f"two writers claim writer id {row.writer_id}"
        )
        q = QuarantineRow(path, row.source_offset, length, reason[:500], data[:QUARANTINE_KEEP])
        rows.append((source_ids.get(path), *q, now))
        per_file[(path, other)] = per_file.get((path, other), 0) + 1
    for (path, other), n in per_file.items():
        counts.problems.append(
            f"{n} records of {path} not ingested: their writer id is also {other}'s, with other "
            "content (quarantined)"
        )
    counts.duplicates -= len(conflicts)
    counts.quarantined += insert_rows(db, "quarantine", _QUARANTINE_COLUMNS, rows, "ON CONFLICT DO NOTHING")


def _conflicting_events(
    db: sqlite3.Connection, events: dict[str, list[EventRow]]
) -> list[tuple[str, EventRow, str]]:
    """Spool event rows whose id the journal holds with other content: (path, row, the path the
    journal's copy came from)."""
    ids = [row.event_id for rows in events.values() for row in rows if row.source_offset is not None]
    stored: dict[str, tuple[tuple[Any, ...], str]] = {}
    for chunk, marks in in_chunks(ids):
        for eid, *content, path in db.execute(
            "SELECT e.event_id, e.launch_id, e.fw_id, e.type, e.occurred_at, e.payload, s.path "
            "FROM events AS e LEFT JOIN sources AS s ON s.source_id = e.source_id "
            f"WHERE e.event_id IN ({marks})",
            tuple(chunk),
        ):
            stored[eid] = (tuple(content), path or "a file no longer known")
    out = []
    for path, rows in events.items():
        for row in rows:
            have = stored.get(row.event_id)
            mine = (row.launch_id, row.fw_id, row.type, row.occurred_at, row.payload)
            if row.source_offset is not None and have is not None and have[0] != mine:
                out.append((path, row, have[1]))
    return out
