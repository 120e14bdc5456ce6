"""Where each launch of the journal runs, and setting aside what ran elsewhere (:mod:`fwspool.identity`).

Shared by ingest (a file that disagrees with its launch's directory is never merged into it:
:mod:`~fwspool.journal.store`) and push (the LaunchPad's ``launch_dir`` confirms a launch or
moves it: :mod:`~fwspool.journal.outbox`). Functions of an open connection, inside the caller's
transaction.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence

from fwspool.identity import LaunchHome, same_dir
from fwspool.journal.schema import in_chunks
from fwspool.journal.summary import summarize

_MOVES = """
SELECT launch_id, json_extract(payload, '$.launch_dir') FROM events
WHERE type = 'launch_dir_changed' AND launch_id IN ({marks}) AND push_outcome IS NOT 'stray'"""


def read_homes(db: sqlite3.Connection, launch_ids: Iterable[int]) -> dict[int, LaunchHome]:
    """The journal's launches of these ids, with the directories each recorded moving to."""
    rows: dict[int, tuple[str | None, bool]] = {}
    moves: dict[int, list[str]] = {}
    for chunk, marks in in_chunks(sorted(set(launch_ids))):
        for launch_id, launch_dir, confirmed in db.execute(
            f"SELECT launch_id, launch_dir, confirmed_at IS NOT NULL FROM launches WHERE launch_id IN ({marks})",
            tuple(chunk),
        ):
            rows[launch_id] = (launch_dir, bool(confirmed))
        for launch_id, moved in db.execute(_MOVES.format(marks=marks), tuple(chunk)):
            if moved:
                moves.setdefault(launch_id, []).append(moved)
    return {
        lid: LaunchHome(lid, d, tuple(moves.get(lid, ())), confirmed) for lid, (d, confirmed) in rows.items()
    }


def writer_has_events(db: sqlite3.Connection, writer_id: str, launch_id: int) -> bool:
    """Whether this writer already has events of this launch that were not set aside."""
    return (
        db.execute(
            "SELECT 1 FROM events WHERE launch_id = ? AND writer_id = ? AND push_outcome IS NOT 'stray' LIMIT 1",
            (launch_id, writer_id),
        ).fetchone()
        is not None
    )


def set_aside(db: sqlite3.Connection, home: LaunchHome, keep: Sequence[str], reason: str, now: str) -> int:
    """Set aside everything of launch ``home.launch_id`` that did not come from a directory in
    ``keep``: its sources become ``stray`` (never read again under this launch), its events are
    marked ``stray`` (kept, never applied; one pushed already stays as it was pushed). Events inferred on the login node (lost, released, job_ended)
    belong to the launch row's batch job, so they go with the directory the row named when
    ``keep`` does not include it. Returns how many events were set aside."""
    lid = home.launch_id

    def kept(path: str | None) -> bool:
        return path is not None and any(same_dir(os.path.dirname(path), d) for d in keep)

    sources = db.execute(
        "SELECT source_id, path FROM sources WHERE launch_id = ? AND status != 'stray'", (lid,)
    ).fetchall()
    stray_sources = [sid for sid, path in sources if not kept(path)]
    n = 0
    for chunk, marks in in_chunks(stray_sources):
        n += db.execute(
            "UPDATE events SET pushed_at = ?, push_outcome = 'stray', push_detail = ? "
            f"WHERE source_id IN ({marks}) AND launch_id = ? AND pushed_at IS NULL",
            (now, reason[:500], *chunk, lid),
        ).rowcount
        db.execute(
            f"UPDATE sources SET status = 'stray', status_detail = ?, launch_id = NULL, updated_at = ? "
            f"WHERE source_id IN ({marks})",
            (reason[:500], now, *chunk),
        )
    if not any(same_dir(home.launch_dir, d) for d in keep):
        n += db.execute(
            "UPDATE events SET pushed_at = ?, push_outcome = 'stray', push_detail = ? "
            "WHERE launch_id = ? AND source_id IS NULL AND type IN ('lost', 'released', 'job_ended') AND pushed_at IS NULL",
            (now, reason[:500], lid),
        ).rowcount
    if n:
        summarize(db, [lid])  # what status reads, in the same transaction
    return n
