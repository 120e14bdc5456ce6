"""Ingest's side of the journal: what to read, and committing what was read.

Exactly-once starts here. :meth:`IngestStore.commit_ingest` commits a batch's events together
with the source offsets that cover them, in one transaction: after a crash at any moment each
event is either in (with its offset) or out (and read again from the old offset). An event's id
is its writer's id and sequence number, and ``ON CONFLICT DO NOTHING`` makes a record read twice
one row; SQLite's change count says how many were really new.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from fwspool.events import iso, utcnow
from fwspool.identity import LaunchHome, agrees
from fwspool.journal.database import JournalDatabase, insert_rows
from fwspool.journal.homes import read_homes, writer_has_events
from fwspool.journal.rows import (
    EVENT_ROW_COLUMNS,
    EventRow,
    IngestBatch,
    IngestCounts,
    KnownSource,
    LaunchRow,
    QuarantinedRecord,
    QuarantineRow,
    ScheduledLaunch,
    SchedulerView,
    SourceRow,
)
from fwspool.journal.schema import RUN_TYPES_SQL, in_chunks, quote
from fwspool.journal.summary import add_inserted, add_rows, events_high_water, summarize

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

#: Open launches whose directory may hold a file ingest does not know yet, even between the
#: passes that list every directory: no run started yet (its first spool file is still to come),
#: or the batch system no longer runs its job (a requeued job writes a second spool file).
_MUST_LIST = """
SELECT l.launch_id FROM launches AS l
WHERE l.terminal_at IS NULL AND l.forgotten_at IS NULL AND l.launch_dir IS NOT NULL
  AND (l.batch_gone_at IS NOT NULL
       OR NOT EXISTS (SELECT 1 FROM events AS e WHERE e.launch_id = l.launch_id AND e.type = 'started'))"""

_KNOWN_SOURCES = """
SELECT s.path, s.kind, s.launch_id, s.writer_id, s.dev, s.ino, s.fingerprint, s.committed_offset,
       s.content_hash, s.status, s.status_detail, l.terminal_at, l.forgotten_at,
       s.kind = 'fw_offline' AND EXISTS (
           SELECT 1 FROM events AS e
           WHERE e.launch_id = s.launch_id AND e.type = 'started' AND e.source_offset IS NOT NULL
             AND e.push_outcome IS NOT 'stray')
FROM sources AS s LEFT JOIN launches AS l ON l.launch_id = s.launch_id"""

_BATCH_LAUNCHES = f"""
SELECT l.launch_id, l.fw_id, l.launch_dir, l.batch_job_id, l.batch_system, l.batch_gone_at,
       (SELECT e.type || ':' || coalesce(json_extract(e.payload, '$.signal'), '')
        FROM events AS e
        WHERE e.launch_id = l.launch_id AND e.push_outcome IS NOT 'stray'
          AND e.type IN {RUN_TYPES_SQL}
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

    def launches_to_list(self) -> set[int]:
        """Open launches whose directory an ingest pass lists even when it lists no other
        (``_MUST_LIST``: no run started yet, or its batch job is gone)."""
        with self.reading() as db:
            return {row[0] for row in db.execute(_MUST_LIST)}

    def commit_ingest(self, batch: IngestBatch) -> IngestCounts:
        """Commit one ingest batch atomically: launches, events, source offsets, quarantine."""
        counts = IngestCounts()
        now = iso(utcnow())
        with self.transaction() as db:
            # Before anything is written: what ran in another directory than its launch's is
            # set aside, never merged into it (fwspool.identity).
            stray = _set_aside_strays(db, batch, counts)
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
                high_water = events_high_water(db)
                counts.new_events = insert_rows(
                    db, "events", _EVENT_COLUMNS, event_rows, "ON CONFLICT DO NOTHING"
                )
                # What status reads, in the same transaction: from the rows in hand when all of
                # them went in (a first ingest), else read back above the high-water mark.
                if counts.new_events == len(event_rows):
                    add_rows(db, _EVENT_COLUMNS, event_rows)
                elif counts.new_events:
                    add_inserted(db, high_water)
                counts.duplicates = len(event_rows) - counts.new_events
            if batch.quarantine:
                damaged = [(source_ids.get(q.path), *q, now) for q in batch.quarantine]
                counts.quarantined = insert_rows(
                    db, "quarantine", _QUARANTINE_COLUMNS, damaged, "ON CONFLICT DO NOTHING"
                )
            if counts.duplicates:
                _quarantine_conflicts(db, batch, source_ids, now, counts)
            _mark_stray(db, stray, batch, source_ids, now)
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

    def scheduled_launches(self) -> list[ScheduledLaunch]:
        """Open launches with a batch job whose fate is not decided yet (no lost/released event)."""
        with self.reading() as db:
            rows = db.execute(_BATCH_LAUNCHES).fetchall()
        out = []
        for launch_id, fw_id, launch_dir, job, system, gone_at, last in rows:
            kind, _, sig = (last or "").partition(":")
            out.append(
                ScheduledLaunch(launch_id, fw_id, launch_dir, job, system, gone_at, kind or None, bool(sig))
            )
        return out

    def record_scheduler_view(self, view: SchedulerView) -> int:
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
            high_water = events_high_water(db)
            new = insert_rows(db, "events", _EVENT_COLUMNS, rows, "ON CONFLICT DO NOTHING")
            if new:
                add_inserted(db, high_water)
            _mark_terminal(db, view.terminal, now)
        return new

    def launch_homes(self, launch_ids: Sequence[int]) -> dict[int, tuple[LaunchHome, bool]]:
        """For each of these launch ids the journal knows: where it runs, and whether it is over
        (final or forgotten)."""
        with self.reading() as db:
            homes = read_homes(db, launch_ids)
            settled = self._settled(db, list(homes))
        return {lid: (home, settled.get(lid, False)) for lid, home in homes.items()}

    def stray_pointers(self) -> dict[str, str]:
        """Inbox pointers this journal set aside (another LaunchPad's launches), with why."""
        with self.reading() as db:
            return dict(
                db.execute(
                    "SELECT path, status_detail FROM sources WHERE kind = 'pointer' AND status = 'stray'"
                )
            )

    def set_aside_pointer(self, path: str, reason: str | None) -> None:
        """Remember an inbox pointer as not this journal's (``reason``), or forget it (None: gone)."""
        now = iso(utcnow())
        with self.transaction() as db:
            if reason is None:
                db.execute("DELETE FROM sources WHERE path = ? AND kind = 'pointer'", (path,))
            else:
                _upsert_sources(
                    db,
                    IngestBatch(
                        sources=[SourceRow(path, "pointer", status="stray", status_detail=reason[:500])]
                    ),
                    now,
                )

    @staticmethod
    def _settled(db: sqlite3.Connection, launch_ids: Sequence[int]) -> dict[int, bool]:
        out: dict[int, bool] = {}
        for chunk, marks in in_chunks(launch_ids):
            for launch_id, terminal_at, forgotten_at in db.execute(
                f"SELECT launch_id, terminal_at, forgotten_at FROM launches WHERE launch_id IN ({marks})",
                tuple(chunk),
            ):
                out[launch_id] = terminal_at is not None or forgotten_at is not None
        return out


#: Event types after which ingest stops reading a launch's directory (see BatchBuilder.terminal).
_ENDING_TYPES = frozenset({"exited", "released", "completed"})


def _set_aside_strays(db: sqlite3.Connection, batch: IngestBatch, counts: IngestCounts) -> dict[str, str]:
    """Find in ``batch`` every file whose launch runs in another directory (fwspool.identity): its
    source row becomes ``stray`` (not read again), its claim on the launch (directory, batch job,
    end) is dropped, and one line says so. Its events are kept: the caller marks them ``stray``
    once inserted (:func:`_mark_stray`), so that they are in the journal, never applied, and
    quarantined like any other when their id clashes. Launches new to the journal take the first
    directory that claims them, here the batch's own launch row. Returns the reason by path."""
    if not batch.events and not batch.launches:
        return {}
    homes = read_homes(db, {*(r.launch_id for r in batch.launches), *_launch_of_files(batch).values()})
    first_claims = {r.launch_id: r for r in reversed(batch.launches)}
    for launch_id, row in first_claims.items():
        homes.setdefault(launch_id, LaunchHome(launch_id, row.launch_dir))
    known = _source_rows(db, list(batch.events))
    stray = _strays(db, batch, homes, known)
    if stray:
        _take_out(batch, stray, homes, known, counts)
    return {path: reason for path, (_, reason) in stray.items()}


def _strays(
    db: sqlite3.Connection,
    batch: IngestBatch,
    homes: dict[int, LaunchHome],
    known: dict[str, tuple[Any, ...]],
) -> dict[str, tuple[int, str]]:
    """The batch's files that are not their launch's, with their launch and why."""
    stray: dict[str, tuple[int, str]] = {}
    for path, launch_id in _launch_of_files(batch).items():
        was = known.get(path)
        if was is not None and was[1] == "stray":
            stray[path] = (launch_id, was[2] or "set aside before")
            continue
        if was is not None and was[0] == launch_id:
            continue  # agreed when it was first read
        home, directory, rows = homes[launch_id], os.path.dirname(path), batch.events[path]
        claimed = [_claimed_dir(r.payload) for r in rows if r.type in ("started", "launch_dir_changed")]
        if agrees(home, directory, claimed_dirs=[d for d in claimed if d]):
            continue
        if writer_has_events(db, rows[0].writer_id, launch_id):
            continue
        stray[path] = (
            launch_id,
            f"launch {launch_id} of this journal's LaunchPad runs in {home.launch_dir}, not in {directory}: "
            "set aside (another LaunchPad's launch, or one before an lpad reset)",
        )
    return stray


def _take_out(
    batch: IngestBatch,
    stray: dict[str, tuple[int, str]],
    homes: dict[int, LaunchHome],
    known: dict[str, tuple[Any, ...]],
    counts: IngestCounts,
) -> None:
    """Mark these stray files' source rows, and take their claims on their launches (directory,
    batch job, end) out of the batch; their events stay, for :func:`_mark_stray`."""
    for path, (_, reason) in stray.items():
        source = next((x for x in batch.sources if x.path == path), SourceRow(path, "spool"))
        batch.sources = [x for x in batch.sources if x.path != path]
        batch.sources.append(source.but(status="stray", status_detail=reason[:500], launch_id=None))
        if known.get(path, (None, None, None))[1] != "stray":
            counts.problems.append(f"{path}: {reason}")
    # A launch row claimed by a stray file keeps the journal's directory and no batch job but one
    # a file of the launch itself started under.
    strays_of = {launch_id for launch_id, _ in stray.values()}
    batch.launches = [
        _without_strays(r, homes[r.launch_id], batch, stray) if r.launch_id in strays_of else r
        for r in batch.launches
    ]
    still_ending = {
        r.launch_id
        for path, rows in batch.events.items()
        if path not in stray
        for r in rows
        if r.type in _ENDING_TYPES
    }
    for launch_id, _ in stray.values():
        if launch_id not in still_ending:
            batch.terminal_launches.discard(launch_id)
            batch.signal_exits.discard(launch_id)


def _mark_stray(
    db: sqlite3.Connection, stray: dict[str, str], batch: IngestBatch, source_ids: dict[str, int], now: str
) -> None:
    """The events just inserted from files set aside: in the journal, never applied."""
    if not stray:
        return
    db.executemany(
        "UPDATE events SET pushed_at = ?, push_outcome = 'stray', push_detail = ? "
        "WHERE source_id = ? AND pushed_at IS NULL",
        [(now, reason[:500], source_ids[path]) for path, reason in stray.items() if path in source_ids],
    )
    summarize(db, sorted({r.launch_id for path in stray for r in batch.events.get(path, ())}))


def _without_strays(
    row: LaunchRow, home: LaunchHome, batch: IngestBatch, stray: Mapping[str, object]
) -> LaunchRow:
    """``row`` as the launch's own files of this batch (not the stray ones) would have made it."""
    job = system = None
    for path, rows in batch.events.items():
        if path in stray:
            continue
        for r in rows:
            if r.launch_id == row.launch_id and r.type == "started":
                payload = json.loads(r.payload)
                job, system = payload.get("batch_job_id") or job, payload.get("batch_system") or system
    return row._replace(launch_dir=home.launch_dir, batch_job_id=job, batch_system=system)


def _launch_of_files(batch: IngestBatch) -> dict[str, int]:
    """The launch each file of the batch is of (a spool file is one launch's; its first event
    says). Events handed over without a file (an absolute path) have no directory to compare."""
    return {path: rows[0].launch_id for path, rows in batch.events.items() if rows and os.path.isabs(path)}


def _claimed_dir(payload: str) -> str | None:
    try:
        value = json.loads(payload).get("launch_dir")
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _source_rows(
    db: sqlite3.Connection, paths: Sequence[str]
) -> dict[str, tuple[int | None, str, str | None]]:
    """(launch id, status, status detail) of these paths' source rows."""
    out: dict[str, tuple[int | None, str, str | None]] = {}
    for chunk, marks in in_chunks(sorted(paths)):
        for path, launch_id, status, detail in db.execute(
            f"SELECT path, launch_id, status, status_detail FROM sources WHERE path IN ({marks})",
            tuple(chunk),
        ):
            out[path] = (launch_id, status, detail)
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
