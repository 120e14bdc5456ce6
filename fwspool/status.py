"""``fwspool status``: what the journal holds and whether the database is reachable now."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fwspool.config import redact
from fwspool.errors import FwspoolError
from fwspool.events import iso, utcnow
from fwspool.journal import Journal
from fwspool.push import LAST_PUSH_KEY, age


def collect(journal: Journal, uplink_factory: Callable[[], Any] | None) -> dict[str, Any]:
    """The status report as plain data (the ``--json`` output)."""
    launches = journal.launch_status()
    totals = journal.query(
        """SELECT count(*) AS events,
                  sum(pushed_at IS NULL) AS pending,
                  sum(push_outcome = 'applied') AS pushed,
                  sum(push_outcome = 'superseded') AS superseded,
                  sum(push_outcome = 'skipped') AS skipped
           FROM events"""
    )[0]
    quarantined = journal.query("SELECT count(*) AS n FROM quarantine")[0]["n"]
    report: dict[str, Any] = {
        "journal": journal.path,
        "now": iso(utcnow()),
        "launches": [
            {
                "launch_id": row["launch_id"],
                "fw_id": row["fw_id"],
                "launch_dir": row["launch_dir"],
                "last_event": row["last_event"],
                "last_event_at": row["last_event_at"],
                "pending": row["pending"],
                "pushed": row["pushed"],
                "superseded": row["superseded"],
                "forgotten": bool(row["forgotten"]),
            }
            for row in launches
        ],
        "totals": {
            "launches": len(launches),
            "events": totals["events"] or 0,
            "pending": totals["pending"] or 0,
            "pushed": totals["pushed"] or 0,
            "superseded": totals["superseded"] or 0,
            "skipped": totals["skipped"] or 0,
            "forgotten_launches": sum(1 for r in launches if r["forgotten"]),
            "quarantined": quarantined,
        },
        "last_successful_push": journal.get_meta(LAST_PUSH_KEY),
        "database": None,
    }
    if uplink_factory is not None:
        try:
            uplink = uplink_factory()
            try:
                uplink.check()
                report["database"] = {"where": uplink.where(), "reachable": True, "error": None}
            finally:
                uplink.close()
        except FwspoolError as exc:
            report["database"] = {"where": None, "reachable": False, "error": redact(exc.message)}
    return report


def render(report: dict[str, Any]) -> str:
    """The report for a terminal: one line per launch, then the totals and the database."""
    now = utcnow()
    lines = [
        f"{'launch':>8} {'fw':>6}  {'last event':<20} {'age':>7} {'pending':>7} {'pushed':>6} {'supers.':>7}  note"
    ]
    for r in report["launches"]:
        note = "forgotten" if r["forgotten"] else ""
        lines.append(
            f"{r['launch_id']:>8} {r['fw_id'] if r['fw_id'] is not None else '-':>6}  {r['last_event'] or '-':<20} "
            f"{age(r['last_event_at'], now):>7} {r['pending']:>7} {r['pushed']:>6} {r['superseded']:>7}  {note}"
        )
    t = report["totals"]
    lines.append(
        f"total: {t['launches']} launches, {t['events']} events: {t['pending']} pending, {t['pushed']} pushed, "
        f"{t['superseded']} superseded, {t['skipped']} skipped; {t['forgotten_launches']} forgotten; "
        f"{t['quarantined']} quarantined ranges"
    )
    last = report["last_successful_push"]
    lines.append(f"last successful push: {last + ' (' + age(last, now) + ' ago)' if last else 'never'}")
    db = report["database"]
    if db is None:
        lines.append("database: not checked")
    elif db["reachable"]:
        lines.append(f"database: reachable at {db['where']}")
    else:
        lines.append(f"database: NOT reachable: {db['error']}")
    return "\n".join(lines)
