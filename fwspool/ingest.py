"""Ingest: copy new events from spool files and FireWorks offline files into the journal.

One pass looks at the directories of every launch the journal knows that is still in progress,
plus every ``--root`` tree, reads each spool file from its committed offset to EOF, and commits
events together with the offsets they advance, in batches. Nothing is trusted about a file but
its bytes: not its size, not its mtime (NFS attribute caches lie for up to a minute).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fwspool import batch, inbox, offline
from fwspool.batch import BatchQueryError, BatchSystem
from fwspool.errors import InputError
from fwspool.events import (
    READABLE_VERSIONS,
    Checkpoint,
    Completed,
    Event,
    Lost,
    Note,
    RawRecord,
    Record,
    Released,
    Started,
    as_utc,
    event_id,
    iso,
    utcnow,
)
from fwspool.journal import (
    QUARANTINE_KEEP,
    BatchLaunch,
    BatchView,
    EventRow,
    IngestBatch,
    IngestCounts,
    Journal,
)
from fwspool.spool import (
    DEFAULT_MAX_RECORD,
    HEADER_LEN,
    SPOOL_NAME_RE,
    Frame,
    OsSourceFile,
    SourceFile,
    SpoolReader,
    frame,
)
from fwspool.trust import DEFAULT_MAX_DEPTH, SYMLINK_REASON, TrustPolicy, too_deep

_raw_decoder = msgspec.json.Decoder(RawRecord)
_event_decoder = msgspec.json.Decoder(Event)
#: Events with free-form JSON (FWAction, checkpoint, fworker, note data): the only ones whose
#: nesting depth must be checked (fwspool.trust); a ping costs one set lookup.
_NESTABLE = frozenset({Started, Checkpoint, Completed, Note})
_encoder = msgspec.json.Encoder()
_INT64_MAX = 2**63 - 1
#: Bytes of a spool file's head that identify it (its first record's header and more).
FINGERPRINT_LEN = 64
#: Seconds a batch job must have been gone before its launch is judged lost or released: NFS
#: attribute caches can hide a finished job's last records for up to a minute.
DEFAULT_LOST_AFTER = 300.0


@dataclass(slots=True)
class IngestSummary:
    """What one or more passes did; printed as the one-line summary."""

    files: int = 0
    new_events: int = 0
    duplicates: int = 0
    quarantined: int = 0
    torn_waiting: int = 0
    #: Launches learned from the inbox, and runs the batch system showed lost or never started.
    announced: int = 0
    lost: int = 0
    released: int = 0
    #: One line per file that needs a person's attention (replaced, truncated, refused...).
    problems: list[str] = field(default_factory=list)

    def add(self, other: IngestSummary) -> None:
        self.files += other.files
        self.new_events += other.new_events
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.torn_waiting = other.torn_waiting
        self.announced += other.announced
        self.lost += other.lost
        self.released += other.released
        self.problems.extend(other.problems)

    def line(self) -> str:
        extra = "".join(
            f", {n} {what}"
            for n, what in (
                (self.announced, "launches from the inbox"),
                (self.lost, "lost runs"),
                (self.released, "reservations to release"),
            )
            if n
        )
        return (
            f"ingest: {self.files} files, {self.new_events} new events, {self.duplicates} duplicates skipped, "
            f"{self.quarantined} quarantined, {self.torn_waiting} torn tails waiting{extra}"
        )


@dataclass(slots=True)
class _Pending:
    """The batch being built; flushed into one journal transaction."""

    launches: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Event rows by source path (see :class:`IngestBatch`); ``n_events`` counts them all.
    events: dict[str, list[EventRow]] = field(default_factory=dict)
    n_events: int = 0
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    terminal: set[int] = field(default_factory=set)
    #: Launches whose run was killed by a signal: final, unless a batch job may run them again.
    signal_exits: set[int] = field(default_factory=set)

    def empty(self) -> bool:
        return not (
            self.launches
            or self.events
            or self.sources
            or self.quarantine
            or self.terminal
            or self.signal_exits
        )

    def size(self) -> int:
        return self.n_events + len(self.quarantine)

    def take(self) -> IngestBatch:
        """The batch built so far, handed over whole; building starts again from empty.

        New containers rather than cleared ones: the batch may still be being committed on the
        committer thread while the next one is built.
        """
        batch = IngestBatch(
            launches=list(self.launches.values()),
            events=self.events,
            sources=list(self.sources.values()),
            quarantine=self.quarantine,
            terminal_launches=self.terminal,
            signal_exits=self.signal_exits,
        )
        self.launches, self.events, self.n_events = {}, {}, 0
        self.sources, self.quarantine, self.terminal, self.signal_exits = {}, [], set(), set()
        return batch


class _Committer:
    """Commits ingest batches in order, each in one transaction, overlapping the commit of one
    batch with the reading of the next.

    At most one batch is in flight: before handing over a batch (or touching the journal in any
    other way) the caller waits for the previous commit, so batches commit in the order they were
    built, the journal's connection has one user at a time, and memory holds at most two batches.
    A failed commit is raised at the next wait, before any later batch is handed over: a later
    batch (whose source offsets may lie past the failed batch's events) never commits after it.
    """

    def __init__(
        self,
        journal: Journal,
        summary: IngestSummary,
        frame_at: Callable[[str, int], tuple[int, bytes]] | None = None,
    ) -> None:
        self.journal = journal
        self.summary = summary
        #: Reads a record back for the quarantine when its event id was taken (IngestBatch).
        self.frame_at = frame_at
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: Future[IngestCounts] | None = None
        self._saved_interval: float | None = None

    #: The GIL switch interval while the committer thread runs (see :meth:`submit`).
    SWITCH_INTERVAL = 0.001

    def submit(self, batch: IngestBatch) -> None:
        """Start committing ``batch`` on the committer thread (after the previous one committed)."""
        self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fwspool-commit")
            # The committer runs SQLite without the GIL but needs it back after each statement,
            # while the reading thread holds it nearly all the time: with the default 5 ms switch
            # interval it waits that long each time (a dozen times per batch), enough to make it
            # the bottleneck. A shorter interval, only while the committer exists, lets it in.
            self._saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._saved_interval, self.SWITCH_INTERVAL))
        batch.frame_at = self.frame_at
        self._inflight = self._executor.submit(self.journal.commit_ingest, batch)

    def commit(self, batch: IngestBatch) -> None:
        """Commit ``batch`` now, in this thread (the last batch of a pass: nothing to overlap)."""
        self.wait()
        batch.frame_at = self.frame_at
        self._count(self.journal.commit_ingest(batch))

    def wait(self) -> None:
        """Wait for the batch in flight, if any; raises its error."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            self._count(inflight.result())

    def close(self) -> None:
        """Wait for the batch in flight (when an error is already on its way out) and stop the thread."""
        if self._inflight is not None:
            wait_for_futures([self._inflight])
            self._inflight = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._saved_interval is not None:
            sys.setswitchinterval(self._saved_interval)
            self._saved_interval = None

    def _count(self, counts: IngestCounts) -> None:
        self.summary.new_events += counts.new_events
        self.summary.duplicates += counts.duplicates
        self.summary.quarantined += counts.quarantined
        self.summary.problems.extend(counts.problems)


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
        trust_group: int | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
        inbox_dir: str | None = None,
        batch_systems: Mapping[str, BatchSystem] | None = None,
        default_batch_system: str | None = None,
        lost_after: float = DEFAULT_LOST_AFTER,
    ) -> None:
        #: Where ``fwspool rlaunch`` announces launches (fwspool.inbox); None: not read.
        self.inbox_dir = inbox_dir
        #: Who is asked which jobs still run, by batch system name; empty: nobody (no lost runs).
        self.batch_systems = dict(batch_systems or {})
        #: The batch system of launches whose own is unknown (``-q``'s ``_fw_q_type``).
        self.default_batch_system = default_batch_system
        self.lost_after = lost_after
        self._reported: set[str] = set()
        self.journal = journal
        self.roots = [os.path.abspath(r) for r in roots]
        for root in self.roots:
            if not os.path.isdir(root):
                raise InputError(f"--root {root} is not a directory")
        # Whose files are believed (fwspool.trust): this user's, or a trusted group's.
        self.trust = TrustPolicy(gid=trust_group, roots=self.roots)
        self.max_depth = max_depth
        self._known: dict[str, dict[str, Any]] = {}
        self.max_record = max_record
        self.batch_size = batch_size
        self.opener = opener
        self.clock = clock
        # Per pass: who commits the batches, and whether one was handed over since the last
        # should_stop() check.
        self._committer = _Committer(journal, IngestSummary())
        self._flushed = False

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
            if not _utf8(directory):
                # The journal keeps paths as UTF-8 text (and FireWorks could not store such a launch
                # dir either: BSON strings are UTF-8). Say so on every pass; never fail the pass.
                if any(SPOOL_NAME_RE.match(n) or n in offline.OFFLINE_NAMES for n in names):
                    summary.problems.append(
                        f"cannot ingest from {_shown(directory)}: its path is not valid UTF-8; rename it"
                    )
                return
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
        if self.inbox_dir is not None:
            self._read_inbox(summary)
        dirs, known = self.journal.scan_targets()
        self._known = known  # FW_ping.json's row, when one is refused (_read_offline)
        spool_files, offline_files = self._candidates(dirs, known, summary)
        total = len(spool_files) + len(offline_files)
        pending = _Pending()
        done = 0
        now = self.clock()
        self._committer = _Committer(self.journal, summary, self._frame_at)
        self._flushed = False
        try:
            for i, path in enumerate(spool_files + offline_files):
                if pending.size() >= self.batch_size:
                    self._flush(pending)
                # Stop only after a batch was handed over (here, or while reading the last file):
                # the batches handed over are committed (below), and everything committed is
                # consistent.
                if self._flushed:
                    self._flushed = False
                    if should_stop():
                        break
                if i < len(spool_files):
                    self._read_spool(path, known.get(path), pending, summary)
                else:
                    self._read_offline(path, known.get(path), pending, summary, now)
                done += 1
                if progress:
                    progress(done, total)
            if pending.empty():
                self._committer.wait()
            else:
                self._committer.commit(pending.take())
        finally:
            self._committer.close()
        summary.files = done
        if self.batch_systems and not should_stop():
            self._check_batch_jobs(summary)
        return summary

    # -- the inbox and the batch system ------------------------------------------------------

    def _report_once(self, summary: IngestSummary, problem: str) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            summary.problems.append(problem)

    def _read_inbox(self, summary: IngestSummary) -> None:
        """Learn the launches announced in the inbox; drop the pointers of launches that are over."""
        assert self.inbox_dir is not None
        listed = inbox.list_inbox(self.inbox_dir)
        if not listed:
            return
        settled = self.journal.settled_launches([lid for lid, _ in listed])
        learned = []
        for launch_id, path in listed:
            if launch_id in settled:
                if settled[launch_id]:
                    inbox.remove_pointer(path)
                continue
            entry = inbox.read_pointer(path, self.trust.refusal)
            if entry.problem is not None:
                self._report_once(summary, entry.problem)
            if entry.pointer is not None and entry.pointer.launch_id == launch_id:
                p = entry.pointer
                learned.append(_launch_row(p.launch_id, p.fw_id, p.launch_dir, "inbox"))
        if learned:
            self.journal.commit_ingest(
                IngestBatch(launches=learned, events={}, sources=[], quarantine=[], terminal_launches=set())
            )
            summary.announced += len(learned)

    def _check_batch_jobs(self, summary: IngestSummary) -> None:
        """Ask each batch system once which of the open launches' jobs still run, and conclude:
        a job gone for ``lost_after`` seconds that never started its launch releases the
        reservation; one that started it and recorded no end makes it lost (fwspool.runs)."""
        now = self.clock()
        view = BatchView()
        groups: dict[str, list[BatchLaunch]] = {}
        for launch in self.journal.batch_launches():
            if launch.last_run_event in ("lost", "released"):
                continue
            system = (
                launch.batch_system
                or self.default_batch_system
                or (batch.system_of_launch_dir(launch.launch_dir) if launch.launch_dir else None)
            )
            if system is not None and system != launch.batch_system:
                view.systems[launch.launch_id] = system
            if system in self.batch_systems:
                groups.setdefault(system, []).append(launch)
            elif launch.killed_by_signal:
                view.terminal.append(launch.launch_id)  # nobody to ask whether it runs again
            elif system is not None:
                self._report_once(
                    summary, f"cannot ask {system} which jobs still run: fwspool knows only Slurm so far"
                )
        for system, group in groups.items():
            try:
                alive = self.batch_systems[system].active_jobs({launch.batch_job_id for launch in group})
            except BatchQueryError as exc:
                summary.problems.append(f"cannot ask {system} which jobs still run ({exc}); nothing decided")
                continue
            for launch in group:
                self._judge(launch, launch.batch_job_id in alive, now, view, summary)
        summary.lost += sum(1 for row in view.inferred if row[5] == "lost")
        summary.released += sum(1 for row in view.inferred if row[5] == "released")
        self.journal.record_batch_view(view)

    def _judge(
        self, launch: BatchLaunch, alive: bool, now: dt.datetime, view: BatchView, summary: IngestSummary
    ) -> None:
        if alive:
            if launch.batch_gone_at is not None:
                view.back.append(launch.launch_id)  # requeued, or the query before was wrong
            return
        if launch.batch_gone_at is None:
            view.gone.append(launch.launch_id)
            return
        gone_since = as_utc(launch.batch_gone_at)
        if (now - gone_since).total_seconds() < self.lost_after:
            return  # NFS may still be hiding the job's last records
        what = f"launch {launch.launch_id} (Firework {launch.fw_id}): batch job {launch.batch_job_id}"
        if launch.last_run_event is None:
            event: Event = Released(
                reason=f"batch job {launch.batch_job_id} ended without starting the launch",
                batch_job_id=launch.batch_job_id,
            )
            view.terminal.append(launch.launch_id)
            summary.problems.append(f"{what} ended without starting it: its reservation is released")
        elif launch.last_run_event == "started":
            event = Lost(
                batch_job_id=launch.batch_job_id, gone_since=gone_since, batch_system=launch.batch_system
            )
            summary.problems.append(f"{what} is gone and the launch recorded no end: lost")
        else:
            view.terminal.append(launch.launch_id)  # ended by a signal and not requeued: over
            return
        kind = str(type(event).__struct_config__.tag)
        writer = f"batch-{kind}-{launch.launch_id}-{launch.batch_job_id}"
        view.inferred.append(
            (
                event_id(writer, 1),
                writer,
                1,
                launch.launch_id,
                launch.fw_id,
                kind,
                iso(now),
                _encoder.encode(event).decode("utf-8"),
                None,
            )
        )

    def _flush(self, pending: _Pending) -> None:
        """Hand the batch to the committer (one transaction) and start a new one."""
        if not pending.empty():
            self._committer.submit(pending.take())
            self._flushed = True

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
            if exc.errno == errno.ELOOP:
                self._refuse(path, "spool", SYMLINK_REASON, row, pending, summary)
                return
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
            refusal = self.trust.refusal(path, src.fd, st) if st is not None else None  # type: ignore[attr-defined]
            if refusal is not None:
                self._refuse(path, "spool", refusal, row, pending, summary, st.st_size)  # type: ignore[union-attr]
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
            launch_dir = os.path.dirname(path)
            for res in reader:
                if res.frames:
                    launch_id = self._accept_frames(
                        path, name_writer, launch_dir, res.frames, pending, launch_id
                    )
                for dm in res.damage:
                    self._quarantine(path, src, dm.offset, dm.length, dm.reason, pending)
                new_row["committed_offset"] = res.consumed
                changed = True
                # The offset travels in the same batch as the events it covers.
                pending.sources[path] = dict(new_row, launch_id=launch_id, status="active")
                if pending.size() >= self.batch_size:
                    self._flush(pending)
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

    def _accept_frames(
        self,
        path: str,
        name_writer: str,
        launch_dir: str,
        frames: Sequence[Frame],
        pending: _Pending,
        launch_id: int | None,
    ) -> int | None:
        """Turn framed payloads into event rows, or quarantine them; returns the file's launch id
        (the last record's, else ``launch_id``).

        The hot loop of a large ingest: one tuple per event, names bound to locals, and a launch
        looked at only when the batch does not know it yet.
        """
        rows = pending.events.get(path)
        if rows is None:
            rows = pending.events[path] = []
        before = len(rows)
        append = rows.append
        launches = pending.launches
        decode_raw = _raw_decoder.decode
        decode_event = _event_decoder.decode
        max_depth = self.max_depth
        for offset, _length, payload in frames:
            try:
                rec = decode_raw(payload)
                if rec.v not in READABLE_VERSIONS:
                    raise ValueError(f"unknown record version {rec.v}")
                ev = decode_event(rec.event)
                if type(ev) in _NESTABLE and too_deep(bytes(rec.event), max_depth - 1):
                    raise RecursionError  # as msgspec itself past ~1,000 levels
                if rec.writer != name_writer:
                    raise ValueError(f"record of writer {rec.writer} in the file of writer {name_writer}")
                seq = rec.seq
                if seq < 1:
                    raise ValueError(f"sequence number {seq} < 1")
                lid = rec.launch_id
                fw_id = rec.fw_id
                # SQLite's integers are 64-bit: a larger number would fail the whole batch's commit.
                if (
                    seq > _INT64_MAX
                    or not -_INT64_MAX <= lid <= _INT64_MAX
                    or (fw_id is not None and not -_INT64_MAX <= fw_id <= _INT64_MAX)
                ):
                    raise ValueError("seq, launch_id or fw_id out of the 64-bit integer range")
                text = str(rec.event, "utf-8")
            except (msgspec.DecodeError, ValueError, RecursionError) as exc:
                if isinstance(exc, RecursionError):
                    exc = ValueError(f"JSON nested deeper than {max_depth} levels")
                # The whole record as it is in the file: bytes == file[offset : offset + length].
                pending.quarantine.append(
                    _quarantine_row(path, offset, frame(payload), f"invalid record: {exc}")
                )
                continue
            etype: str = ev.__struct_config__.tag  # type: ignore[assignment]
            # The event_id() of the record (its writer is the file's: checked above).
            append(
                (f"{name_writer}-{seq:010d}", name_writer, seq, lid, fw_id, etype, iso(rec.at), text, offset)
            )
            if lid not in launches:
                launches[lid] = _launch_row(lid, fw_id, launch_dir, "spool")
            if etype == "exited":
                # A job killed by a signal may be requeued by its batch system (fwspool.runs).
                (pending.signal_exits if ev.signal is not None else pending.terminal).add(lid)  # type: ignore[union-attr]
            elif etype == "started" and ev.batch_job_id is not None:  # type: ignore[union-attr]
                launches[lid]["batch_job_id"] = ev.batch_job_id  # type: ignore[union-attr]
                launches[lid]["batch_system"] = ev.batch_system  # type: ignore[union-attr]
            if lid:
                launch_id = lid
        pending.n_events += len(rows) - before
        return launch_id

    def _frame_at(self, path: str, offset: int) -> tuple[int, bytes]:
        """The record at ``offset`` of a spool file, read back for the quarantine: its length and
        up to QUARANTINE_KEEP of its bytes; (0, b"") when it cannot be read back."""
        try:
            src = self.opener(path)
        except OSError:
            return 0, b""
        try:
            head = _pread_full(src, HEADER_LEN, offset)
            length = HEADER_LEN + int(head[5:13], 16) + 1
            return length, _pread_full(src, min(length, QUARANTINE_KEEP), offset)
        except (OSError, ValueError):
            return 0, b""
        finally:
            src.close()

    def _quarantine(
        self, path: str, src: SourceFile, offset: int, length: int, reason: str, pending: _Pending
    ) -> None:
        kept = _pread_full(src, min(length, QUARANTINE_KEEP), offset)
        row = _quarantine_row(path, offset, kept, reason)
        row["length"] = length
        pending.quarantine.append(row)

    def _refuse(
        self,
        path: str,
        kind: str,
        reason: str,
        row: dict[str, Any] | None,
        pending: _Pending,
        summary: IngestSummary,
        length: int = 0,
    ) -> None:
        """Record a file ingest must not believe (fwspool.trust): its source row 'refused' and a
        quarantine row with the reason, nothing of its content. Reported once: while the file
        stays refused for the same reason, later passes say nothing and write nothing."""
        if row is not None and row["status"] == "refused" and row["status_detail"] == reason[:500]:
            return
        summary.problems.append(f"refused {path}: {reason}")
        pending.sources[path] = {
            "path": path,
            "kind": kind,
            "status": "refused",
            "status_detail": reason[:500],
        }
        offset = row["committed_offset"] if row is not None else 0
        pending.quarantine.append(
            {
                "path": path,
                "offset": offset,
                "length": length,
                "reason": f"refused: {reason}"[:500],
                "bytes": None,
            }
        )

    @staticmethod
    def _learn_launch(
        pending: _Pending, launch_id: int, fw_id: int | None, launch_dir: str, learned_from: str
    ) -> None:
        if launch_id not in pending.launches:
            pending.launches[launch_id] = _launch_row(launch_id, fw_id, launch_dir, learned_from)

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
            snap = offline.snapshot(path, self.max_record, now, self.trust.refusal, self.max_depth)
        except offline.NotYet:
            summary.torn_waiting += 1
            return
        except offline.Refused as exc:
            self._refuse(path, "fw_offline", str(exc), row, pending, summary)
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
        launch_dir = os.path.dirname(path)
        ping_path = os.path.join(launch_dir, offline.PING_NAME)
        ping_row = self._known.get(ping_path)
        if snap.refused_ping is not None:
            self._refuse(ping_path, "fw_ping", snap.refused_ping, ping_row, pending, summary)
        elif ping_row is not None and ping_row["status"] == "refused":
            # Believed again (chown, chmod): its facts are in this snapshot.
            pending.sources[ping_path] = {
                "path": ping_path,
                "kind": "fw_ping",
                "status": "active",
                "status_detail": None,
            }
        if row is not None and row["content_hash"] == snap.content_hash:
            return  # the same bytes as last time: nothing new, and nothing to write
        # Every event carries the fw_id (FW.json is written at reservation), not only the first.
        fw_id = (
            offline.read_fw_id(launch_dir, self.max_record, self.trust.refusal)
            if row is None or snap.records
            else None
        )
        if row is None:
            self._learn_launch(pending, snap.launch_id, fw_id, launch_dir, "fw_offline")
        if snap.records:
            rows = pending.events.setdefault(path, [])
            rows += [_offline_event_row(rec, fw_id) for rec in snap.records]
            pending.n_events += len(snap.records)
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


def _launch_row(launch_id: int, fw_id: int | None, launch_dir: str, learned_from: str) -> dict[str, Any]:
    """A launches row as ingest learns it (the batch job comes with a ``started`` event)."""
    return {
        "launch_id": launch_id,
        "fw_id": fw_id,
        "launch_dir": launch_dir,
        "learned_from": learned_from,
        "batch_job_id": None,
        "batch_system": None,
    }


def _utf8(path: str) -> bool:
    """Whether a path (``os.listdir``'s str, undecodable bytes as surrogates) is valid UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(path: str) -> str:
    """A path for a message, undecodable bytes as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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


def _offline_event_row(rec: Record, fw_id: int | None) -> EventRow:
    return (
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


def _quarantine_row(path: str, offset: int, data: bytes, reason: str) -> dict[str, Any]:
    return {
        "path": path,
        "offset": offset,
        "length": len(data),
        "reason": reason[:500],
        "bytes": data[:QUARANTINE_KEEP],
    }
