"""Reading one FireWorks offline job (``FW_offline.json[.gz]``, ``FW_ping.json``) into the next
ingest batch.

FireWorks rewrites these files in place, so each is read whole (:mod:`fwspool.offline`): a
half-written file does not parse and waits for the next pass, and a version whose bytes were
read before adds nothing. Its facts become events with deterministic ids, so reading a newer
version adds only what is new.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping

import msgspec

from fwspool import offline
from fwspool.events import Record, event_id, iso
from fwspool.ingest.batches import BatchBuilder, IngestSummary, refuse
from fwspool.ingest.spool_file import ReadRules
from fwspool.journal.rows import EventRow, KnownSource, LaunchRow, SourceRow

_encoder = msgspec.json.Encoder()


def read_offline_file(
    rules: ReadRules,
    path: str,
    known: Mapping[str, KnownSource],
    batch: BatchBuilder,
    summary: IngestSummary,
    now: dt.datetime,
) -> None:
    """Add what ``path`` (an ``FW_offline.json``) says that the journal does not have yet.

    ``known`` is every known source's row by path: the file's own, and its ``FW_ping.json``'s.
    """
    row = known.get(path)
    # A file a journal before schema 4 read keeps the writer id it had then (fwspool.offline).
    legacy = row is not None and (
        row.writer_id is None
        or (row.launch_id is not None and row.writer_id == offline.offline_writer_id(row.launch_id))
    )
    try:
        snap = offline.snapshot(
            path, rules.max_record, now, rules.trust.refusal, rules.max_depth, legacy_writer=legacy
        )
    except offline.NotYet:
        summary.torn_waiting += 1
        return
    except offline.Refused as exc:
        refuse(batch, summary, path, "fw_offline", str(exc), row)
        return
    except (ValueError, OSError) as exc:
        problem = f"unreadable FireWorks offline file {path}: {exc}"
        summary.problems.append(problem)
        if row is None or row.status != "unreadable":
            batch.sources[path] = SourceRow(
                path, "fw_offline", status="unreadable", status_detail=problem[:500]
            )
        return
    launch_dir = os.path.dirname(path)
    _judge_ping_file(snap, os.path.join(launch_dir, offline.PING_NAME), known, batch, summary)
    if row is not None and row.content_hash == snap.content_hash:
        return  # the same bytes as last time: nothing new, and nothing to write
    # Every event carries the fw_id (FW.json is written at reservation), not only the first.
    fw_id = (
        offline.read_fw_id(launch_dir, rules.max_record, rules.trust.refusal)
        if row is None or snap.records
        else None
    )
    if snap.records:
        rows = batch.events.setdefault(path, [])
        rows += [_event_row(rec, fw_id) for rec in snap.records]
        batch.n_events += len(snap.records)
    if snap.finished:
        batch.terminal.add(snap.launch_id)
    batch.sources[path] = SourceRow(
        path,
        "fw_offline",
        launch_id=snap.launch_id,
        content_hash=snap.content_hash,
        status="active",
        writer_id=offline.offline_writer_id(snap.launch_id, None if legacy else launch_dir),
    )
    # Also when the file was known: the launch may have been registered earlier by another
    # route without its fw_id.
    if snap.launch_id not in batch.launches:
        batch.launches[snap.launch_id] = LaunchRow(snap.launch_id, fw_id, launch_dir, "fw_offline")


def _judge_ping_file(
    snap: offline.OfflineSnapshot,
    ping_path: str,
    known: Mapping[str, KnownSource],
    batch: BatchBuilder,
    summary: IngestSummary,
) -> None:
    """``FW_ping.json`` is read with its ``FW_offline.json``; only its trust is its own."""
    ping_row = known.get(ping_path)
    if snap.refused_ping is not None:
        refuse(batch, summary, ping_path, "fw_ping", snap.refused_ping, ping_row)
    elif ping_row is not None and ping_row.status == "refused":
        # Believed again (chown, chmod): its facts are in this snapshot.
        batch.sources[ping_path] = SourceRow(ping_path, "fw_ping", status="active", status_detail=None)


def _event_row(rec: Record, fw_id: int | None) -> EventRow:
    return EventRow(
        event_id(rec.writer, rec.seq),
        rec.writer,
        rec.seq,
        rec.launch_id,
        fw_id,
        str(type(rec.event).__struct_config__.tag),
        iso(rec.at),
        _encoder.encode(rec.event).decode("utf-8"),
        None,  # source_offset: a FireWorks offline file is read whole
    )
