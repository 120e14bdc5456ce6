"""Reading quarantined records again, with the limits raised: ``fwspool ingest --retry-quarantined``.

A record larger than ``--max-record`` or nested deeper than the depth limit is quarantined, not
lost: the spool file still holds it, and the journal knows where (path, offset, length). After the
user raises the limit, each such range is read again from the same file (the same file: its device
and inode must not have changed) and, when it now holds nothing but valid records, they become
events and the quarantine row goes, in one transaction. What is still bad stays, with one line.
"""

from __future__ import annotations

import os

from fwspool.ingest.batches import BatchBuilder, IngestSummary, pread_full
from fwspool.ingest.spool_file import ReadRules, SpoolFileIngest, accept_frames
from fwspool.journal import Journal
from fwspool.journal.rows import QuarantinedRecord
from fwspool.spool import scan


def retry_quarantined(journal: Journal, rules: ReadRules, summary: IngestSummary) -> None:
    """Bring in every quarantined spool record that the current limits accept."""
    batch = BatchBuilder()
    for record in journal.quarantined_spool_records():
        problem = _retry(rules, record, batch, summary)
        if problem is not None:
            summary.problems.append(f"still quarantined: {record.path} at offset {record.offset}: {problem}")
    if not batch.empty():
        recovered = len(batch.unquarantined)
        counts = journal.commit_ingest(batch.take())
        summary.new_events += counts.new_events
        summary.duplicates += counts.duplicates
        summary.recovered += recovered


def _retry(
    rules: ReadRules, record: QuarantinedRecord, batch: BatchBuilder, summary: IngestSummary
) -> str | None:
    """Add the record's events to ``batch``, or say why it stays quarantined."""
    try:
        src = rules.opener(record.path)
    except OSError as exc:
        return f"cannot open it again: {exc.strerror or exc}"
    try:
        st = os.fstat(src.fd)
        refusal = rules.trust.refusal(record.path, src.fd, st)
        if refusal is not None:
            return f"refused: {refusal}"
        if (record.dev, record.ino) != (st.st_dev, st.st_ino):
            return "the file was replaced since it was read"
        data = pread_full(src, record.length, record.offset)
    except OSError as exc:
        return f"cannot read it again: {exc.strerror or exc}"
    finally:
        src.close()
    if len(data) != record.length:
        return "the file is shorter than when it was read"
    res = scan(data, at_eof=True, max_record=rules.max_record, base=record.offset)
    if res.damage:
        return res.damage[0].reason
    scratch = BatchBuilder()
    reader = SpoolFileIngest(rules, record.path, None, scratch, summary, flush=lambda: None)
    accept_frames(reader, os.path.dirname(record.path), res.frames, record.launch_id)
    if scratch.quarantine:
        return scratch.quarantine[0].reason
    _merge(scratch, batch)
    batch.unquarantined.append(record.quarantine_id)
    return None


def _merge(scratch: BatchBuilder, batch: BatchBuilder) -> None:
    for path, rows in scratch.events.items():
        batch.events.setdefault(path, []).extend(rows)
    for launch_id, row in scratch.launches.items():
        batch.launches.setdefault(launch_id, row)
    batch.n_events += scratch.n_events
    batch.terminal |= scratch.terminal
    batch.signal_exits |= scratch.signal_exits
