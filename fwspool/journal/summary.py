"""``launch_summary``: what ``fwspool status`` and the daemon's summary read instead of ``events``.

Per launch id with events: how many, how many pending, pushed, superseded, skipped and set aside
(stray), the oldest pending one's ingest time, the last event, the last run event and the last
completion's state (``schema/journal.sql``). Every function here runs inside the transaction that
changes ``events`` (the caller's), so the summary commits with the events or not at all: a kill at
any moment leaves it exactly as the events are. Each write to ``events`` calls one of them:

- inserts (ingest, the batch system's inferred events): :func:`events_high_water` before,
  :func:`add_inserted` after, which sums the rows above the mark (new rows only: a record read
  twice inserts nothing); or, when every row handed to the INSERT went in (a first ingest's
  batches), :func:`add_rows`, which sums those rows in Python without reading them back;
- push marks: :func:`mark_events`, which counts only the events it really moves out of pending;
- rarer bulk changes (set aside as stray, retention's deletes): :func:`summarize` of the launches
  touched, from their events.

Per-row SQL triggers would keep it too, but cost 5-15 µs per inserted event (a third to half of
ingest's whole cost); these functions cost one aggregate per batch and one upsert per launch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

from fwspool.journal.schema import RUN_TYPES, RUN_TYPES_SQL, in_chunks

_RUN = RUN_TYPES_SQL

_COUNTS = """
SELECT launch_id, count(*), sum(pushed_at IS NULL), sum(push_outcome IS 'applied'),
       sum(push_outcome IS 'superseded'), sum(push_outcome IS 'skipped'), sum(push_outcome IS 'stray'),
       min(CASE WHEN pushed_at IS NULL THEN ingested_at END)
FROM {events} WHERE {where} GROUP BY launch_id"""

#: The last event of each launch among some rows: SQLite takes the bare columns from the row
#: of max(); char(1) sorts below every character of a time, so the order is (occurred_at, event_id).
_LAST = """
SELECT launch_id, {what}, occurred_at, event_id, max(occurred_at || char(1) || event_id)
FROM {events} WHERE {where} GROUP BY launch_id"""

#: A completion's state, from its payload (text that may not be JSON: then none).
_STATE_OF = "CASE WHEN json_valid({payload}) THEN json_extract({payload}, '$.state') END"

#: Set-aside events (another LaunchPad's: fwspool.identity) are never a launch's last anything.
_MINE = " AND push_outcome IS NOT 'stray'"
_LAST_OF = {
    "last_event": ("type", _MINE),
    "last_run": ("type", f" AND type IN {_RUN}{_MINE}"),
    "completed": (
        _STATE_OF.format(payload="payload"),
        f" AND type = 'completed'{_MINE}",
    ),
}

_COLUMNS = (
    "launch_id",
    "events",
    "pending",
    "pushed",
    "superseded",
    "skipped",
    "stray",
    "oldest_pending_at",
    "last_event",
    "last_event_at",
    "last_event_id",
    "last_run",
    "last_run_at",
    "last_run_id",
    "completed_state",
    "completed_at",
    "completed_id",
)
_LAST_COLUMNS = {
    "last_event": ("last_event", "last_event_at", "last_event_id"),
    "last_run": ("last_run", "last_run_at", "last_run_id"),
    "completed": ("completed_state", "completed_at", "completed_id"),
}


def _take_if_later(which: str) -> str:
    """The SETs of the merge that take the new rows' last-something when it is later."""
    value, at, eid = _LAST_COLUMNS[which]
    later = (
        f"excluded.{eid} IS NOT NULL AND ({eid} IS NULL OR (excluded.{at}, excluded.{eid}) > ({at}, {eid}))"
    )
    return ", ".join(f"{c} = CASE WHEN {later} THEN excluded.{c} ELSE {c} END" for c in (value, at, eid))


#: Adds new events' counts and last-somethings to a launch's row.
_MERGE = (
    f"INSERT INTO launch_summary ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (launch_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = {c} + excluded.{c}" for c in ("events", "pending", "pushed", "superseded", "skipped", "stray")
    )
    + ", oldest_pending_at = coalesce(min(oldest_pending_at, excluded.oldest_pending_at), "
    "oldest_pending_at, excluded.oldest_pending_at), "
    + ", ".join(_take_if_later(which) for which in _LAST_COLUMNS)
)

#: The outcome columns of launch_summary, by push_outcome.
_OUTCOME_COLUMN = {"applied": "pushed", "superseded": "superseded", "skipped": "skipped", "stray": "stray"}

#: min(ingested_at) of a launch's pending events (its range of the index ``events_pending``; once
#: per launch and push batch).
_OLDEST_PENDING = "(SELECT min(ingested_at) FROM events WHERE launch_id = ? AND pushed_at IS NULL)"


def events_high_water(db: sqlite3.Connection) -> int:
    """The largest rowid of ``events`` now: rows inserted after have larger ones (SQLite gives a
    new row max(rowid) + 1), which is how :func:`add_inserted` finds them."""
    return int(db.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0])


def add_inserted(db: sqlite3.Connection, after: int) -> None:
    """Add the events inserted since :func:`events_high_water` returned ``after`` to the summary."""
    # NOT INDEXED: read the new rows by their rowid range. Otherwise SQLite walks the whole of
    # events_by_launch to save the GROUP BY's sort (every event of the journal, each batch: the
    # first ingest of 10 million events slowed tenfold as the journal grew).
    _merge(db, "rowid > ?", (after,), events="events NOT INDEXED")


def add_rows(db: sqlite3.Connection, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Add ``rows`` (of ``events``' ``columns``), every one of them just inserted as it is, to the
    summary: what :func:`add_inserted` would add, without reading the rows back (its four
    aggregates over the new rows were a fifth of a first ingest's commit).

    Only for rows all inserted: with ``ON CONFLICT DO NOTHING``, when the INSERT's change count
    is ``len(rows)``. New rows are pending, pushed by no one and nobody's stray.
    """
    at = {
        c: columns.index(c)
        for c in ("launch_id", "type", "occurred_at", "event_id", "payload", "ingested_at")
    }
    by_launch: dict[int, list[tuple[Any, ...]]] = {}
    # A spool file is one launch's: its rows come in runs of one launch id, grouped in C.
    for launch_id, run in groupby(rows, itemgetter(at["launch_id"])):
        by_launch.setdefault(launch_id, []).extend(run)
    # max() of (occurred_at, event_id) is the order of _LAST's occurred_at || char(1) || event_id.
    latest = itemgetter(at["occurred_at"], at["event_id"])
    kind, payload = itemgetter(at["type"]), itemgetter(at["payload"])
    merged = []
    for launch_id, of in by_launch.items():
        n, oldest_pending = len(of), min(map(itemgetter(at["ingested_at"]), of))
        row: list[Any] = [launch_id, n, n, 0, 0, 0, 0, oldest_pending]
        last = max(of, key=latest)
        row += [kind(last), *latest(last)]
        runs = [r for r in of if kind(r) in RUN_TYPES]
        last_run = max(runs, key=latest) if runs else None
        row += [kind(last_run), *latest(last_run)] if last_run else [None] * 3
        completions = [r for r in runs if kind(r) == "completed"]
        if completions:
            done = max(completions, key=latest)
            # The state as _LAST_OF reads it, by SQLite's own JSON functions.
            (state,) = db.execute(_STATE, (payload(done),)).fetchone()
            row += [state, *latest(done)]
        else:
            row += [None] * 3
        merged.append(row)
    db.executemany(_MERGE, merged)


_STATE = "SELECT " + _STATE_OF.format(payload="?1")


def summarize(db: sqlite3.Connection, launch_ids: Sequence[int] | None = None) -> None:
    """Make the summary of these launches (of every launch: None) anew from their events."""
    if launch_ids is None:
        db.execute("DELETE FROM launch_summary")
        _merge(db, "1 = 1", ())
        return
    for chunk, marks in in_chunks(sorted(set(launch_ids))):
        db.execute(f"DELETE FROM launch_summary WHERE launch_id IN ({marks})", tuple(chunk))
        _merge(db, f"launch_id IN ({marks})", tuple(chunk))


def _merge(db: sqlite3.Connection, where: str, params: tuple[Any, ...], events: str = "events") -> None:
    rows: dict[int, list[Any]] = {}
    for launch_id, *counts in db.execute(_COUNTS.format(events=events, where=where), params):
        rows[launch_id] = [launch_id, *counts, *([None] * 9)]
    if not rows:
        return
    for i, (what, only) in enumerate(_LAST_OF.values()):
        sql = _LAST.format(what=what, events=events, where=where + only)
        for launch_id, value, at, eid, _ in db.execute(sql, params):
            rows[launch_id][8 + 3 * i : 11 + 3 * i] = [value, at, eid]
    db.executemany(_MERGE, list(rows.values()))


def mark_events(db: sqlite3.Connection, marks: Sequence[tuple[str, str, str | None, str]]) -> int:
    """Mark events pushed and count them out of pending: ``marks`` are (pushed_at, outcome,
    detail, event id); an event already marked stays as it was, and an event named twice takes
    its first mark. Returns how many were marked."""
    if not marks:
        return 0
    first: dict[str, tuple[str, str, str | None, str]] = {}
    for mark in marks:
        first.setdefault(mark[3], mark)
    by_mark: dict[tuple[str, str, str | None], list[str]] = {}
    for pushed_at, outcome, detail, eid in first.values():
        by_mark.setdefault((pushed_at, outcome, detail), []).append(eid)
    moved: dict[int, dict[str, int]] = {}
    # One SELECT and one UPDATE per mark (a push gives most of its events the same one) and 500
    # events, not one per event. In one transaction, the rows the SELECT finds still pending are
    # those the UPDATE moves out of pending (UPDATE … RETURNING would say so in one statement,
    # but needs SQLite 3.35: RHEL 9's is 3.34).
    for (pushed_at, outcome, detail), ids in by_mark.items():
        for chunk, qmarks in in_chunks(ids):
            pending = f"event_id IN ({qmarks}) AND pushed_at IS NULL"
            for (launch_id,) in db.execute(f"SELECT launch_id FROM events WHERE {pending}", tuple(chunk)):
                per = moved.setdefault(launch_id, {})
                per[outcome] = per.get(outcome, 0) + 1
            db.execute(
                f"UPDATE events SET pushed_at = ?, push_outcome = ?, push_detail = ? WHERE {pending}",
                (pushed_at, outcome, detail, *chunk),
            )
    _moved_out_of_pending(db, moved)
    # An event set aside is no longer its launch's last anything: those launches anew.
    set_aside = [launch_id for launch_id, per in moved.items() if "stray" in per]
    if set_aside:
        summarize(db, set_aside)
    return sum(sum(per.values()) for per in moved.values())


def _moved_out_of_pending(db: sqlite3.Connection, moved: dict[int, dict[str, int]]) -> None:
    for launch_id, per in moved.items():
        sets = ", ".join(f"{_OUTCOME_COLUMN[o]} = {_OUTCOME_COLUMN[o]} + ?" for o in per)
        db.execute(
            f"UPDATE launch_summary SET pending = pending - ?, {sets}, "
            f"oldest_pending_at = {_OLDEST_PENDING} WHERE launch_id = ?",
            (sum(per.values()), *per.values(), launch_id, launch_id),
        )


def differences(db: sqlite3.Connection, launch_ids: Iterable[int] | None = None) -> list[str]:
    """Where ``launch_summary`` differs from what the events say (none, always: tests and doctor)."""
    kept = {
        r[0]: tuple(r)
        for r in db.execute(f"SELECT {', '.join(_COLUMNS)} FROM launch_summary WHERE events > 0")
    }
    db.execute("SAVEPOINT summary_check")
    try:
        summarize(db, None if launch_ids is None else list(launch_ids))
        fresh = {r[0]: tuple(r) for r in db.execute(f"SELECT {', '.join(_COLUMNS)} FROM launch_summary")}
    finally:
        db.execute("ROLLBACK TO summary_check")
        db.execute("RELEASE summary_check")
    if launch_ids is not None:
        wanted = set(launch_ids)
        kept = {k: v for k, v in kept.items() if k in wanted}
    return [
        f"launch {lid}: kept {kept.get(lid)}, events say {fresh.get(lid)}"
        for lid in sorted(set(kept) | set(fresh))
        if kept.get(lid) != fresh.get(lid)
    ]
