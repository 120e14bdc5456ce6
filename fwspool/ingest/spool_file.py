"""Reading one spool file into the next ingest batch, from the offset the journal committed.

Nothing is trusted about a file but its bytes and its identity: not its size, not its mtime (NFS
attribute caches lie for up to a minute). A file replaced under its name or truncated is read
again from the start (events are idempotent); damaged bytes are quarantined; a torn tail waits.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from fwspool.events import (
    EVENT_CLASSES,
    READABLE_VERSIONS,
    Checkpoint,
    Completed,
    Event,
    Note,
    RawRecord,
    Started,
    iso,
)
from fwspool.ingest.batches import BatchBuilder, IngestSummary, pread_full, quarantine_row, refuse
from fwspool.journal import QUARANTINE_KEEP
from fwspool.journal.rows import EventRow, KnownSource, LaunchRow, SourceRow
from fwspool.spool import HEADER_LEN, SPOOL_NAME_RE, Frame, OsSourceFile, SpoolReader, frame
from fwspool.trust import SYMLINK_REASON, TrustPolicy, too_deep

_raw_decoder = msgspec.json.Decoder(RawRecord)
_event_decoder = msgspec.json.Decoder(Event)
#: Events with free-form JSON (FWAction, checkpoint, fworker, note data): the only ones whose
#: nesting depth must be checked (fwspool.trust); a ping costs one set lookup.
_NESTABLE = frozenset(str(t.__struct_config__.tag) for t in (Started, Checkpoint, Completed, Note))
_INT64_MAX = 2**63 - 1
#: Each event class's type name (one dict lookup instead of two attribute lookups per event).
_TYPE_OF = {cls: name for name, cls in EVENT_CLASSES.items()}
#: Bytes of a spool file's head that identify it (its first record's header and more).
FINGERPRINT_LEN = 64


@dataclass(frozen=True, slots=True)
class ReadRules:
    """How every file of a pass is opened and judged."""

    #: Opens a file for reading without following a link (tests pass fault-injecting ones).
    opener: Callable[[str], OsSourceFile]
    #: Whose files are believed (fwspool.trust).
    trust: TrustPolicy
    max_record: int
    max_depth: int


class SpoolFileIngest:
    """One spool file read in one pass: what the journal knew of it (``known``), what this pass
    learns (:attr:`row`, the source row to commit), and the events and damage it adds to the
    batch. ``flush`` hands the batch over when it is full, between two chunks of the file."""

    def __init__(
        self,
        rules: ReadRules,
        path: str,
        known: KnownSource | None,
        batch: BatchBuilder,
        summary: IngestSummary,
        flush: Callable[[], None],
    ) -> None:
        self.rules, self.path, self.known, self.batch, self.summary = rules, path, known, batch, summary
        self.flush = flush
        self.writer = SPOOL_NAME_RE.match(os.path.basename(path)).group(1)  # type: ignore[union-attr]
        self.row = SourceRow(path, "spool", writer_id=self.writer)
        #: Whether the journal's row must be written even if no record is new.
        self.changed = known is None

    def read(self) -> None:
        src = self._open()
        if src is None:
            return
        try:
            st = os.fstat(src.fd)
            if not stat.S_ISREG(st.st_mode):
                self.summary.problems.append(f"not a regular file: {self.path}")
                return
            refusal = self.rules.trust.refusal(self.path, src.fd, st)
            if refusal is not None:
                refuse(self.batch, self.summary, self.path, "spool", refusal, self.known, st.st_size)
                return
            offset = self._start_offset(src, st)
            self._read_from(src, offset)
        except OSError as exc:
            # An I/O error on one file (EIO, ESTALE on NFS) must not stop the others. What was
            # read before it is in the batch with its offset; the file is read again next pass.
            problem = f"cannot read {self.path}: {exc.strerror or exc}"
            self.summary.problems.append(problem)
            done = self.batch.sources.get(self.path) or SourceRow(self.path, "spool", writer_id=self.writer)
            self.batch.sources[self.path] = done.but(status="unreadable", status_detail=problem[:500])
        finally:
            src.close()

    def _open(self) -> OsSourceFile | None:
        """The file opened, or None (and why, in the batch and the summary) when it cannot be."""
        known, path = self.known, self.path
        try:
            return self.rules.opener(path)
        except FileNotFoundError:
            if known is not None and known.status != "missing":
                self.summary.problems.append(f"spool file vanished: {path}")
                self.batch.sources[path] = SourceRow(path, "spool", status="missing")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                refuse(self.batch, self.summary, path, "spool", SYMLINK_REASON, known)
                return None
            problem = f"cannot open {path}: {exc.strerror}"
            self.summary.problems.append(problem)
            if known is None or known.status != "unreadable":
                self.batch.sources[path] = SourceRow(
                    path, "spool", status="unreadable", status_detail=problem
                )
        return None

    def _start_offset(self, src: OsSourceFile, st: os.stat_result) -> int:
        """Where to read from: the committed offset, or 0 for a file replaced or truncated since."""
        known, row = self.known, self.row
        row.dev, row.ino = st.st_dev, st.st_ino
        head = pread_full(src, FINGERPRINT_LEN, 0)
        fingerprint = f"{zlib.crc32(head[:HEADER_LEN]):08x}" if len(head) >= HEADER_LEN else None
        offset = known.committed_offset if known is not None else 0
        if known is not None and offset > 0:
            replaced = (known.dev, known.ino) != (st.st_dev, st.st_ino) or (
                known.fingerprint is not None and fingerprint != known.fingerprint
            )
            if replaced or st.st_size < offset:
                # Another file now has this name, or this one shrank: reading on from the old
                # offset would misread. Events are idempotent, so read it again from the start.
                what = "replaced" if replaced else "truncated"
                self.summary.problems.append(
                    f"spool file {what} under fwspool, re-reading from 0: {self.path}"
                )
                row.status, row.status_detail = what, f"was at offset {offset}"
                offset = 0
                self.changed = True
        if fingerprint is not None and (known is None or known.fingerprint != fingerprint):
            row.fingerprint = fingerprint
            self.changed = True
        return offset

    def _read_from(self, src: OsSourceFile, offset: int) -> None:
        reader = SpoolReader(src, offset, max_record=self.rules.max_record)
        launch_id = self.known.launch_id if self.known is not None else None
        launch_dir = os.path.dirname(self.path)
        batch, row = self.batch, self.row
        for res in reader:
            if res.frames:
                launch_id = accept_frames(self, launch_dir, res.frames, launch_id)
            for dm in res.damage:
                kept = pread_full(src, min(dm.length, QUARANTINE_KEEP), dm.offset)
                batch.quarantine.append(
                    quarantine_row(self.path, dm.offset, kept, dm.reason)._replace(length=dm.length)
                )
            row.committed_offset = res.consumed
            self.changed = True
            # The offset travels in the same batch as the events it covers.
            batch.sources[self.path] = row.but(launch_id=launch_id, status="active")
            self.flush()
        status = "torn" if reader.torn else "active"
        if reader.torn:
            self.summary.torn_waiting += 1
        if launch_id is not None:
            row.launch_id = launch_id
        if self.changed or self.known is None or self.known.status != status:
            if "committed_offset" not in row.columns():
                row.committed_offset = offset
            if row.status not in ("replaced", "truncated"):
                row.status = status
            batch.sources[self.path] = row


def accept_frames(
    file: SpoolFileIngest, launch_dir: str, frames: Sequence[Frame], launch_id: int | None
) -> int | None:
    """Turn framed payloads into event rows, or quarantine them; returns the file's launch id
    (the last record's, else ``launch_id``).

    The hot loop of a large ingest: one tuple per event, names bound to locals, and a launch
    looked at only when the batch does not know it yet.
    """
    path, name_writer, batch = file.path, file.writer, file.batch
    rows = batch.events.get(path)
    if rows is None:
        rows = batch.events[path] = []
    before = len(rows)
    append = rows.append
    new_row = tuple.__new__  # EventRow(...) without the Python-level __new__ of a named tuple
    launches = batch.launches
    decode_raw = _raw_decoder.decode
    decode_event = _event_decoder.decode
    max_depth = file.rules.max_depth
    id_prefix = name_writer + "-"
    type_of = _TYPE_OF
    for offset, _length, payload in frames:
        try:
            rec = decode_raw(payload)
            if rec.v not in READABLE_VERSIONS:
                raise ValueError(f"unknown record version {rec.v}")
            ev = decode_event(rec.event)
            etype = type_of[type(ev)]
            if etype in _NESTABLE and too_deep(bytes(rec.event), max_depth):
                raise RecursionError  # as msgspec itself past ~1,000 levels
            seq, lid, fw_id = rec.seq, rec.launch_id, rec.fw_id
            # SQLite's integers are 64-bit: a larger number would fail the whole batch's commit.
            if not (
                0 < seq <= _INT64_MAX
                and -_INT64_MAX <= lid <= _INT64_MAX
                and (fw_id is None or -_INT64_MAX <= fw_id <= _INT64_MAX)
                and rec.writer == name_writer
            ):
                raise ValueError(_invalid_envelope(rec, name_writer))
            text = str(rec.event, "utf-8")
        except (msgspec.DecodeError, ValueError, RecursionError) as exc:
            if isinstance(exc, RecursionError):
                exc = ValueError(f"JSON nested deeper than {max_depth} levels")
            # The whole record as it is in the file: bytes == file[offset : offset + length].
            batch.quarantine.append(quarantine_row(path, offset, frame(payload), f"invalid record: {exc}"))
            continue
        # The event_id() of the record (its writer is the file's: checked above); seq > 0, so
        # zfill pads as the :010d of event_id() does.
        append(
            new_row(
                EventRow,
                (
                    id_prefix + str(seq).zfill(10),
                    name_writer,
                    seq,
                    lid,
                    fw_id,
                    etype,
                    iso(rec.at),
                    text,
                    offset,
                ),
            )
        )
        if lid not in launches:
            launches[lid] = LaunchRow(lid, fw_id, launch_dir, "spool")
        if etype == "exited":
            # A job killed by a signal may be requeued by its batch system (fwspool.runs).
            (batch.signal_exits if ev.signal is not None else batch.terminal).add(lid)  # type: ignore[union-attr]
        elif etype == "released":
            batch.terminal.add(lid)  # a packed job will not run it (fwspool.block)
        elif etype == "started" and ev.batch_job_id is not None:  # type: ignore[union-attr]
            launches[lid] = launches[lid]._replace(batch_job_id=ev.batch_job_id, batch_system=ev.batch_system)  # type: ignore[union-attr]
        if lid:
            launch_id = lid
    batch.n_events += len(rows) - before
    return launch_id


def _invalid_envelope(rec: RawRecord, name_writer: str) -> str:
    """Why a record's envelope is refused (accept_frames's checks, in the order they were made)."""
    if rec.writer != name_writer:
        return f"record of writer {rec.writer} in the file of writer {name_writer}"
    if rec.seq < 1:
        return f"sequence number {rec.seq} < 1"
    return "seq, launch_id or fw_id out of the 64-bit integer range"


def frame_at(opener: Callable[[str], OsSourceFile], path: str, offset: int) -> tuple[int, bytes]:
    """The record at ``offset`` of a spool file, read back for the quarantine: its length and
    up to QUARANTINE_KEEP of its bytes; (0, b"") when it cannot be read back."""
    try:
        src = opener(path)
    except OSError:
        return 0, b""
    try:
        head = pread_full(src, HEADER_LEN, offset)
        length = HEADER_LEN + int(head[5:13], 16) + 1
        return length, pread_full(src, min(length, QUARANTINE_KEEP), offset)
    except (OSError, ValueError):
        return 0, b""
    finally:
        src.close()
