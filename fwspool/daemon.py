"""The login-node daemon: passes of ingest and push, backoff while the database is down, and
what is retried.

``fwspool ingest``, ``push`` and ``sync`` (with or without ``--watch``) are a :class:`Loop`'s
:meth:`~Loop.ingest`, :meth:`~Loop.push` and :meth:`~Loop.sync` (sync: an ingest pass before
every push pass), given an ingester made from :class:`IngestSettings`; the CLI only parses
options and prints. The rules:

- The database unreachable (:class:`~fwspool.errors.UplinkUnavailable`): with ``watch``, wait
  (capped, jittered exponential backoff) and try again; without, the error goes to the caller.
- Refused credentials and configuration errors are never retried: they do not fix themselves.
- SIGINT/SIGTERM (:class:`StopFlag`) stop the loop between batches, never inside one; and at
  once while a push pass waits for a database that does not answer (:meth:`StopFlag.waiting`).
- SIGUSR1 asks for the journal's summary and SIGHUP reopens the log file (:mod:`fwspool.log`):
  requests answered between passes, and at once while the loop waits.
- One line per pass that changed something, once or with ``watch`` (a pass that changed nothing
  says nothing, unless ``idle_lines``: a one-shot at a terminal); with ``watch``, while idle, a
  line at most every :data:`HEARTBEAT` seconds saying so; ``sync`` applies the retention policy
  (:mod:`fwspool.journal.retention`) once every :data:`PRUNE_EVERY` seconds.
- ``sync --watch`` pushes on a thread of its own, over a journal connection of its own: ingest
  and the batch-system checks keep their interval while a push waits on a dead connection (a
  network cut holds a push up to the uplink's socket timeout). An ingest pass that found
  something starts the next push at once.
- The retry line says when the next try starts, and how long the failed one took.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from fwspool.config import DEFAULT_LOST_AFTER, HEARTBEAT
from fwspool.errors import FwspoolError, Interrupted, UplinkUnavailable
from fwspool.events import age, as_utc, utcnow
from fwspool.ingest import Ingester, IngestSummary
from fwspool.jobstore.cache import cache_dir, prune_cache
from fwspool.journal import LAST_PRUNE_KEY, Journal, JournalSummary
from fwspool.plural import counted
from fwspool.push import Pusher, PushSummary


class Submitter(Protocol):
    """What ``sync --submit`` runs besides ingest and push (:class:`fwspool.submit.Submitter`)."""

    #: When the next round may start (``time.monotonic()``): later after failures.
    not_before: float

    def round(self, journal: Journal, should_stop: Callable[[], bool]) -> int: ...


#: ``sync`` applies the retention policy this often (seconds).
PRUNE_EVERY = 86400.0
#: How long a stopping ``sync --watch --submit`` waits for a submission round under way.
SUBMIT_STOP_WAIT = 120.0

#: Runs one pass, given how to report progress (the CLI draws a bar on a terminal).
PassRunner = Callable[[Callable[[Callable[[int, int], None] | None], Any]], Any]


def _without_progress(work: Callable[[Callable[[int, int], None] | None], Any]) -> Any:
    return work(None)


class StopFlag:
    """Set by SIGINT/SIGTERM; long-running commands check it between batches.

    It also carries the daemon's other signals as requests (:attr:`requests`) that the loop
    answers between passes, and at once while it waits (:meth:`sleep` wakes up for them):
    SIGUSR1 asks for the status summary; SIGHUP reopens the log file there and then (only file
    descriptors change hands) and asks for the line saying so.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        #: The signal that stopped the command, by name ("SIGTERM"), if one did.
        self.signal_name: str | None = None
        self.signal_number = 0
        #: Inside :meth:`waiting`: a stop signal ends the wait at once.
        self._waiting = 0
        #: (STATUS, "") or (SAY, a line), oldest first.
        self.requests: collections.deque[tuple[str, str]] = collections.deque()
        self._wake = threading.Event()

    def install(self, reopen_log: Callable[[], str] | None = None) -> None:
        """Handle SIGINT/SIGTERM; with ``reopen_log`` (the log's reopening, returning its
        line), SIGHUP and SIGUSR1 too."""

        def stop(signum: int, _frame: Any) -> None:
            self.signal_name = signal.Signals(signum).name
            self.signal_number = signum
            self.set()
            if self._waiting:
                raise StoppedWaiting(self.signal_name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        if reopen_log is not None:
            signal.signal(signal.SIGHUP, lambda *_: self.ask(SAY, reopen_log()))
            signal.signal(signal.SIGUSR1, lambda *_: self.ask(STATUS))

    def set(self) -> None:
        self.event.set()
        self._wake.set()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """A wait that a stop signal ends at once (:class:`StoppedWaiting`), rather than between
        batches: a push's first contact with a database that is down, which lasts up to the
        uplink's timeout and writes nothing."""
        if self.event.is_set():
            raise StoppedWaiting(self.signal_name or "a signal")
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1

    def in_wait(self) -> bool:
        """Whether a :meth:`waiting` section is under way (in whichever thread)."""
        return self._waiting > 0

    def ask(self, kind: str, line: str = "") -> None:
        """Queue a request for the loop (from a signal handler: appending to a deque is safe)."""
        self.requests.append((kind, line))
        self._wake.set()

    def __call__(self) -> bool:
        return self.event.is_set()

    def sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``; return early when stopped or asked something."""
        if self.event.is_set() or self.requests:
            return
        self._wake.wait(seconds)
        self._wake.clear()  # a request that came meanwhile is in self.requests: seen before any wait


class StoppedWaiting(BaseException):
    """Raised by the stop signal's handler inside :meth:`StopFlag.waiting`. A BaseException, as
    KeyboardInterrupt is: no ``except Exception`` on the way (pymongo's) may take it for an error
    of its own."""


#: Kinds of :attr:`StopFlag.requests`: print the status summary; print the line given.
STATUS = "status"
SAY = "say"


class Backoff:
    """Exponential backoff with full jitter, capped: 1 s, 2 s, 4 s ... up to ``cap``."""

    def __init__(self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.failures))
        self.failures += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True)
class IngestSettings:
    """What a login-node ingest reads besides the spool files it already knows, and whose files
    it believes: the options ``fwspool ingest`` and ``fwspool sync`` share.

    ``queueadapter`` is the queue adapter file ``qlaunch`` uses: its batch system is asked about
    launches whose own is unknown. ``inbox_dir`` None means :func:`fwspool.inbox.default_inbox`.
    """

    roots: tuple[str, ...] = ()
    trust_group: int | None = None
    queueadapter: str | None = None
    lost_after: float = DEFAULT_LOST_AFTER
    inbox_dir: str | None = None
    #: The largest spool record accepted; None: the spool format's default.
    max_record: int | None = None
    #: Read quarantined records again (with these limits) before the first pass.
    retry_quarantined: bool = False

    def describe(self) -> str:
        """What this ingest reads, for the daemon's start-up line."""
        from fwspool.inbox import default_inbox

        adapter = self.queueadapter or "none (each launch's own batch system)"
        return (
            f"inbox {self.inbox_dir or default_inbox()}; roots {', '.join(self.roots) or 'none'}; "
            f"queue adapter {adapter}; lost after {self.lost_after:g}s"
        )

    def ingester(self, journal: Journal) -> Ingester:
        """An :class:`~fwspool.ingest.Ingester` into ``journal`` that asks every batch system
        fwspool knows."""
        from fwspool.inbox import default_inbox
        from fwspool.scheduler import available_systems, system_of_queue_adapter
        from fwspool.spool import DEFAULT_MAX_RECORD

        return Ingester(
            journal,
            roots=self.roots,
            max_record=self.max_record or DEFAULT_MAX_RECORD,
            trust_group=self.trust_group,
            inbox_dir=self.inbox_dir or default_inbox(),
            schedulers=available_systems(),
            default_scheduler=system_of_queue_adapter(self.queueadapter) if self.queueadapter else None,
            lost_after=self.lost_after,
            retry_quarantined=self.retry_quarantined,
        )


@dataclass(slots=True)
class _LoopState:
    """What a loop remembers between passes (``time.monotonic()`` times)."""

    #: When it last said something: for the heartbeat.
    said_at: float = field(default_factory=time.monotonic)
    #: When a prune failed (disk full for its VACUUM...): tried again a day later, not every pass.
    prune_failed_at: float | None = None
    #: Set by an ingest pass that found something: the pushing thread ends its wait.
    push_due: threading.Event = field(default_factory=threading.Event)
    #: A push pass is under way (on the pushing thread of ``sync --watch``): not idle.
    pushing: bool = False
    #: Set by a push pass that changed something (children may be READY now), and to wake the
    #: submitting thread of ``sync --watch --submit`` when the loop ends.
    submit_due: threading.Event = field(default_factory=threading.Event)


class _Mutable:
    """A thread's lines, until the loop that started it stops listening to it."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._lock = threading.Lock()
        self._muted = False

    def __call__(self, line: str) -> None:
        with self._lock:
            if not self._muted:
                self._say(line)

    def mute(self) -> None:
        with self._lock:  # a line being said is said whole, before the loop's last one
            self._muted = True


@dataclass(frozen=True)
class Loop:
    """How a login-node command runs its passes: one, or with ``watch`` one every ``interval``
    seconds until ``stop``.

    ``say`` gets the summary lines, ``warn`` the problems (one line each); ``run_pass`` runs each
    pass given how to report its progress. ``heartbeat``: with ``watch``, the longest silence
    while idle (seconds). ``retain``: the retention horizon of ``sync`` in seconds (0: keep
    everything). ``idle_lines``: say the line of a pass that changed nothing too (someone at a
    terminal waits for an answer; a cron log wants only what changed).
    """

    watch: bool
    interval: float
    stop: StopFlag
    say: Callable[[str], None]
    warn: Callable[[str], None]
    run_pass: PassRunner = _without_progress
    heartbeat: float = HEARTBEAT
    retain: float = 0.0
    idle_lines: bool = False
    _state: _LoopState = field(default_factory=_LoopState)

    def ingest(self, ingester: Ingester) -> IngestSummary:
        """Ingest passes: ``fwspool ingest``. Says a pass's line only when watching and it changed
        something; returns the total of all passes."""
        total = IngestSummary()
        while True:
            summary: IngestSummary = self.run_pass(
                lambda progress: ingester.run_pass(should_stop=self.stop, progress=progress)
            )
            total.add(summary)
            self._warn_all(summary.problems)
            if self.watch and summary.changed():
                self._say(summary.line())
            if not self.watch or self.stop() or self._pause(ingester.journal):
                return total

    def push(
        self,
        journal: Journal,
        uplink_factory: Callable[[], Any],
        before_pass: Callable[[], None] | None = None,
    ) -> PushSummary | None:
        """Push passes, backing off while the database is down: ``fwspool push``.

        Returns the summary of the last pass, or None when stopped by a signal.
        """
        backoff = Backoff()
        uplink = uplink_factory()
        try:
            pusher = Pusher(journal, uplink, connecting=self.stop.waiting)
            while True:
                if before_pass is not None:
                    before_pass()
                tried_at = time.monotonic()
                self._state.pushing = True
                try:
                    summary: PushSummary = self.run_pass(
                        lambda progress: pusher.run_pass(should_stop=self.stop, progress=progress)
                    )
                except StoppedWaiting as stopped:
                    if self.watch:
                        return None
                    exc = pusher.unavailable(
                        UplinkUnavailable(
                            f"stopped by {stopped} while waiting for MongoDB at {uplink.where()}: nothing pushed"
                        )
                    )
                    raise Interrupted(exc.message, 128 + (self.stop.signal_number or signal.SIGINT)) from None
                except UplinkUnavailable as exc:
                    self._state.pushing = False
                    if not self.watch:
                        raise
                    delay = backoff.next_delay()
                    took = time.monotonic() - tried_at
                    self._warn_all([f"{exc.message} (this try took {took:.1f}s); retrying in {delay:.1f}s"])
                    if self._pause(journal, delay):
                        return None
                    continue
                finally:
                    self._state.pushing = False
                backoff.reset()
                self._warn_all(summary.problems)
                if not self.watch or self.stop():
                    if summary.changed() or self.watch or self.idle_lines:
                        self._say(summary.line())
                    return summary
                if summary.changed():
                    self._say(summary.line())
                    self._state.submit_due.set()
                if self._pause(journal, until=self._take_push_due):
                    return None
        finally:
            uplink.close()

    def _take_push_due(self) -> bool:
        due = self._state.push_due.is_set()
        self._state.push_due.clear()
        return due

    def sync(
        self,
        journal: Journal,
        ingester: Ingester,
        uplink_factory: Callable[[], Any],
        submitter: Submitter | None = None,
    ) -> None:
        """Ingest, then push, once or (``watch``) until stopped: ``fwspool sync``; the retention
        policy once a day (``retain``); with a ``submitter`` (``--submit``), its rounds too
        (:mod:`fwspool.submit`): after the push once, or on a thread of their own."""

        def ingest_once() -> None:
            self._prune_if_due(journal)
            summary = ingester.run_pass(should_stop=self.stop)
            self._warn_all(summary.problems)
            if summary.changed() or self.idle_lines:
                self._say(summary.line())
                self._state.push_due.set()

        if self.watch:
            self._sync_watch(journal, ingest_once, uplink_factory, submitter)
            return
        summary = self.push(journal, uplink_factory, before_pass=ingest_once)
        if summary is not None and (summary.registered or summary.moved) and not self.stop():
            # The push taught the journal new launch directories (or corrected one, fwspool.identity):
            # read them now, not next run.
            dataclasses.replace(self, watch=False).push(journal, uplink_factory, before_pass=ingest_once)
        if submitter is not None and not self.stop():
            submitter.round(journal, self.stop)

    def _submit_forever(self, path: str, submitter: Submitter, halt: StopFlag) -> None:
        """The submitting thread of ``sync --watch --submit``: a round every ``interval``, at once
        after a push that changed something, later after a failure (the submitter's backoff)."""
        with Journal.open(path, create=False, allow_network_fs=True) as own:
            while not halt():
                submitter.round(own, halt)
                wait = max(self.interval, submitter.not_before - time.monotonic())
                self._state.submit_due.wait(wait)
                self._state.submit_due.clear()

    def _sync_watch(
        self,
        journal: Journal,
        ingest_once: Callable[[], None],
        uplink_factory: Callable[[], Any],
        submitter: Submitter | None = None,
    ) -> None:
        """``sync --watch``: ingest passes here every ``interval``, push passes on a thread of
        their own (its own journal connection, its own backoff), so that a push waiting on a
        dead connection never holds up ingest and the batch-system checks. Signals are answered
        here; an error the push cannot retry (refused credentials...) ends the loop and is raised."""
        halt = StopFlag()  # the pushing thread's: set when this loop ends
        failed: list[BaseException] = []
        said, warned = _Mutable(self.say), _Mutable(self.warn)
        # The same _state; its lines muted once this loop stops listening (below).
        pushing = dataclasses.replace(self, stop=halt, heartbeat=math.inf, say=said, warn=warned)

        def push_forever() -> None:
            try:
                with Journal.open(journal.path, create=False, allow_network_fs=True) as own:
                    pushing.push(own, uplink_factory)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop's thread
                failed.append(exc)
                self.stop.ask(SAY, "")  # wake the loop, which raises it

        def submit_forever() -> None:
            try:
                assert submitter is not None
                self._submit_forever(journal.path, submitter, halt)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop's thread
                failed.append(exc)
                self.stop.ask(SAY, "")

        ingest_once()
        self._state.pushing = True  # until its first pass ends: connecting is part of it
        thread = threading.Thread(target=push_forever, name="fwspool-push", daemon=True)
        thread.start()
        submitting = None
        if submitter is not None:
            submitting = threading.Thread(target=submit_forever, name="fwspool-submit", daemon=True)
            submitting.start()
        try:
            while not failed:
                if self._pause(journal, until=lambda: bool(failed)) or failed:
                    break
                ingest_once()
                if self._state.push_due.is_set():
                    halt.ask(SAY, "")  # wake the pushing thread from its wait
        finally:
            halt.set()
            self._state.submit_due.set()
            if submitting is not None:
                # A round under way finishes: a job submitted, or its reservations handed back
                # (never a Firework left RESERVED with no job to run it).
                submitting.join(SUBMIT_STOP_WAIT)
            while thread.is_alive():
                if halt.in_wait():
                    # Its first contact with a database that does not answer writes nothing: a
                    # stop ends it at once, as the signal does for a one-shot push (the daemon
                    # thread ends with the process). Whatever it would say from now on would
                    # come after the loop's last line ("stopped by SIGTERM"): it says nothing.
                    said.mute()
                    warned.mute()
                    break
                thread.join(0.1)
        if failed:
            raise failed[0]

    def status_line(self, journal: Journal) -> str:
        """The journal's summary in one line (SIGUSR1, the heartbeat)."""
        return summary_line(journal.summary(), utcnow())

    def _say(self, line: str) -> None:
        self._state.said_at = time.monotonic()
        self.say(line)

    def _warn_all(self, problems: list[str]) -> None:
        for problem in problems:
            self._state.said_at = time.monotonic()
            self.warn(problem)

    def _pause(
        self, journal: Journal, seconds: float | None = None, until: Callable[[], bool] | None = None
    ) -> bool:
        """Wait ``seconds`` (default ``interval``) between passes, or until ``until()`` says
        so, answering requests and keeping the heartbeat meanwhile; whether a signal stopped
        the loop."""
        deadline = time.monotonic() + (self.interval if seconds is None else seconds)
        while True:
            self._answer(journal)
            now = time.monotonic()
            if self.stop() or now >= deadline or (until is not None and until()):
                return self.stop()
            heartbeat_due = self._state.said_at + self.heartbeat if self.watch else deadline
            self.stop.sleep(max(0.0, min(deadline, heartbeat_due) - now))

    def _answer(self, journal: Journal) -> None:
        """Answer what signals asked, and say the daemon is alive after ``heartbeat`` of silence."""
        requests = self.stop.requests
        while requests:
            kind, line = requests.popleft()
            if kind == STATUS:
                self._say_status(journal, "status (SIGUSR1)")
            elif line:  # an empty line only wakes the loop
                self._say(line)
        quiet = time.monotonic() - self._state.said_at
        # A push under way on its own thread is not idleness, even when it says nothing yet.
        if self.watch and not self.stop() and quiet >= self.heartbeat and not self._state.pushing:
            self._say_status(journal, f"idle: nothing new for {_duration(quiet)}")

    def _say_status(self, journal: Journal, what: str) -> None:
        try:
            self._say(f"{what}: {self.status_line(journal)}")
        except FwspoolError as exc:
            self._warn_all([f"{what}: {exc.message}"])

    def _prune_if_due(self, journal: Journal) -> None:
        """The retention policy, if ``retain`` and the last prune is :data:`PRUNE_EVERY` old; a
        line when it dropped something. A prune that fails is a problem line, not the daemon's
        end: pushing matters more than retention."""
        if not self.retain:
            return
        failed_at = self._state.prune_failed_at
        if failed_at is not None and time.monotonic() - failed_at < PRUNE_EVERY:
            return
        now = utcnow()
        last = journal.get_meta(LAST_PRUNE_KEY)
        if last is not None and (now - as_utc(last)).total_seconds() < PRUNE_EVERY:
            return
        try:
            summary = journal.prune(now - dt.timedelta(seconds=self.retain), now=now)
        except FwspoolError as exc:
            self._state.prune_failed_at = time.monotonic()
            self._warn_all([f"prune failed, tried again in a day: {exc.message}"])
            return
        if summary.changed():
            self._say(summary.line())
        try:
            cache = prune_cache(cache_dir(), now.timestamp() - self.retain)
        except FwspoolError as exc:
            self._warn_all([f"prune of the jobflow output cache failed, tried again in a day: {exc.message}"])
            return
        if cache.changed():
            self._say(cache.line())


def summary_line(summary: JournalSummary, now: dt.datetime) -> str:
    """'12 launches (2 open, 10 final, 0 forgotten), 431 events, 3 pending (oldest ingested 40s
    ago), last push 25s ago, 0 quarantined ranges'."""
    s = summary
    oldest = f" (oldest ingested {age(s.oldest_pending, now)} ago)" if s.pending else ""
    last_push = f"{age(s.last_push, now)} ago" if s.last_push else "never"
    return (
        f"{counted(s.launches, 'launch')} ({s.open} open, {s.final} final, {s.forgotten} forgotten), "
        f"{counted(s.events, 'event')}, {s.pending} pending{oldest}, last push {last_push}, "
        f"{counted(s.quarantined, 'quarantined range')}"
    )


def startup_line(command: str, journal: str, where: str, interval: float, *details: str) -> str:
    """The first line of a ``--watch`` command's log: who runs, on what, how often."""
    from fwspool import __version__

    return "; ".join(
        (
            f"fwspool {__version__} {command} --watch started (pid {os.getpid()})",
            f"journal {journal}",
            where,
            f"every {interval:g}s",
            *details,
        )
    )


def watch_command(pid: int) -> str | None:
    """The command line of process ``pid`` when it is an fwspool ``--watch`` command (a daemon: it
    holds the journal until stopped); None otherwise, or when it cannot be read (not Linux)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = [w.decode(errors="replace") for w in f.read().split(b"\0") if w]
    except OSError:
        return None
    if "--watch" not in words:
        return None
    for i, word in enumerate(words):
        if os.path.basename(word) == "fwspool" or word == "fwspool.cli":
            return " ".join(["fwspool", *words[i + 1 :]])
    return None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def push_loop(
    journal: Journal,
    uplink_factory: Callable[[], Any],
    *,
    before_pass: Callable[[], None] | None = None,
    **loop: Any,
) -> PushSummary | None:
    """``Loop(**loop).push(...)``: the keywords are :class:`Loop`'s fields."""
    return Loop(**loop).push(journal, uplink_factory, before_pass)


def sync_loop(journal: Journal, ingester: Ingester, uplink_factory: Callable[[], Any], **loop: Any) -> None:
    """``Loop(**loop).sync(...)``: the keywords are :class:`Loop`'s fields."""
    Loop(**loop).sync(journal, ingester, uplink_factory)
