"""Push's side of the journal: the outbox of events not yet on the LaunchPad, and its redo log.

Exactly-once ends here. An event is marked pushed (:meth:`Outbox.mark_pushed`) only after the
LaunchPad acknowledged the writes that carry it, so a push killed at any moment leaves it
pending and the next push applies it again, which changes nothing where it already landed
(:mod:`fwspool.launchpad`). A bulk completion's writes are saved first (:meth:`Outbox.save_redo`)
and dropped in the transaction that marks their events: a push killed between the two replays
them.
"""

from __future__ import annotations

import heapq
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from fwspool.binding import META_KEY, Binding
from fwspool.events import iso, utcnow
from fwspool.identity import agrees, same_dir
from fwspool.journal.database import JournalDatabase
from fwspool.journal.homes import read_homes, set_aside
from fwspool.journal.rows import ForgetRequest
from fwspool.journal.schema import in_chunks
from fwspool.journal.store import forget_late_launches
from fwspool.journal.summary import mark_events, summarize
from fwspool.outcomes import SUPERSEDED, PushedLaunch
from fwspool.runs import LaunchEvents, PendingEvent

_LAUNCHES_WITH_PENDING = """
SELECT DISTINCT e.launch_id FROM events AS e JOIN launches AS l ON l.launch_id = e.launch_id
WHERE e.pushed_at IS NULL AND l.forgotten_at IS NULL AND e.launch_id > ?
ORDER BY e.launch_id LIMIT ?"""

#: Where each launch announced by the inbox ran: its directory, and any it moved to.
_ANNOUNCED_DIRS = """
SELECT launch_id, launch_dir FROM launches WHERE learned_from = 'inbox' AND launch_id IN ({marks})
UNION ALL
SELECT e.launch_id, json_extract(e.payload, '$.launch_dir') FROM events AS e
JOIN launches AS l ON l.launch_id = e.launch_id
WHERE l.learned_from = 'inbox' AND e.type = 'launch_dir_changed' AND e.launch_id IN ({marks})"""

#: Launches the LaunchPad has not confirmed (fwspool.identity) that still matter.
_UNCONFIRMED = """
SELECT l.launch_id FROM launches AS l
WHERE l.confirmed_at IS NULL AND l.forgotten_at IS NULL
  AND (l.terminal_at IS NULL OR EXISTS (
      SELECT 1 FROM events AS e WHERE e.launch_id = l.launch_id AND e.pushed_at IS NULL))
ORDER BY l.launch_id"""

#: Ended launches whose Firework may have moved on (fwspool status: history, not attention).
_TO_FOLLOW = """
SELECT l.launch_id, l.fw_id FROM launches AS l
WHERE l.history_at IS NULL AND l.fw_id IS NOT NULL AND l.forgotten_at IS NULL
  AND l.outcome IN ('fizzled', 'killed', 'exited', 'lost', 'released', 'superseded')
  AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.launch_id = l.launch_id AND e.pushed_at IS NULL)
ORDER BY l.launch_id"""

#: The reservation's job; a run's own (its started event) is newer and stays.
_REGISTRY_UPSERT = """
INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at, batch_job_id, fw_name, confirmed_at)
VALUES (?, ?, ?, 'registry', ?, ?, ?, ?)
ON CONFLICT (launch_id) DO UPDATE SET
    confirmed_at = coalesce(launches.confirmed_at, excluded.confirmed_at),
    fw_id = coalesce(launches.fw_id, excluded.fw_id),
    launch_dir = coalesce(launches.launch_dir, excluded.launch_dir),
    batch_job_id = coalesce(launches.batch_job_id, excluded.batch_job_id),
    fw_name = coalesce(launches.fw_name, excluded.fw_name)"""


def decode_payload(payload: str) -> Any:
    """An event's payload as Python values: msgspec's decoder, at half json.loads' cost (a push
    reads every pending event), and json.loads for what msgspec refuses and json accepts (NaN,
    Infinity, numbers past a double, lone surrogates): the same values either way."""
    try:
        return msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeEncodeError):
        return json.loads(payload)


class Outbox(JournalDatabase):
    """The journal as push uses it."""

    def pending_launches(self, after: int | None, limit: int) -> list[LaunchEvents]:
        """Pending events of up to ``limit`` launches with ids above ``after``, in order.

        Forgotten launches are left out: their events stay in the journal, visible, unpushed.
        """
        with self.reading() as db:
            lids = [
                r[0]
                for r in db.execute(_LAUNCHES_WITH_PENDING, (-(2**62) if after is None else after, limit))
            ]
            if not lids:
                return []
            marks = ",".join("?" * len(lids))
            # Each writer's events in its own order (seq): its clock may have stepped back.
            rows = db.execute(
                "SELECT event_id, launch_id, type, occurred_at, payload, writer_id FROM events "
                f"WHERE pushed_at IS NULL AND launch_id IN ({marks}) ORDER BY launch_id, writer_id, seq",
                lids,
            ).fetchall()
            completed, quarantined, announced = _what_else_is_known(db, lids, marks)
        by_launch: dict[int, dict[str, list[PendingEvent]]] = {}
        for event_id_, launch_id, etype, occurred_at, payload, writer in rows:
            stream = by_launch.setdefault(launch_id, {}).setdefault(writer, [])
            stream.append(PendingEvent(event_id_, etype, occurred_at, decode_payload(payload)))
        return [
            LaunchEvents(
                launch_id,
                _merge_writers(streams),
                launch_id in completed,
                tuple(sorted(announced.get(launch_id, ()))),
                quarantined.get(launch_id, 0),
            )
            for launch_id, streams in by_launch.items()
        ]

    def mark_pushed(
        self,
        outcomes: Sequence[tuple[str, str, str | None]],
        *,
        done_redo: Sequence[int] = (),
        launches: Sequence[PushedLaunch] = (),
        batch: Sequence[int] = (),
        held: Mapping[int, str] | None = None,
    ) -> None:
        """Record that the LaunchPad acknowledged these events (call only after it did), and drop
        the redo records of the writes that carried them, in the same transaction.

        ``outcomes``: (event id, disposition, detail or None), the disposition one of
        :class:`fwspool.launchpad.Disposition` ('applied', 'superseded', 'skipped'; 'stray' is
        the journal's own, :meth:`settle_identities`).
        ``launches``: what those writes left of each launch, remembered with the mark
        (:func:`remember_pushed`). ``batch``: the launch ids the push looked at; ``held``: those
        whose events it left pending, with why (the others are held no longer).
        """
        held = held or {}
        if not outcomes and not done_redo and not launches and not held and not batch:
            return
        now = iso(utcnow())
        with self.transaction() as db:
            # Why each launch of the batch stays pending, if it does (``fwspool status``).
            db.executemany(
                "UPDATE launches SET held = ? WHERE launch_id = ? AND held IS NOT ?",
                [(reason[:500], lid, reason[:500]) for lid, reason in held.items()],
            )
            free = [lid for lid in batch if lid not in held]
            for chunk, marks in in_chunks(free):
                db.execute(
                    f"UPDATE launches SET held = NULL WHERE launch_id IN ({marks}) AND held IS NOT NULL",
                    tuple(chunk),
                )
            mark_events(db, [(now, outcome, detail, eid) for eid, outcome, detail in outcomes])
            for chunk, marks in in_chunks(done_redo):
                db.execute(f"DELETE FROM redo WHERE redo_id IN ({marks})", tuple(chunk))
            remember_pushed(db, launches, now)

    def identity(self) -> str:
        """This journal's random id, made on first use (names its workflow locks on the LaunchPad)."""
        value = self.get_meta("journal_id")
        if value is None:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('journal_id', ?) ON CONFLICT DO NOTHING",
                    (uuid.uuid4().hex,),
                )
            value = self.get_meta("journal_id")
        return str(value)

    def save_redo(self, write_set: bytes) -> int:
        """Durably keep a write set about to be sent to the LaunchPad; returns its id."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO redo (created_at, write_set) VALUES (?, ?)", (iso(utcnow()), write_set)
            )
            return int(cur.lastrowid or 0)

    def pending_redo(self) -> list[tuple[int, bytes]]:
        """Write sets of pushes that died between writing and marking, oldest first."""
        with self.reading() as db:
            return [
                (rid, bytes(ws))
                for rid, ws in db.execute("SELECT redo_id, write_set FROM redo ORDER BY redo_id")
            ]

    # -- what push learns from the LaunchPad, and what it must tell it ------------------------

    def register_offline_runs(self, runs: Sequence[dict[str, Any]]) -> int:
        """Add launches from the LaunchPad's registry of open offline runs; returns how many were new.

        Only fills in what the journal does not know yet, so an idle pass writes nothing.
        """
        if not runs:
            return 0
        ids = [r["launch_id"] for r in runs]
        known: dict[int, tuple[Any, ...]] = {}
        with self.reading() as db:
            for chunk, marks in in_chunks(ids):
                for lid, *row in db.execute(
                    "SELECT launch_id, fw_id, launch_dir, batch_job_id, fw_name FROM launches "
                    f"WHERE launch_id IN ({marks})",
                    tuple(chunk),
                ):
                    known[lid] = tuple(row)
        new = [r for r in runs if _adds_to(known.get(r["launch_id"]), r)]
        if not new:
            return 0
        now = iso(utcnow())
        with self.transaction() as db:
            db.executemany(
                _REGISTRY_UPSERT,
                [
                    (
                        r["launch_id"],
                        r.get("fw_id"),
                        r.get("launch_dir"),
                        now,
                        r.get("batch_job_id"),
                        r.get("fw_name"),
                        now,
                    )
                    for r in new
                ],
            )
            forget_late_launches(db, now)
        return len(new)

    # -- which LaunchPad, and which of its launches (fwspool.binding, fwspool.identity) -------

    def binding(self) -> Binding | None:
        """The LaunchPad this journal pushes to, once a push recorded it."""
        text = self.get_meta(META_KEY)
        return Binding.from_json(text) if text else None

    def bind(self, binding: Binding) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (META_KEY, binding.to_json()),
            )

    def unconfirmed_launches(self) -> list[int]:
        """Launches whose directory the LaunchPad has not confirmed yet (learned from a file or the
        inbox) and that still matter: not forgotten, and not over or with events to push."""
        with self.reading() as db:
            return [r[0] for r in db.execute(_UNCONFIRMED)]

    def settle_identities(
        self, asked: Sequence[int], lp_launches: Mapping[int, Mapping[str, Any]], next_launch_id: int
    ) -> list[str]:
        """Hold each unconfirmed launch of ``asked`` against the LaunchPad's launch of its id
        (``lp_launches``: ``launch_dir`` and ``fw_id`` by launch id, as the LaunchPad answered for
        ``asked``), and return a line for each one it moved.

        - The same directory (or one it moved to): confirmed.
        - Another directory: the launch is the LaunchPad's. What came from elsewhere is set aside
          (kept, never applied: :func:`~fwspool.journal.homes.set_aside`), files already set
          aside in the LaunchPad's directory are read again from their start, and the launch
          starts again from what the LaunchPad says.
        - No launch of that id, below the next id the LaunchPad hands out: it will never be this
          LaunchPad's; everything of it is set aside and the launch row goes.
        - No launch of that id yet: it stays as it is (a reservation the pull has not seen).
        """
        now = iso(utcnow())
        lines: list[str] = []
        with self.transaction() as db:
            still = {r[0] for r in db.execute(_UNCONFIRMED)}
            ids = [lid for lid in asked if lid in still]
            homes = read_homes(db, ids)
            for lid in ids:
                home, doc = homes[lid], lp_launches.get(lid)
                lp_dir = doc.get("launch_dir") if doc is not None else None
                if doc is not None and (home.launch_dir is None or not lp_dir or agrees(home, lp_dir)):
                    db.execute(
                        "UPDATE launches SET confirmed_at = ?, launch_dir = coalesce(launch_dir, ?), "
                        "fw_id = coalesce(fw_id, ?) WHERE launch_id = ?",
                        (now, lp_dir, doc.get("fw_id"), lid),
                    )
                elif doc is not None:
                    assert lp_dir is not None
                    lines.append(_rehome(db, home, lp_dir, doc.get("fw_id"), now))
                elif lid < next_launch_id:
                    reason = (
                        f"launch {lid} is not on this journal's LaunchPad, which has handed out launch ids up "
                        f"to {next_launch_id - 1}: what ran in {home.launch_dir} is another LaunchPad's "
                        "(or from before an lpad reset); set aside"
                    )
                    n = set_aside(db, home, (), reason, now)
                    db.execute("UPDATE sources SET launch_id = NULL WHERE launch_id = ?", (lid,))
                    db.execute("DELETE FROM launches WHERE launch_id = ?", (lid,))
                    lines.append(f"{reason} ({n} events kept in the journal, never applied)")
        return lines

    def launches_to_follow(self) -> list[tuple[int, int]]:
        """(launch id, fw_id) of ended launches the LaunchPad may have moved past since (a rerun
        of a failure, a released reservation reserved again): not yet history, nothing pending."""
        with self.reading() as db:
            return [(r[0], r[1]) for r in db.execute(_TO_FOLLOW)]

    def follow(self, fireworks: Mapping[int, Mapping[str, Any]], followed: Sequence[tuple[int, int]]) -> int:
        """Mark as history the followed launches whose Firework moved past them (gone, or no
        longer listing them as current, or a later launch of it), and record the state of the
        others' Fireworks as last seen; returns how many became history."""
        now = iso(utcnow())
        history, states = [], []
        for lid, fw_id in followed:
            fw = fireworks.get(fw_id)
            current = (fw or {}).get("launches") or []
            if fw is None or lid not in current or max(current) > lid:
                history.append(lid)
            if fw is not None and fw.get("state"):
                states.append((fw["state"], lid, fw["state"]))
        with self.transaction() as db:
            for chunk, marks in in_chunks(history):
                db.execute(f"UPDATE launches SET history_at = ? WHERE launch_id IN ({marks})", (now, *chunk))
            db.executemany(
                "UPDATE launches SET pushed_state = ? WHERE launch_id = ? AND pushed_state IS NOT ?", states
            )
        return len(history)

    def request_forget(
        self, fw_ids: Sequence[int], launch_ids: Sequence[int], *, undo: bool = False
    ) -> ForgetRequest:
        """Stop (or, with ``undo``, resume) ingesting and pushing these launches; the LaunchPad's
        offline_runs follow on the next successful push.

        Only ids the journal knows a launch of are recorded (a launch of a known Firework learned
        later is forgotten too): an unknown one is returned, for the caller to say so.
        """
        now = iso(utcnow())
        with self.transaction() as db:
            known_fws = _known(db, "fw_id", fw_ids)
            known_lids = _known(db, "launch_id", launch_ids)
            requests = [("fw_id", v) for v in fw_ids if v in known_fws]
            requests += [("launch_id", v) for v in launch_ids if v in known_lids]
            db.executemany(
                "INSERT INTO forget_requests (kind, value, forget, requested_at) VALUES (?, ?, ?, ?)",
                [(kind, value, 0 if undo else 1, now) for kind, value in requests],
            )
            fws = [v for kind, v in requests if kind == "fw_id"]
            lids = [v for kind, v in requests if kind == "launch_id"]
            named = f"(fw_id IN ({','.join('?' * len(fws))}) OR launch_id IN ({','.join('?' * len(lids))}))"
            affected = db.execute(f"SELECT count(*) FROM launches WHERE {named}", (*fws, *lids)).fetchone()[0]
            # A launch forgotten before keeps the time it was.
            db.execute(
                f"UPDATE launches SET forgotten_at = ? WHERE {named} AND (forgotten_at IS NULL OR ? IS NULL)",
                (None if undo else now, *fws, *lids, None if undo else now),
            )
        return ForgetRequest(
            affected,
            tuple(v for v in fw_ids if v not in known_fws),
            tuple(v for v in launch_ids if v not in known_lids),
        )

    def unapplied_forget_requests(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM forget_requests WHERE applied_at IS NULL ORDER BY request_id")

    def mark_forget_applied(self, request_ids: Sequence[int]) -> None:
        now = iso(utcnow())
        with self.transaction() as db:
            for chunk, marks in in_chunks(request_ids):
                db.execute(
                    f"UPDATE forget_requests SET applied_at = ? WHERE request_id IN ({marks})", (now, *chunk)
                )


def _rehome(db: Any, home: Any, lp_dir: str, fw_id: int | None, now: str) -> str:
    """Make launch ``home.launch_id`` the LaunchPad's, in ``lp_dir`` (see settle_identities)."""
    lid = home.launch_id
    reason = (
        f"ran in {home.launch_dir}, but launch {lid} of this journal's LaunchPad runs in {lp_dir}: another "
        "LaunchPad's launch (or one from before an lpad reset); set aside"
    )
    n = set_aside(db, home, (lp_dir,), reason, now)
    db.execute(
        "UPDATE launches SET launch_dir = ?, fw_id = ?, confirmed_at = ?, terminal_at = NULL, batch_job_id = NULL, "
        "batch_system = NULL, batch_gone_at = NULL, fw_name = NULL, pushed_state = NULL, outcome = NULL, "
        "outcome_detail = NULL, pushed_state_at = NULL, held = NULL, history_at = NULL WHERE launch_id = ?",
        (lp_dir, fw_id, now, lid),
    )
    again = [
        sid
        for sid, path in db.execute(
            "SELECT source_id, path FROM sources WHERE status = 'stray' AND kind != 'pointer'"
        )
        if same_dir(os.path.dirname(path), lp_dir)
    ]
    for chunk, marks in in_chunks(again):
        # What was set aside of them is the launch's after all: pending again, and read on.
        db.execute(
            "UPDATE sources SET status = 'active', status_detail = NULL, committed_offset = 0, content_hash = NULL, "
            f"updated_at = ? WHERE source_id IN ({marks})",
            (now, *chunk),
        )
        db.execute(
            "UPDATE events SET pushed_at = NULL, push_outcome = NULL, push_detail = NULL "
            f"WHERE source_id IN ({marks}) AND push_outcome = 'stray' AND launch_id = ?",
            (*chunk, lid),
        )
    summarize(db, [lid])  # what status reads, in the same transaction
    return (
        f"launch {lid}: what this journal had of it {reason} ({n} events kept in the journal, never applied); "
        f"it is now read from {lp_dir}"
    )


def remember_pushed(db: Any, launches: Sequence[PushedLaunch], now: str) -> None:
    """What a push left of each launch on the LaunchPad, for ``fwspool status`` and the
    ``launch_status`` view; no part of exactly-once (nothing reads it back to decide anything)."""
    db.executemany(
        "UPDATE launches SET fw_id = coalesce(fw_id, ?), fw_name = coalesce(?, fw_name), pushed_state = ?, "
        "outcome = ?, outcome_detail = ?, pushed_state_at = ? WHERE launch_id = ?",
        [(r.fw_id, r.fw_name, r.state, r.outcome, r.detail, now, r.launch_id) for r in launches],
    )
    # A later launch of the same Firework on the LaunchPad: the earlier ones are history.
    db.executemany(
        "UPDATE launches SET history_at = ? WHERE fw_id = ? AND launch_id < ? AND history_at IS NULL",
        [(now, r.fw_id, r.launch_id) for r in launches if r.fw_id is not None and r.outcome != SUPERSEDED],
    )


def _what_else_is_known(
    db: Any, lids: Sequence[int], marks: str
) -> tuple[set[int], dict[int, int], dict[int, set[str]]]:
    """For these launches: those with a completed event in the journal (pushed or not), how many
    records of their spool files are quarantined, and the directories the inbox announced."""
    completed = {
        r[0]
        for r in db.execute(
            # A completion set aside (another LaunchPad's launch of this id: fwspool.identity) is
            # not this launch's: counting it left a walltime exit unapplied, for good.
            "SELECT DISTINCT launch_id FROM events WHERE type = 'completed' "
            f"AND push_outcome IS NOT 'stray' AND launch_id IN ({marks})",
            lids,
        )
    }
    quarantined = dict(
        db.execute(
            "SELECT s.launch_id, count(*) FROM quarantine AS q JOIN sources AS s ON s.source_id = q.source_id "
            f"WHERE s.kind = 'spool' AND s.launch_id IN ({marks}) GROUP BY s.launch_id",
            lids,
        )
    )
    announced: dict[int, set[str]] = {}
    for launch_id, directory in db.execute(_ANNOUNCED_DIRS.format(marks=marks), (*lids, *lids)):
        if directory:
            announced.setdefault(launch_id, set()).add(directory)
    return completed, quarantined, announced


def _known(db: Any, column: str, values: Sequence[int]) -> set[int]:
    """Which of these Firework or launch ids (``column``) the journal has a launch of."""
    found: set[int] = set()
    for chunk, marks in in_chunks(sorted(set(values))):
        found.update(
            r[0]
            for r in db.execute(
                f"SELECT DISTINCT {column} FROM launches WHERE {column} IN ({marks})", tuple(chunk)
            )
        )
    return found


def _merge_writers(streams: dict[str, list[PendingEvent]]) -> list[PendingEvent]:
    """Writers of one launch (the runner, its signal handler, `fwspool emit`) interleave by their
    clocks, but never against their own order: a merge, not a sort."""
    if len(streams) == 1:
        return next(iter(streams.values()))
    return list(heapq.merge(*streams.values(), key=lambda event: event.occurred_at))


def _adds_to(known: tuple[Any, ...] | None, run: dict[str, Any]) -> bool:
    """Whether a registry entry tells the journal something new about its launch."""
    if known is None:
        return True
    fw_id, launch_dir, batch_job_id, fw_name = known
    return bool(
        (launch_dir is None and run.get("launch_dir"))
        or (fw_id is None and run.get("fw_id") is not None)
        or (batch_job_id is None and run.get("batch_job_id"))
        or (fw_name is None and run.get("fw_name"))
    )
