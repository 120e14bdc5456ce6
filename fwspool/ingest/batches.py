"""Ingest's batches: built while files are read, committed one journal transaction each.

A batch carries events together with the source offsets that cover them (the journal commits
them in one transaction: :mod:`fwspool.journal.store`). The committer overlaps the commit of one
batch with the reading of the next, never reordering them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field

from fwspool.journal import QUARANTINE_KEEP, Journal
from fwspool.journal.rows import (
    EventRow,
    IngestBatch,
    IngestCounts,
    KnownSource,
    LaunchRow,
    QuarantineRow,
    SourceRow,
)
from fwspool.plural import counted
from fwspool.spool import SourceFile


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
    #: Quarantined records a retry with larger limits turned into events.
    recovered: int = 0
    #: Inbox pointers of other journals' launches removed: their directory is gone, or their
    #: launch has been over for longer than the retention horizon (fwspool.inbox).
    pointers_removed: int = 0
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
        self.recovered += other.recovered
        self.pointers_removed += other.pointers_removed
        self.problems.extend(other.problems)

    def changed(self) -> bool:
        """Whether the pass brought anything into the journal (or a run's end it inferred)."""
        return bool(
            self.new_events
            or self.quarantined
            or self.announced
            or self.lost
            or self.released
            or self.recovered
            or self.pointers_removed
        )

    def line(self) -> str:
        extra = "".join(
            f", {counted(n, noun)}{what}"
            for n, noun, what in (
                (self.announced, "launch", " from the inbox"),
                (self.lost, "lost run", ""),
                (self.released, "reservation", " to release"),
                (self.recovered, "record", " recovered from quarantine"),
                (self.pointers_removed, "inbox pointer", " of other journals' finished launches removed"),
            )
            if n
        )
        return (
            f"ingest: {counted(self.files, 'file')}, {counted(self.new_events, 'new event')}, "
            f"{counted(self.duplicates, 'duplicate')} skipped, {self.quarantined} quarantined, "
            f"{counted(self.torn_waiting, 'torn tail')} waiting{extra}"
        )


@dataclass(slots=True)
class BatchBuilder:
    """The next ingest batch, being built; handed over whole to one journal transaction."""

    launches: dict[int, LaunchRow] = field(default_factory=dict)
    #: Event rows by source path (see :class:`IngestBatch`); ``n_events`` counts them all.
    events: dict[str, list[EventRow]] = field(default_factory=dict)
    n_events: int = 0
    sources: dict[str, SourceRow] = field(default_factory=dict)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    terminal: set[int] = field(default_factory=set)
    #: Launches whose run was killed by a signal: final, unless a batch job may run them again.
    signal_exits: set[int] = field(default_factory=set)
    #: Quarantine rows whose records a retry turned into events of this batch.
    unquarantined: list[int] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.launches
            or self.events
            or self.sources
            or self.quarantine
            or self.terminal
            or self.signal_exits
            or self.unquarantined
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
            unquarantined=self.unquarantined,
        )
        self.launches, self.events, self.n_events = {}, {}, 0
        self.sources, self.quarantine, self.terminal, self.signal_exits = {}, [], set(), set()
        self.unquarantined = []
        return batch


class Committer:
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


def quarantine_row(path: str, offset: int, data: bytes, reason: str) -> QuarantineRow:
    """Bytes of a file that ingest will not turn into events (the first QUARANTINE_KEEP kept)."""
    return QuarantineRow(path, offset, len(data), reason[:500], data[:QUARANTINE_KEEP])


def refuse(
    batch: BatchBuilder,
    summary: IngestSummary,
    path: str,
    kind: str,
    reason: str,
    known: KnownSource | None,
    length: int = 0,
) -> None:
    """Record a file ingest must not believe (fwspool.trust): its source row 'refused' and a
    quarantine row with the reason, nothing of its content. Reported once: while the file
    stays refused for the same reason, later passes say nothing and write nothing."""
    if known is not None and known.status == "refused" and known.status_detail == reason[:500]:
        return
    summary.problems.append(f"refused {path}: {reason}")
    batch.sources[path] = SourceRow(path, kind, status="refused", status_detail=reason[:500])
    offset = known.committed_offset if known is not None else 0
    batch.quarantine.append(QuarantineRow(path, offset, length, f"refused: {reason}"[:500], None))


def pread_full(src: SourceFile, size: int, offset: int) -> bytes:
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
