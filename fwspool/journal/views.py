"""The operator's side of the journal: the questions ``fwspool status`` and people ask.

The same answers are views in the database itself (``launch_status``, ``pending_events``,
``quarantined``: ``schema/journal.sql``), for the ``sqlite3`` shell.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fwspool.journal.database import JournalDatabase, rows_as_dicts
from fwspool.journal.schema import RUN_TYPES_SQL, in_chunks
from fwspool.runs import PendingEvent

#: The run events, with the few payload fields that say how (a completion's FWAction may be
#: megabytes: only its state and the exception's text are read).
_RUN_EVENTS = f"""
SELECT launch_id, event_id, type, occurred_at,
       json_extract(payload, '$.state'), json_extract(payload, '$.signal'),
       json_extract(payload, '$.signal_name'), json_extract(payload, '$.returncode'),
       json_extract(payload, '$.error'), json_extract(payload, '$.run'),
       json_extract(payload, '$.batch_job_id'), json_extract(payload, '$.reason'),
       CASE WHEN type = 'completed' THEN json_extract(payload, '$.action.stored_data._exception._stacktrace') END,
       CASE WHEN type = 'completed' THEN json_extract(payload, '$.action.stored_data._message') END
FROM events
WHERE launch_id IN ({{marks}}) AND type IN {RUN_TYPES_SQL}
  AND push_outcome IS NOT 'stray'
ORDER BY launch_id, occurred_at, event_id"""

#: The launches with a run event not pushed yet (by ``events_pending``: pending events only).
_PENDING_RUN_EVENTS = (
    "SELECT DISTINCT launch_id FROM events "
    f"WHERE launch_id IN ({{marks}}) AND pushed_at IS NULL AND type IN {RUN_TYPES_SQL}"
)

_PAYLOAD_FIELDS = ("state", "signal", "signal_name", "returncode", "error", "run", "batch_job_id", "reason")

#: The ``meta`` key of the last push pass that reached the database (its end, ISO-8601 UTC).
LAST_PUSH_KEY = "last_successful_push"

#: Every count from ``launch_summary`` (kept by triggers as events come and go): never ``events``.
#: Pending counts leave forgotten launches out, as the ``pending_events`` view does.
_SUMMARY = """
SELECT (SELECT count(*) FROM launches) AS launches,
       (SELECT count(*) FROM launches WHERE terminal_at IS NULL AND forgotten_at IS NULL) AS open,
       (SELECT count(*) FROM launches WHERE terminal_at IS NOT NULL AND forgotten_at IS NULL) AS final,
       (SELECT count(*) FROM launches WHERE forgotten_at IS NOT NULL) AS forgotten,
       (SELECT coalesce(sum(events), 0) FROM launch_summary) AS events,
       (SELECT coalesce(sum(s.pending), 0) FROM launch_summary AS s JOIN launches AS l
        ON l.launch_id = s.launch_id WHERE s.pending > 0 AND l.forgotten_at IS NULL) AS pending,
       (SELECT min(s.oldest_pending_at) FROM launch_summary AS s JOIN launches AS l
        ON l.launch_id = s.launch_id WHERE s.pending > 0 AND l.forgotten_at IS NULL) AS oldest_pending,
       (SELECT value FROM meta WHERE key = ?) AS last_push,
       (SELECT count(*) FROM quarantine) AS quarantined"""

#: The pending event ingested first, among the pending events of the launches whose oldest it
#: is (``events_pending``).
_OLDEST_PENDING = """
SELECT e.launch_id, e.type, e.occurred_at, e.ingested_at
FROM launch_summary AS s JOIN launches AS l ON l.launch_id = s.launch_id
JOIN events AS e ON e.event_id = (
    SELECT p.event_id FROM events AS p WHERE p.launch_id = s.launch_id AND p.pushed_at IS NULL
    ORDER BY p.ingested_at, p.occurred_at LIMIT 1)
WHERE s.pending > 0 AND l.forgotten_at IS NULL AND s.oldest_pending_at = ?
ORDER BY e.ingested_at, e.occurred_at LIMIT 1"""


#: A launch announced under an id this LaunchPad has not handed out (``fwspool.status``).
_ELSEWHERE = "({t}.held IS NOT NULL AND {t}.held != '' AND {t}.confirmed_at IS NULL)"

#: A launch whose outcome its events decide (no push recorded one, or events wait): every other
#: launch is what the last push recorded, counted in SQL by :meth:`OperatorViews.settled_counts`.
_LIVE_IDS = """
SELECT launch_id FROM launches WHERE outcome IS NULL
UNION SELECT launch_id FROM launch_summary WHERE pending > 0"""

#: Launches a push recorded as running silent since before ``?``, or as failed after ``?``: those
#: that may need attention (``fwspool.status`` decides), by the indexes of schema 6.
_MAY_NEED_ATTENTION = """
SELECT l.launch_id FROM launches AS l LEFT JOIN launch_summary AS s ON s.launch_id = l.launch_id
WHERE l.outcome = 'running' AND (s.last_event_at IS NULL OR s.last_event_at < ?)
UNION SELECT l.launch_id FROM launches AS l JOIN launch_summary AS s ON s.launch_id = l.launch_id
WHERE l.outcome IN ({failures}) AND s.last_event_at > ?"""

#: The launches a push recorded and no event waits for, grouped by what status counts of them.
_SETTLED_COUNTS = f"""
SELECT l.pushed_state AS state,
       CASE WHEN l.forgotten_at IS NOT NULL THEN ? ELSE l.outcome END AS outcome,
       l.history_at IS NOT NULL AS history, {_ELSEWHERE.format(t="l")} AS elsewhere,
       l.forgotten_at IS NOT NULL AS forgotten, (l.fw_id IS NULL OR l.launch_id = n.newest) AS newest,
       count(*) AS n
FROM launches AS l LEFT JOIN launch_summary AS s ON s.launch_id = l.launch_id
LEFT JOIN (SELECT fw_id, max(launch_id) AS newest FROM launches AS o
           WHERE NOT {_ELSEWHERE.format(t="o")} GROUP BY fw_id) AS n ON n.fw_id = l.fw_id
WHERE l.outcome IS NOT NULL AND coalesce(s.pending, 0) = 0
GROUP BY 1, 2, 3, 4, 5, 6"""

#: ``launch_status`` rows of some launches, each with whether its Firework has no later launch
#: this LaunchPad knows of, and whether its events decide its outcome.
_STATUS_OF = f"""
SELECT st.*, (st.fw_id IS NULL OR st.launch_id = (
           SELECT max(o.launch_id) FROM launches AS o WHERE o.fw_id = st.fw_id
           AND NOT {_ELSEWHERE.format(t="o")})) AS newest,
       (st.outcome IS NULL OR st.pending > 0) AS live
FROM launch_status AS st WHERE st.launch_id IN ({{ids}})"""


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
        """One row per launch: what the last push left, its last event, how many events are
        pending, pushed, superseded (the ``launch_status`` view)."""
        return self.query("SELECT * FROM launch_status")

    def live_launch_ids(self) -> set[int]:
        """The launches whose outcome their events decide: no push recorded one, or events of
        theirs wait to be pushed (few between two pushes: each running launch pings every hour)."""
        with self.reading() as db:
            return {r[0] for r in db.execute(_LIVE_IDS)}

    def launch_ids(self, sql: str, params: Sequence[Any] = ()) -> set[int]:
        """The launch ids an SQL query picks (its first column)."""
        with self.reading() as db:
            return {r[0] for r in db.execute(sql, tuple(params))}

    def may_need_attention(self, silent_before: str, failed_after: str, failures: Sequence[str]) -> set[int]:
        """Launches a push recorded as running with no event since before ``silent_before``,
        or as one of ``failures`` with an event after ``failed_after`` (ISO times)."""
        sql = _MAY_NEED_ATTENTION.format(failures=", ".join("?" * len(failures)))
        return self.launch_ids(sql, (silent_before, *failures, failed_after))

    def status_rows(self, launch_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The ``launch_status`` rows of these launches by launch id, each with ``newest`` (no
        later launch of its Firework here) and ``live`` (its events decide its outcome)."""
        rows: list[dict[str, Any]] = []
        with self.reading() as db:
            for chunk, marks in in_chunks(sorted(launch_ids)):
                rows += rows_as_dicts(db.execute(_STATUS_OF.format(ids=marks), tuple(chunk)))
        rows.sort(key=lambda r: r["launch_id"])
        return rows

    def every_status_row(self, chunk: int = 500) -> Iterator[list[dict[str, Any]]]:
        """Every ``launch_status`` row, ``chunk`` launches at a time, by launch id: one chunk in
        memory at a time (``fwspool status --all`` over a year's launches)."""
        after = -1
        while True:
            rows = self.query("SELECT * FROM launch_status WHERE launch_id > ? LIMIT ?", (after, chunk))
            if not rows:
                return
            yield rows
            after = rows[-1]["launch_id"]

    def launches_maybe_matching(
        self,
        *,
        fw_ids: Sequence[int] = (),
        states: Sequence[str] = (),
        seen_since: str | None = None,
        pending: bool = False,
    ) -> set[int]:
        """Every launch that may match all the filters given (``fwspool status --fw-id, --state,
        --since, --pending``), a few more perhaps, each filter by an index: the launches whose
        events decide their state are taken for any ``states`` and for ``pending``; with
        ``seen_since`` (ISO), those with their last event or first seen at or after it."""
        picks: list[tuple[str, tuple[Any, ...]]] = []
        if fw_ids:
            picks.append(
                (
                    f"SELECT launch_id FROM launches WHERE fw_id IN ({', '.join('?' * len(fw_ids))})",
                    tuple(fw_ids),
                )
            )
        if states:
            variants = sorted({v for st in states for v in (st, st.upper(), st.lower())})
            marks = ", ".join("?" * len(variants))
            sql = (
                f"SELECT launch_id FROM launches WHERE pushed_state IN ({marks}) "
                f"UNION SELECT launch_id FROM launches WHERE outcome IN ({marks}) UNION {_LIVE_IDS}"
            )
            if "forgotten" in {st.lower() for st in states}:
                sql += " UNION SELECT launch_id FROM launches WHERE forgotten_at IS NOT NULL"
            picks.append((sql, (*variants, *variants)))
        if pending:
            picks.append((_LIVE_IDS, ()))
        if seen_since is not None:
            picks.append(
                (
                    "SELECT launch_id FROM launch_summary WHERE last_event_at >= ? "
                    "UNION SELECT launch_id FROM launches WHERE first_seen_at >= ?",
                    (seen_since, seen_since),
                )
            )
        if not picks:
            return set()
        sql = " INTERSECT ".join(f"SELECT launch_id FROM ({pick})" for pick, _ in picks)
        return self.launch_ids(sql, [p for _, params in picks for p in params])

    def settled_counts(self, forgotten: str) -> list[dict[str, Any]]:
        """The launches whose outcome the last push recorded and no event waits for, counted by
        (state, outcome, history, elsewhere, forgotten, newest); ``forgotten`` names the outcome
        of a forgotten one."""
        return self.query(_SETTLED_COUNTS, (forgotten,))

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
        s = self.summary()
        return s.pending, s.oldest_pending

    def oldest_pending(self) -> dict[str, Any] | None:
        """The pending event ingested first (the push's lag): its launch, type and times."""
        oldest = self.summary().oldest_pending
        if oldest is None:
            return None
        rows = self.query(_OLDEST_PENDING, (oldest,))
        return rows[0] if rows else None

    def event_totals(self) -> dict[str, int]:
        """Events in the journal: all, pending, and pushed by outcome (``launch_summary``)."""
        row = self.query(
            """SELECT sum(events) AS events, sum(pending) AS pending, sum(pushed) AS pushed,
                      sum(superseded) AS superseded, sum(skipped) AS skipped
               FROM launch_summary"""
        )[0]
        return {k: int(v or 0) for k, v in row.items()}

    def quarantined_by_launch(self) -> tuple[int, dict[int, int]]:
        """Quarantined ranges in all, and per launch those of its spool files."""
        total = self.query("SELECT count(*) AS n FROM quarantine")[0]["n"]
        rows = self.query(
            "SELECT s.launch_id, count(*) AS n FROM quarantine AS q JOIN sources AS s "
            "ON s.source_id = q.source_id WHERE s.launch_id IS NOT NULL GROUP BY s.launch_id"
        )
        return int(total), {r["launch_id"]: int(r["n"]) for r in rows}

    def run_events(self, launch_ids: Sequence[int]) -> dict[int, list[PendingEvent]]:
        """The events of these launches that decide what they came to (started, exited, lost,
        released, completed), pushed or not, in order, each with the payload fields that say how."""
        found: dict[int, list[PendingEvent]] = {}
        with self.reading() as db:
            for chunk, marks in in_chunks(sorted(launch_ids)):
                for launch_id, event_id, etype, occurred_at, *fields in db.execute(
                    _RUN_EVENTS.format(marks=marks), tuple(chunk)
                ):
                    *values, stacktrace, message = fields
                    payload: dict[str, Any] = {
                        k: v for k, v in zip(_PAYLOAD_FIELDS, values, strict=True) if v is not None
                    }
                    if stacktrace is not None or message is not None:
                        stored = {"_exception": {"_stacktrace": stacktrace}, "_message": message}
                        payload["action"] = {"stored_data": stored}
                    event = PendingEvent(event_id, etype, occurred_at, payload)
                    found.setdefault(launch_id, []).append(event)
        return found

    def with_pending_run_events(self, launch_ids: Sequence[int]) -> set[int]:
        """Those of these launches with a run event (:meth:`run_events`' kinds) not pushed yet.
        The others' pending events (pings, notes, a job's end) leave them what the last push
        recorded, so ``fwspool status`` need not read their run events: 10,000 running jobs
        whose hourly pings wait for a push are 10,000 launches it would read one by one."""
        found: set[int] = set()
        with self.reading() as db:
            for chunk, marks in in_chunks(sorted(launch_ids)):
                found.update(r[0] for r in db.execute(_PENDING_RUN_EVENTS.format(marks=marks), tuple(chunk)))
        return found

    def batch_ends(self, launch_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The batch system's record of how each of these launches' jobs ended, from its last
        ``lost`` or ``job_ended`` event: ``{"event": type, "batch_end": JobEnd as a dict, or None
        when it recorded none}``. One indexed read per launch (``events_by_launch``): status asks
        it only for the launches it lists as failed."""
        found: dict[int, dict[str, Any]] = {}
        with self.reading() as db:
            for chunk, marks in in_chunks(sorted(launch_ids)):
                for launch_id, etype, end in db.execute(_BATCH_ENDS.format(marks=marks), tuple(chunk)):
                    found[launch_id] = {"event": etype, "batch_end": json.loads(end) if end else None}
        return found

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


#: The inferred events that carry the batch system's record of a job's end, oldest first (the
#: last one per launch is the one that counts).
_BATCH_ENDS = """
SELECT launch_id, type, json_extract(payload, '$.batch_end')
FROM events
WHERE launch_id IN ({marks}) AND type IN ('lost', 'job_ended') AND push_outcome IS NOT 'stray'
ORDER BY launch_id, occurred_at, event_id"""

#: The counts of :meth:`OperatorViews.blocks`, one per launch.
BLOCK_COUNTS = ("completed", "fizzled", "running", "ended", "released", "not_started")

#: Launches whose directory may be in a ``block_*`` directory (the LIKE: 20,000 launches of
#: FireWorks' own ``launcher_*`` directories are not each looked at in Python).
_BLOCK_LAUNCHES = """
SELECT l.launch_id, l.launch_dir, l.batch_job_id, s.completed_state, s.last_run
FROM launches AS l LEFT JOIN launch_summary AS s ON s.launch_id = l.launch_id
WHERE l.launch_dir LIKE '%/block!_%' ESCAPE '!' AND l.forgotten_at IS NULL
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
