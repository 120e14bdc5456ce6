"""The invariants checked after every trial.

(a) every event a writer appended (every valid record in the spool files, read here with
    ``fwspool.spool.scan``, independently of ingest) is in the journal exactly once, with the same
    content; nothing in the journal that no spool holds;
(b) every journal event is applied exactly once: the LaunchPad equals the one a clean run of the
    same records produces (:func:`fwspool.testing.launchpad.db_snapshot`);
(c) nothing is left pending that should have been pushed, and the quarantine holds exactly the
    bytes that are damaged (or records that are invalid).

Each check returns a :class:`Check`: counts of what failed, and a few notes saying where.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fwspool.events import iso
from fwspool.spool import DEFAULT_MAX_RECORD, SPOOL_NAME_RE, scan
from fwspool.testing.chaos.cluster import Instance
from fwspool.testing.chaos.workload import held_exits, raw_decoder, read_spool_files, validate
from fwspool.testing.launchpad import db_snapshot, diff_snapshots


@dataclass
class Occurrence:
    path: str
    offset: int
    length: int
    writer: str
    seq: int
    launch_id: int
    occurred_at: str
    payload: str


@dataclass
class Inventory:
    """What the spool files under a root hold, read independently of ingest."""

    occurrences: dict[tuple[str, int], list[Occurrence]] = field(default_factory=dict)
    #: Per path: byte ranges that are damage or invalid records (what must be quarantined).
    bad: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    torn: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return len(self.occurrences)


def inventory(root: str) -> Inventory:
    inv = Inventory()
    for d, subdirs, names in os.walk(root):
        subdirs.sort()
        try:
            d.encode("utf-8")
        except UnicodeEncodeError:
            continue  # not ingested, by design: ingest names such a directory on every pass
        for n in sorted(names):
            m = SPOOL_NAME_RE.match(n)
            if not m:
                continue
            path = os.path.join(d, n)
            with open(path, "rb") as f:
                data = f.read()
            res = scan(data, at_eof=True, max_record=DEFAULT_MAX_RECORD)
            bad = [(dm.offset, dm.length) for dm in res.damage]
            for fr in res.frames:
                rec = validate(fr.payload, m.group(1))
                if rec is None:
                    bad.append((fr.offset, fr.length))
                    continue
                occ = Occurrence(
                    path,
                    fr.offset,
                    fr.length,
                    rec.writer,
                    rec.seq,
                    rec.launch_id,
                    iso(rec.at),
                    bytes(rec.event).decode(),
                )
                inv.occurrences.setdefault((rec.writer, rec.seq), []).append(occ)
            if bad:
                inv.bad[path] = bad
            if res.consumed < len(data):
                inv.torn[path] = res.consumed
    return inv


def _covered(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of [offset, offset + length) ranges, merged."""
    out: list[list[int]] = []
    for off, length in sorted(ranges):
        if out and off <= out[-1][1]:
            out[-1][1] = max(out[-1][1], off + length)
        else:
            out.append([off, off + length])
    return [(a, b) for a, b in out]


@dataclass
class Check:
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    extra: int = 0
    mismatched: int = 0
    pending_left: int = 0
    bad_quarantine: int = 0
    other: int = 0
    #: Events of another LaunchPad's launch directory held (or applied) as one of this one's.
    merged: int = 0
    #: Launches of this LaunchPad that did not reach the clean run's state (held by another's files).
    stalled: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: Check) -> None:
        for f in dataclasses.fields(self):
            if f.name != "notes":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.notes.extend(other.notes)

    def note(self, text: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(text)

    @property
    def failed(self) -> bool:
        """Whether any invariant failed (``events`` counts what was checked, not a failure)."""
        return any(
            getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("events", "notes")
        )


def journal_rows(journal: str, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    try:
        return _rows(journal, "ro", sql, params)
    except sqlite3.OperationalError as exc:
        # An ingest killed mid-commit leaves a write-ahead log that the next connection must
        # recover, and a read-only one cannot (SQLITE_READONLY_RECOVERY): read as the next
        # ingest would, which recovers it and writes nothing else.
        if "readonly" not in str(exc):
            raise
        return _rows(journal, "rw", sql, params)


def _rows(journal: str, mode: str, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{journal}?mode={mode}", uri=True, timeout=60)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, tuple(params))]
    finally:
        conn.close()


def check_journal(journal: str, inv: Inventory, *, exact: bool = True) -> Check:
    """Invariant (a) and the quarantine half of (c), for a journal that ingested everything."""
    c = Check(events=inv.events)
    counts = journal_rows(
        journal,
        "SELECT count(*) AS n, count(DISTINCT event_id) AS d, count(DISTINCT writer_id || '-' || seq) AS ws FROM events",
    )[0]
    if not counts["n"] == counts["d"] == counts["ws"]:
        c.duplicated += counts["n"] - min(counts["d"], counts["ws"])
        c.note(f"journal: {counts['n']} rows, {counts['d']} distinct ids")
    rows = journal_rows(
        journal,
        "SELECT e.writer_id, e.seq, e.launch_id, e.occurred_at, e.payload, e.source_offset, s.path "
        "FROM events AS e LEFT JOIN sources AS s ON s.source_id = e.source_id",
    )
    j = {(r["writer_id"], r["seq"]): r for r in rows}
    quarantined: dict[str, list[tuple[int, int]]] = {}
    for q in journal_rows(journal, 'SELECT path, "offset", length, reason FROM quarantine'):
        quarantined.setdefault(q["path"], []).append((q["offset"], q["length"]))
    expected_q = {p: list(r) for p, r in inv.bad.items()}
    for key, occs in inv.occurrences.items():
        row = j.get(key)
        if row is None:
            c.lost += 1
            c.note(f"lost: {key[0]}-{key[1]} ({occs[0].path}@{occs[0].offset})")
            continue
        same = [
            o
            for o in occs
            if (o.payload, o.launch_id, o.occurred_at)
            == (row["payload"], row["launch_id"], row["occurred_at"])
        ]
        if not same:
            c.extra += 1
            c.note(f"journal holds {key[0]}-{key[1]} with content no spool file has")
        # Another file claiming the same writer id with other content: it must not vanish, it
        # must be quarantined.
        for o in occs:
            if o in same:
                continue
            if any(
                a <= o.offset and o.offset + o.length <= b for a, b in _covered(quarantined.get(o.path, []))
            ):
                expected_q.setdefault(o.path, []).append((o.offset, o.length))
            else:
                c.lost += 1
                c.note(
                    f"vanished: {key[0]}-{key[1]} of {o.path}@{o.offset} (its writer id is another file's too)"
                )
    for key, row in j.items():
        if key not in inv.occurrences and row["source_offset"] is not None:
            c.extra += 1
            c.note(f"journal holds {key[0]}-{key[1]} that no spool file holds")
    if exact:
        for path in set(expected_q) | set(quarantined):
            if _covered(expected_q.get(path, [])) != _covered(quarantined.get(path, [])):
                c.bad_quarantine += 1
                c.note(
                    f"quarantine of {path}: got {_covered(quarantined.get(path, []))} want {_covered(expected_q.get(path, []))}"
                )
    return c


def check_committed_prefixes(journal: str) -> Check:
    """After a kill: for every spool file, the events in the journal are exactly the records before
    its committed offset — an offset never runs ahead of (or behind) its events."""
    c = Check()
    if not journal_rows(journal, "SELECT name FROM sqlite_master WHERE name = 'events'"):
        return c  # the journal was never set up (the fault hit its creation): nothing accepted
    rows = journal_rows(
        journal,
        "SELECT e.writer_id, e.seq, s.path FROM events AS e JOIN sources AS s ON s.source_id = e.source_id "
        "WHERE s.kind = 'spool'",
    )
    by_path: dict[str, set[tuple[str, int]]] = {}
    for r in rows:
        by_path.setdefault(r["path"], set()).add((r["writer_id"], r["seq"]))
    everything = {
        (r["writer_id"], r["seq"]) for r in journal_rows(journal, "SELECT writer_id, seq FROM events")
    }
    counts = journal_rows(journal, "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")[0]
    c.duplicated += counts["n"] - counts["d"]
    for src in journal_rows(journal, "SELECT path, committed_offset FROM sources WHERE kind = 'spool'"):
        with open(src["path"], "rb") as f:
            prefix = f.read(src["committed_offset"])
        res = scan(prefix, at_eof=True)
        if res.consumed != len(prefix) or res.damage:
            c.other += 1
            c.note(f"committed offset {src['committed_offset']} of {src['path']} is not at a record boundary")
        keys = set()
        for fr in res.frames:
            rec = raw_decoder.decode(fr.payload)
            keys.add((rec.writer, rec.seq))
        lost = keys - everything
        if lost:
            c.lost += len(lost)
            c.note(f"{len(lost)} records before the committed offset of {src['path']} are not in the journal")
        ahead = by_path.get(src["path"], set()) - keys
        if ahead:
            c.other += 1
            c.note(f"{len(ahead)} events of {src['path']} lie beyond its committed offset")
    c.events = len(everything)
    return c


def backlog(journal: str) -> int:
    """What a journal still has to push: pending events, and write sets a dead push saved."""
    events = journal_rows(journal, "SELECT count(*) AS n FROM pending_events")[0]["n"]
    return int(events) + int(journal_rows(journal, "SELECT count(*) AS n FROM redo")[0]["n"])


def check_pending(
    journal: str, lp_launch_ids: set[int], held: frozenset[tuple[str, int]] = frozenset()
) -> Check:
    """(c): after a successful push only events of launches the LaunchPad does not have wait,
    and the ``held`` exits (:func:`~fwspool.testing.chaos.workload.held_exits`)."""
    c = Check()
    waiting: dict[int, int] = {}
    for r in journal_rows(
        journal,
        "SELECT e.launch_id, e.writer_id, e.seq FROM events AS e JOIN pending_events AS p ON p.event_id = e.event_id",
    ):
        if r["launch_id"] in lp_launch_ids and (r["writer_id"], r["seq"]) not in held:
            waiting[r["launch_id"]] = waiting.get(r["launch_id"], 0) + 1
    for launch_id, n in sorted(waiting.items()):
        c.pending_left += n
        c.note(f"{n} events of launch {launch_id} still pending after a successful push")
    return c


def check_db(inst: Instance, want: dict[str, Any], skip: frozenset[tuple[str, Any]] = frozenset()) -> Check:
    import pymongo

    c = Check()
    client: Any = pymongo.MongoClient(inst.uri, serverSelectionTimeoutMS=20000)
    try:
        db = client[inst.db]
        got = db_snapshot(db, inst.tpl.first_new_fw_id)
        launch_ids = {d["launch_id"] for d in db.launches.find({}, {"launch_id": 1})}
    finally:
        client.close()
    n, notes = diff_snapshots(got, want, skip=skip)
    c.mismatched += n
    for note in notes:
        c.note(note)
    c.add(check_pending(inst.journal, launch_ids, held_exits(read_spool_files(inst.launches_root))))
    return c
