"""The daemon's submissions: ``fwspool sync --watch --submit``, the login node's one process.

FireWorks' offline routine takes two never-ending processes: ``qlaunch -r rapidfire --nlaunches
infinite`` submits, ``fwspool sync --watch`` ingests and pushes. With ``--submit`` the daemon
also submits, on a thread of its own (:meth:`fwspool.daemon.Loop.sync`), in *rounds*:

- A round submits jobs while a Firework is READY for the FWorker and the user has fewer than
  ``maxjobs_queue`` jobs in the queue (0: no cap), each exactly as ``fwspool qlaunch`` submits
  one (:func:`fwspool.qlaunch.submit_pack`: ``--pack``, ``--parallel``, ``--margin``); with a
  pool (:mod:`fwspool.pool`), it stocks the pool and submits pilot jobs instead.
- Rounds start every interval, and at once after a push pass that changed something (it may have
  made children READY).
- A failed round is one line (a failed submission has handed its reservations back already) and
  the next one waits, with capped exponential backoff (:class:`fwspool.daemon.Backoff`). While
  the database is down nothing new can be reserved: the rounds back off the same way, and
  ingest and push go on, on their own threads.
- What was submitted is kept in the journal (:data:`SUBMITTED_KEY` of its ``meta`` table, the
  JSON of :class:`Submitted`); ``fwspool status`` shows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from fwspool.errors import FwspoolError
from fwspool.events import utcnow
from fwspool.plural import counted

if TYPE_CHECKING:
    from fwspool.journal import Journal

__all__ = ["SUBMITTED_KEY", "Submitted", "Submitter", "read_submitted"]

#: The journal ``meta`` key under which the daemon keeps what it submitted.
SUBMITTED_KEY = "submitted"
#: How many of the latest jobs :class:`Submitted` keeps.
RECENT_JOBS = 20
#: The longest wait between failed rounds (seconds).
BACKOFF_CAP = 300.0


class SubmittedJob(msgspec.Struct, forbid_unknown_fields=False):
    """One job the daemon submitted."""

    batch_job_id: str
    submitted_on: str
    #: ``pack`` (a ``fwspool qlaunch`` block) or ``pilot``.
    kind: str
    directory: str
    fw_ids: list[int] = msgspec.field(default_factory=list)


class Submitted(msgspec.Struct, forbid_unknown_fields=False):
    """What the daemon submitted since the journal was made, and its last failure."""

    jobs: int = 0
    fireworks: int = 0
    recent: list[SubmittedJob] = msgspec.field(default_factory=list)
    last_failure: str | None = None
    last_failure_on: str | None = None

    def line(self) -> str:
        """'submitted by the daemon: 3 jobs, 12 Fireworks; last job 123 (pack) at ...'."""
        text = f"submitted by the daemon: {counted(self.jobs, 'job')}, {counted(self.fireworks, 'Firework')}"
        if self.recent:
            last = self.recent[-1]
            text += f"; last job {last.batch_job_id} ({last.kind}) at {last.submitted_on}"
        if self.last_failure:
            text += f"; last failure at {self.last_failure_on}: {self.last_failure}"
        return text


def read_submitted(journal: Journal) -> Submitted | None:
    """What the daemon submitted into this journal's meta; None when it never submitted."""
    raw = journal.get_meta(SUBMITTED_KEY)
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=Submitted)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _note(journal: Journal, change: Callable[[Submitted], None]) -> None:
    record = read_submitted(journal) or Submitted()
    change(record)
    journal.set_meta(SUBMITTED_KEY, msgspec.json.encode(record).decode())


def note_job(journal: Journal, job: SubmittedJob) -> None:
    """Add a submitted job to the journal's record."""

    def add(record: Submitted) -> None:
        record.jobs += 1
        record.fireworks += len(job.fw_ids)
        record.recent = [*record.recent, job][-RECENT_JOBS:]

    _note(journal, add)


def note_failure(journal: Journal, message: str) -> None:
    def add(record: Submitted) -> None:
        record.last_failure = message
        record.last_failure_on = utcnow().isoformat(timespec="seconds")

    _note(journal, add)


class AdapterLines(logging.Filter):
    """The queue adapter's own log lines (FireWorks' ``qadapter.<name>`` logger), held back: its
    INFO lines would fill the daemon's log every round, and its error block (a dozen lines per
    refused submission) is folded into the round's one line (:meth:`reason`)."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())
        return False

    def reason(self) -> str | None:
        """What the queue said of the last refused submission, in one line, and forget it."""
        lines = [ln.strip() for msg in self.errors for ln in msg.splitlines() if ln.strip().strip("-|v^")]
        self.errors.clear()
        said = [ln for ln in lines if "error response reads" in ln or "error:" in ln.lower()]
        found = said or lines
        return found[-1] if found else None


@dataclass
class Submitter:
    """The daemon's submission rounds (see the module's description). ``site`` is what
    ``fwspool qlaunch`` loads (:class:`fwspool.cli.qlaunch.Site`: launchpad, FWorker, queue
    adapter, pack, parallel, margin); ``pool`` a :class:`fwspool.stock.Stocker` (``--pilot``) or None."""

    site: Any
    launch_root: str
    maxjobs_queue: int
    say: Callable[[str], None]
    warn: Callable[[str], None]
    pool: Any = None
    #: When the next round may start (``time.monotonic()``): later after failures.
    not_before: float = 0.0
    _backoff: Any = field(default=None, repr=False)
    _adapter_lines: AdapterLines = field(default_factory=AdapterLines, repr=False)
    #: FireWorks' workflow locks from round to round (:class:`fwspool.launchpad.locks.LockWatch`).
    locks: Any = field(default=None, repr=False)
    #: Reservations killed half-way (:class:`fwspool.qlaunch.HalfReservations`).
    half_reservations: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from fwspool.daemon import Backoff
        from fwspool.launchpad.locks import LockWatch
        from fwspool.qlaunch import HalfReservations

        self._backoff = Backoff(cap=BACKOFF_CAP)
        if self.locks is None:
            self.locks = LockWatch(say=self.warn)
        if self.half_reservations is None:
            self.half_reservations = HalfReservations(say=self.warn)
        name = getattr(self.site.qadapter, "q_name", None)
        if name:
            logging.getLogger(f"qadapter.{name}").addFilter(self._adapter_lines)

    def describe(self) -> str:
        """For the daemon's start-up line."""
        cap = f"at most {counted(self.maxjobs_queue, 'job')} queued" if self.maxjobs_queue else "no queue cap"
        what = self.pool.describe() if self.pool is not None else f"--pack {self.site.pack}"
        return f"submits ({what}, {cap}) into {self.launch_root}"

    def round(self, journal: Journal, should_stop: Callable[[], bool]) -> int:
        """One round; how many jobs it submitted. Never raises for a failure a later round may not
        meet (the database down, a refused submission): one line, and the next round waits."""
        if time.monotonic() < self.not_before:
            return 0
        submitted = 0
        try:
            if self.pool is not None:
                submitted = self.pool.round(journal, self, should_stop)
            else:
                submitted = self._packs(journal, should_stop)
        except Exception as exc:  # noqa: BLE001 - one line each, then backoff
            message = _one_line(exc)
            said = self._adapter_lines.reason()
            if said:
                message += f" (the queue said: {said[:300]})"
            delay = self._backoff.next_delay()
            self.not_before = time.monotonic() + delay
            self.warn(f"submit: {message}; retrying in {delay:.1f}s")
            try:
                note_failure(journal, message)
            except FwspoolError:
                pass  # the journal's trouble shows in the ingest thread's lines
            return submitted
        self._backoff.reset()
        self._adapter_lines.errors.clear()
        return submitted

    def look_at_the_launchpad(self) -> set[int]:
        """What every round with the database does first: the Fireworks whose workflow lock is
        held (no FireWorks call that would wait on it is made for them this round), and the
        reservations killed half-way mended."""
        locked = self.locks.look(self.site.launchpad)
        self.half_reservations.mend(self.site.launchpad, locked)
        return locked

    def under_cap(self) -> bool:
        """Whether one more job keeps within ``maxjobs_queue``."""
        from fwspool.qlaunch import jobs_in_queue

        return not self.maxjobs_queue or jobs_in_queue(self.site.qadapter) < self.maxjobs_queue

    def _packs(self, journal: Journal, should_stop: Callable[[], bool]) -> int:
        from fireworks.fw_config import QUEUE_UPDATE_INTERVAL

        from fwspool.qlaunch import restricted, submit_pack

        site = self.site
        packing = site.packing()
        locked = self.look_at_the_launchpad()
        if locked:  # FireWorks' reservation would wait on their lock
            packing["fworker"] = restricted(site.fworker, {"fw_id": {"$nin": sorted(locked)}})
        submitted = 0
        while not should_stop() and self.under_cap() and site.launchpad.run_exists(packing["fworker"]):
            job = submit_pack(launch_root=self.launch_root, say=self.say, **packing)
            if job is None:
                break
            submitted += 1
            self.record(journal, job.batch_job_id, "pack", job.block_dir, [bl.fw_id for bl in job.launches])
            time.sleep(QUEUE_UPDATE_INTERVAL)  # FireWorks' wait for the queue to show the job
        return submitted

    def record(self, journal: Journal, job_id: str, kind: str, directory: str, fw_ids: list[int]) -> None:
        note_job(
            journal,
            SubmittedJob(str(job_id), utcnow().isoformat(timespec="seconds"), kind, directory, fw_ids),
        )


def _one_line(exc: BaseException) -> str:
    """A failure in one line: ours have their message; the database's says it cannot be reached."""
    from pymongo.errors import ConnectionFailure

    if isinstance(exc, FwspoolError):
        return exc.message
    if isinstance(exc, ConnectionFailure):
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return f"cannot reach MongoDB, nothing new reserved: {first}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
