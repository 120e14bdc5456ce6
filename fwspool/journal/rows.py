"""The rows ingest hands to the journal, and what the journal hands back, by name.

Event, launch and quarantine rows are NamedTuples: a large ingest makes one per record, and
SQLite binds a tuple directly. A source row is a dataclass whose unset fields keep what the
journal already has: ingest often learns one thing about a file (it vanished, it is refused)
and must not overwrite the rest (its committed offset above all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple


class EventRow(NamedTuple):
    """One event as ingest hands it over; the columns of the ``events`` table it fills."""

    event_id: str
    writer_id: str
    seq: int
    launch_id: int
    fw_id: int | None
    type: str
    occurred_at: str
    #: The event as JSON text, its type included.
    payload: str
    #: Where its record starts in its spool file; None for FireWorks offline files and for
    #: events the login node infers (lost, released).
    source_offset: int | None


EVENT_ROW_COLUMNS: Final = EventRow._fields


class LaunchRow(NamedTuple):
    """A launch as ingest learns it; an upsert fills in what the journal did not know yet."""

    launch_id: int
    fw_id: int | None
    launch_dir: str | None
    #: 'spool', 'fw_offline', 'registry' or 'inbox'.
    learned_from: str
    #: The batch job of the run (its started event) or of the reservation (the registry).
    batch_job_id: str | None = None
    batch_system: str | None = None


class QuarantineRow(NamedTuple):
    """Bytes ingest will not turn into events, kept with the reason."""

    path: str
    offset: int
    length: int
    reason: str
    #: The first QUARANTINE_KEEP bytes of the range; None for a refused file (never read).
    bytes: bytes | None


class _Keep:
    """The value of a :class:`SourceRow` field that leaves the journal's value as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()


@dataclass(slots=True)
class SourceRow:
    """What one pass learned about one source file, upserted by ``path``: every field left
    :data:`KEEP` keeps the journal's value (a new row gets the column's default)."""

    path: str
    kind: str
    status: Any = KEEP
    status_detail: Any = KEEP
    writer_id: Any = KEEP
    launch_id: Any = KEEP
    dev: Any = KEEP
    ino: Any = KEEP
    fingerprint: Any = KEEP
    #: Every byte before it is settled: ingested as events (in the same batch) or quarantined.
    committed_offset: Any = KEEP
    content_hash: Any = KEEP

    def columns(self) -> tuple[str, ...]:
        """The columns this row sets."""
        return tuple(f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not KEEP)

    def values(self) -> tuple[Any, ...]:
        """The values of :meth:`columns`, in their order."""
        return tuple(v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not KEEP)

    def but(self, **changes: Any) -> SourceRow:
        """A copy with these fields set."""
        return dataclasses.replace(self, **changes)


@dataclass(slots=True)
class IngestBatch:
    """Everything one ingest transaction commits together."""

    launches: list[LaunchRow] = field(default_factory=list)
    #: Event rows by the path of the source file they were read from; the journal resolves each
    #: path to its source_id once per batch.
    events: dict[str, list[EventRow]] = field(default_factory=dict)
    sources: list[SourceRow] = field(default_factory=list)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    #: Launches whose last event is in: their directories need not be read again.
    terminal_launches: set[int] = field(default_factory=set)
    #: Launches whose run a signal ended: terminal now unless a batch job may run them again
    #: (then the batch system decides: :meth:`IngestStore.record_scheduler_view`).
    signal_exits: set[int] = field(default_factory=set)
    #: Quarantined records that a retry (larger limits) turned into events of this batch.
    unquarantined: list[int] = field(default_factory=list)
    #: (path, offset) -> (length, bytes) of the record there, for the quarantine of a record whose
    #: event id the journal holds with other content (two writers claiming one writer id).
    frame_at: Callable[[str, int], tuple[int, bytes]] | None = None


@dataclass(slots=True)
class IngestCounts:
    """What one ingest transaction changed."""

    new_events: int = 0
    duplicates: int = 0
    quarantined: int = 0
    #: One line per file whose records were not ingested because their ids were taken.
    problems: list[str] = field(default_factory=list)


class ScheduledLaunch(NamedTuple):
    """An open launch with a batch job, as the batch-system check sees it."""

    launch_id: int
    fw_id: int | None
    launch_dir: str | None
    batch_job_id: str
    batch_system: str | None
    batch_gone_at: str | None
    #: The type of its last started/exited/completed/lost/released event; None: nothing ran yet.
    last_run_event: str | None
    #: That last event is an exit by a signal (the batch system may requeue the job).
    killed_by_signal: bool


@dataclass(slots=True)
class SchedulerView:
    """What one batch-system check concluded; committed in one transaction."""

    #: launch id -> batch system, learned from the queue adapter or ``FW_submit.script``.
    systems: dict[int, str] = field(default_factory=dict)
    #: Launches whose job the batch system no longer has (since now), or has again.
    gone: list[int] = field(default_factory=list)
    back: list[int] = field(default_factory=list)
    #: Launches that are over: their directories need not be read again.
    terminal: list[int] = field(default_factory=list)
    #: Inferred ``lost``/``released`` events, with ids that make a repeated inference a no-op.
    inferred: list[EventRow] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.systems or self.gone or self.back or self.terminal or self.inferred)


class KnownSource(NamedTuple):
    """A source file's journal row as an ingest pass starts, with what it needs of its launch."""

    path: str
    kind: str
    launch_id: int | None
    writer_id: str | None
    dev: int | None
    ino: int | None
    fingerprint: str | None
    committed_offset: int
    content_hash: str | None
    status: str
    status_detail: str | None
    terminal_at: str | None
    forgotten_at: str | None
    #: For a FireWorks offline file: `fwspool rlaunch` runs its launch (a started event came from
    #: a spool file), so the file will never change.
    spool_driven: bool


class QuarantinedRecord(NamedTuple):
    """A quarantined range of a spool file that a retry may read again (not refused, not a clash)."""

    quarantine_id: int
    path: str
    offset: int
    length: int
    reason: str
    launch_id: int | None
    dev: int | None
    ino: int | None


class ForgetRequest(NamedTuple):
    """What ``fwspool forget`` asked and what the journal made of it."""

    #: How many launches the journal knows that are now forgotten (or resumed).
    launches: int
    #: The ids named that match no launch in the journal: no request was recorded for them.
    unknown_fw_ids: tuple[int, ...]
    unknown_launch_ids: tuple[int, ...]
