"""Ingest: copy new events from spool files and FireWorks offline files into the journal.

One pass looks at the directories of every launch the journal knows that is still in progress,
plus every ``--root`` tree, reads each spool file from its committed offset to EOF, and commits
events together with the offsets they advance, in batches. Nothing is trusted about a file but
its bytes: not its size, not its mtime (NFS attribute caches lie for up to a minute).
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fwspool import offline
from fwspool.errors import InputError
from fwspool.events import RECORD_VERSION, Event, RawRecord, Record, event_id, iso, utcnow
from fwspool.journal import QUARANTINE_KEEP, IngestBatch, Journal
from fwspool.spool import (
    DEFAULT_MAX_RECORD,
    HEADER_LEN,
    SPOOL_NAME_RE,
    OsSourceFile,
    SourceFile,
    SpoolReader,
    frame,
)

_raw_decoder = msgspec.json.Decoder(RawRecord)
_event_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()
#: Bytes of a spool file's head that identify it (its first record's header and more).
FINGERPRINT_LEN = 64


@dataclass(slots=True)
class IngestSummary:
    """What one or more passes did; printed as the one-line summary."""

    files: int = 0
    new_events: int = 0
    duplicates: int = 0
    quarantined: int = 0
    torn_waiting: int = 0
    #: One line per file that needs a person's attention (replaced, truncated, refused...).
    problems: list[str] = field(default_factory=list)

    def add(self, other: IngestSummary) -> None:
        self.files += other.files
        self.new_events += other.new_events
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.torn_waiting = other.torn_waiting
        self.problems.extend(other.problems)

    def line(self) -> str:
        return (
            f"ingest: {self.files} files, {self.new_events} new events, {self.duplicates} duplicates skipped, "
            f"{self.quarantined} quarantined, {self.torn_waiting} torn tails waiting"
        )


@dataclass(slots=True)
class _Pending:
    """The batch being built; flushed into one journal transaction."""

    launches: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    terminal: set[int] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.launches or self.events or self.sources or self.quarantine or self.terminal)

    def size(self) -> int:
        return len(self.events) + len(self.quarantine)

    def clear(self) -> None:
        self.launches.clear()
        self.events.clear()
        self.sources.clear()
        self.quarantine.clear()
        self.terminal.clear()


class Ingester:
    """Runs ingest passes against one journal.

    ``opener`` opens a file for reading (tests pass a fault-injecting one); ``clock`` gives the
    login node's time for offline-file facts that carry none.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        roots: Iterable[str] = (),
        max_record: int = DEFAULT_MAX_RECORD,
        batch_size: int = 20_000,
        opener: Callable[[str], SourceFile] = OsSourceFile,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.journal = journal
        self.roots = [os.path.abspath(r) for r in roots]
        for root in self.roots:
            if not os.path.isdir(root):
                raise InputError(f"--root {root} is not a directory")
        self.max_record = max_record
        self.batch_size = batch_size
        self.opener = opener
        self.clock = clock

    # -- discovery ---------------------------------------------------------------------------

    def _candidates(
        self, dirs: list[tuple[int, str]], known: dict[str, dict[str, Any]], summary: IngestSummary
    ) -> tuple[list[str], list[str]]:
        """Spool files and FireWorks offline files to read in this pass."""
        spool_files: dict[str, None] = {}
        offline_files: dict[str, None] = {}

        def wanted(path: str) -> bool:
            row = known.get(path)
            if row is None or row["forgotten_at"]:
                return row is None
            # A finished launch's files are settled, except a torn tail still waiting for its
            # bytes (e.g. the runner's own file while its exit was recorded in another one).
            return not row["terminal_at"] or row["status"] == "torn"

        def look_at(directory: str, names: list[str]) -> None:
            for name in names:
                if SPOOL_NAME_RE.match(name):
                    path = os.path.join(directory, name)
                    if wanted(path):
                        spool_files[path] = None
            # FireWorks' own offline files, read even beside spool files (an unmodified
            # `rlaunch --offline` job may also call `fwspool emit`), unless `fwspool rlaunch` runs
            # the launch: it leaves FW_offline.json as `qlaunch -r` wrote it.
            present = set(names).intersection(offline.OFFLINE_NAMES)
            for name in offline.OFFLINE_NAMES:
                if name in present:
                    path = os.path.join(directory, name)
                    row = known.get(path)
                    if wanted(path) and not (row is not None and row["spool_driven"]):
                        offline_files[path] = None
                    break

        for path, row in known.items():
            if row["kind"] == "spool" and row["status"] == "torn" and row["terminal_at"] and wanted(path):
                spool_files[path] = None
        for _launch_id, directory in dirs:
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                summary.problems.append(f"launch dir vanished: {directory}")
                continue
            except OSError as exc:
                summary.problems.append(f"cannot list {directory}: {exc.strerror}")
                continue
            look_at(directory, names)
        for root in self.roots:
            for directory, subdirs, names in os.walk(root):
                subdirs.sort()
                look_at(directory, names)
        return list(spool_files), list(offline_files)

    # -- one pass ----------------------------------------------------------------------------

    def run_pass(
        self,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[int, int], None] | None = None,
    ) -> IngestSummary:
        """Ingest everything new once. ``should_stop`` is checked between batches."""
        summary = IngestSummary()
        dirs, known = self.journal.scan_targets()
        spool_files, offline_files = self._candidates(dirs, known, summary)
        total = len(spool_files) + len(offline_files)
        pending = _Pending()
        done = 0
        now = self.clock()
        for i, path in enumerate(spool_files + offline_files):
            if pending.size() >= self.batch_size:
                self._flush(pending, summary)
                # Stop only between batches: everything committed so far is consistent.
                if should_stop():
                    break
            if i < len(spool_files):
                self._read_spool(path, known.get(path), pending, summary)
            else:
                self._read_offline(path, known.get(path), pending, summary, now)
            done += 1
            if progress:
                progress(done, total)
        self._flush(pending, summary)
        summary.files = done
        return summary

    def _flush(self, pending: _Pending, summary: IngestSummary) -> None:
        """Commit the batch in one transaction and clear it."""
        if pending.empty():
            return
        counts = self.journal.commit_ingest(
            IngestBatch(
                launches=list(pending.launches.values()),
                events=pending.events,
                sources=list(pending.sources.values()),
                quarantine=pending.quarantine,
                terminal_launches=pending.terminal,
            )
        )
        summary.new_events += counts.new_events
        summary.duplicates += counts.duplicates
        summary.quarantined += counts.quarantined
        pending.clear()

    # -- spool files -------------------------------------------------------------------------

    def _read_spool(
        self, path: str, row: dict[str, Any] | None, pending: _Pending, summary: IngestSummary
    ) -> None:
        name_writer = SPOOL_NAME_RE.match(os.path.basename(path)).group(1)  # type: ignore[union-attr]
        try:
            src = self.opener(path)
        except FileNotFoundError:
            if row is not None and row["status"] != "missing":
                summary.problems.append(f"spool file vanished: {path}")
                pending.sources[path] = {"path": path, "kind": "spool", "status": "missing"}
            return
        except OSError as exc:
            problem = f"cannot open {path}: {exc.strerror}"
            summary.problems.append(problem)
            if row is None or row["status"] != "unreadable":
                pending.sources[path] = {
                    "path": path,
                    "kind": "spool",
                    "status": "unreadable",
                    "status_detail": problem,
                }
            return
        try:
            st = os.fstat(src.fd) if hasattr(src, "fd") else None
            if st is not None and not stat.S_ISREG(st.st_mode):
                summary.problems.append(f"not a regular file: {path}")
                return
            head = _pread_full(src, FINGERPRINT_LEN, 0)
            offset = row["committed_offset"] if row is not None else 0
            new_row: dict[str, Any] = {"path": path, "kind": "spool", "writer_id": name_writer}
            changed = row is None
            if st is not None:
                new_row.update(dev=st.st_dev, ino=st.st_ino)
            fingerprint = f"{zlib.crc32(head[:HEADER_LEN]):08x}" if len(head) >= HEADER_LEN else None
            if row is not None and offset > 0:
                replaced = (st is not None and (row["dev"], row["ino"]) != (st.st_dev, st.st_ino)) or (
                    row["fingerprint"] is not None and fingerprint != row["fingerprint"]
                )
                size = st.st_size if st is not None else None
                truncated = size is not None and size < offset
                if replaced or truncated:
                    # Another file now has this name, or this one shrank: reading on from the old
                    # offset would misread. Events are idempotent, so read it again from the start.
                    what = "replaced" if replaced else "truncated"
                    summary.problems.append(f"spool file {what} under fwspool, re-reading from 0: {path}")
                    new_row.update(status=what, status_detail=f"was at offset {offset}")
                    offset = 0
                    changed = True
            if fingerprint is not None and (row is None or row["fingerprint"] != fingerprint):
                new_row["fingerprint"] = fingerprint
                changed = True
            reader = SpoolReader(src, offset, max_record=self.max_record)
            launch_id = row["launch_id"] if row is not None else None
            for res in reader:
                for fr in res.frames:
                    launch_id = (
                        self._accept_frame(path, name_writer, fr.offset, fr.payload, pending) or launch_id
                    )
                for dm in res.damage:
                    self._quarantine(path, src, dm.offset, dm.length, dm.reason, pending)
                new_row["committed_offset"] = res.consumed
                changed = True
                # The offset travels in the same batch as the events it covers.
                pending.sources[path] = dict(new_row, launch_id=launch_id, status="active")
                if pending.size() >= self.batch_size:
                    self._flush(pending, summary)
            status = "torn" if reader.torn else "active"
            if reader.torn:
                summary.torn_waiting += 1
            if launch_id is not None:
                new_row["launch_id"] = launch_id
            if changed or row is None or row["status"] != status:
                new_row.setdefault("committed_offset", offset)
                new_row.setdefault("status", status)
                if new_row["status"] not in ("replaced", "truncated"):
                    new_row["status"] = status
                pending.sources[path] = new_row
        except OSError as exc:
            # An I/O error on one file (EIO, ESTALE on NFS) must not stop the others. What was
            # read before it is pending with its offset; the file is read again next pass.
            problem = f"cannot read {path}: {exc.strerror or exc}"
            summary.problems.append(problem)
            done = pending.sources.get(path) or {"path": path, "kind": "spool", "writer_id": name_writer}
            pending.sources[path] = dict(done, status="unreadable", status_detail=problem[:500])
        finally:
            src.close()

    def _accept_frame(
        self, path: str, name_writer: str, offset: int, payload: bytes, pending: _Pending
    ) -> int | None:
        """Turn one framed payload into an event row, or quarantine it; returns its launch id."""
        try:
            rec = _raw_decoder.decode(payload)
            if rec.v != RECORD_VERSION:
                raise ValueError(f"unknown record version {rec.v}")
            ev = _event_decoder.decode(rec.event)
            if rec.writer != name_writer:
                raise ValueError(f"record of writer {rec.writer} in the file of writer {name_writer}")
            if rec.seq < 1:
                raise ValueError(f"sequence number {rec.seq} < 1")
        except (msgspec.DecodeError, ValueError) as exc:
            # The whole record as it is in the file: bytes == file[offset : offset + length].
            pending.quarantine.append(_quarantine_row(path, offset, frame(payload), f"invalid record: {exc}"))
            return None
        etype = type(ev).__struct_config__.tag
        pending.events.append(
            {
                "_path": path,
                "event_id": event_id(rec.writer, rec.seq),
                "writer_id": rec.writer,
                "seq": rec.seq,
                "launch_id": rec.launch_id,
                "fw_id": rec.fw_id,
                "type": etype,
                "occurred_at": iso(rec.at),
                "payload": bytes(rec.event).decode("utf-8"),
                "source_offset": offset,
            }
        )
        self._learn_launch(pending, rec.launch_id, rec.fw_id, os.path.dirname(path), "spool")
        if etype == "exited":
            pending.terminal.add(rec.launch_id)
        return rec.launch_id

    def _quarantine(
        self, path: str, src: SourceFile, offset: int, length: int, reason: str, pending: _Pending
    ) -> None:
        kept = _pread_full(src, min(length, QUARANTINE_KEEP), offset)
        row = _quarantine_row(path, offset, kept, reason)
        row["length"] = length
        pending.quarantine.append(row)

    @staticmethod
    def _learn_launch(
        pending: _Pending, launch_id: int, fw_id: int | None, launch_dir: str, learned_from: str
    ) -> None:
        if launch_id not in pending.launches:
            pending.launches[launch_id] = {
                "launch_id": launch_id,
                "fw_id": fw_id,
                "launch_dir": launch_dir,
                "learned_from": learned_from,
            }

    # -- FireWorks offline files -------------------------------------------------------------

    def _read_offline(
        self,
        path: str,
        row: dict[str, Any] | None,
        pending: _Pending,
        summary: IngestSummary,
        now: dt.datetime,
    ) -> None:
        try:
            snap = offline.snapshot(path, self.max_record, now)
        except offline.NotYet:
            summary.torn_waiting += 1
            return
        except (ValueError, OSError) as exc:
            problem = f"unreadable FireWorks offline file {path}: {exc}"
            summary.problems.append(problem)
            if row is None or row["status"] != "unreadable":
                pending.sources[path] = {
                    "path": path,
                    "kind": "fw_offline",
                    "status": "unreadable",
                    "status_detail": problem[:500],
                }
            return
        if row is not None and row["content_hash"] == snap.content_hash:
            return  # the same bytes as last time: nothing new, and nothing to write
        launch_dir = os.path.dirname(path)
        # Every event carries the fw_id (FW.json is written at reservation), not only the first.
        fw_id = offline.read_fw_id(launch_dir, self.max_record) if row is None or snap.records else None
        if row is None:
            self._learn_launch(pending, snap.launch_id, fw_id, launch_dir, "fw_offline")
        for rec in snap.records:
            pending.events.append(_offline_event_row(rec, fw_id, path))
        if snap.finished:
            pending.terminal.add(snap.launch_id)
        pending.sources[path] = {
            "path": path,
            "kind": "fw_offline",
            "launch_id": snap.launch_id,
            "content_hash": snap.content_hash,
            "status": "active",
        }
        if row is not None:
            # The launch may have been registered earlier by another route without its fw_id.
            self._learn_launch(pending, snap.launch_id, fw_id, launch_dir, "fw_offline")


def _pread_full(src: SourceFile, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``, fewer only at EOF (a read may return less than asked)."""
    parts = []
    while size > 0:
        data = src.pread(size, offset)
        if not data:
            break
        parts.append(data)
        size -= len(data)
        offset += len(data)
    return b"".join(parts)


def _offline_event_row(rec: Record, fw_id: int | None, path: str) -> dict[str, Any]:
    event_json = _encoder.encode(rec.event)
    return {
        "_path": path,
        "event_id": event_id(rec.writer, rec.seq),
        "writer_id": rec.writer,
        "seq": rec.seq,
        "launch_id": rec.launch_id,
        "fw_id": fw_id,
        "type": type(rec.event).__struct_config__.tag,
        "occurred_at": iso(rec.at),
        "payload": event_json.decode("utf-8"),
        "source_offset": None,
    }


def _quarantine_row(path: str, offset: int, data: bytes, reason: str) -> dict[str, Any]:
    return {
        "path": path,
        "offset": offset,
        "length": len(data),
        "reason": reason[:500],
        "bytes": data[:QUARANTINE_KEEP],
    }
