"""One ingest pass: which files to read, read them, commit them in batches.

A pass looks at the directories of every launch the journal knows that is still in progress
(learned from spool records, FireWorks offline files, the LaunchPad's registry of offline runs
or the inbox), plus every ``--root`` tree; reads each spool file from its committed offset to
EOF (:mod:`~fwspool.ingest.spool_file`) and each FireWorks offline file whole
(:mod:`~fwspool.ingest.offline_file`); commits events together with the offsets they advance
(:mod:`~fwspool.ingest.batches`); then asks the batch system about open launches
(:mod:`~fwspool.ingest.scheduler_check`).
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping

from fwspool import inbox, offline
from fwspool.config import DEFAULT_LOST_AFTER
from fwspool.errors import InputError
from fwspool.events import utcnow
from fwspool.identity import LaunchHome, agrees, dir_tag, normal_dir
from fwspool.ingest.batches import BatchBuilder, Committer, IngestSummary
from fwspool.ingest.offline_file import read_offline_file
from fwspool.ingest.quarantine_retry import retry_quarantined
from fwspool.ingest.scheduler_check import SchedulerCheck
from fwspool.ingest.spool_file import ReadRules, SpoolFileIngest, frame_at
from fwspool.journal import Journal
from fwspool.journal.rows import IngestBatch, KnownSource, LaunchRow
from fwspool.scheduler import Scheduler
from fwspool.spool import DEFAULT_MAX_RECORD, SPOOL_NAME_RE, OsSourceFile
from fwspool.trust import DEFAULT_MAX_DEPTH, TrustPolicy

#: A pointer of another journal's launch goes once its launch has been over this long: the
#: journal's default retention horizon (``fwspool prune``), after which no journal keeps it.
DEFAULT_STRAY_HORIZON = dt.timedelta(days=30)


#: Every this many passes (the first included), an ingest pass lists every open launch's directory
#: and opens each of its files; the passes between look at each known spool file with one
#: ``lstat`` and list only the directories that may hold a new file (``launches_to_list``). A new
#: run's second spool file, or a size an NFS client cached stale, is seen within this many passes.
FULL_PASS_EVERY = 10


def _unchanged(path: str, row: KnownSource) -> bool:
    """Whether a known spool file is as its journal row left it: the same file ((dev, ino)), every
    byte of it settled (its size is the committed offset), no torn tail waiting. One ``lstat``.

    A file replaced in place by one of the same size that got the same inode back, or a size an
    NFS client's attribute cache still shows stale, is read by the next full pass (FULL_PASS_EVERY).
    """
    if row.status != "active" or row.dev is None:
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False  # the reader says what happened to it
    return (
        stat.S_ISREG(st.st_mode)
        and (st.st_dev, st.st_ino) == (row.dev, row.ino)
        and st.st_size == row.committed_offset
    )


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
        opener: Callable[[str], OsSourceFile] = OsSourceFile,
        clock: Callable[[], dt.datetime] = utcnow,
        trust_group: int | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
        inbox_dir: str | None = None,
        schedulers: Mapping[str, Scheduler] | None = None,
        default_scheduler: str | None = None,
        lost_after: float = DEFAULT_LOST_AFTER,
        retry_quarantined: bool = False,
        stray_horizon: dt.timedelta = DEFAULT_STRAY_HORIZON,
    ) -> None:
        #: How long a launch of another journal must have been over before any journal may
        #: remove its inbox pointer (the retention horizon: :mod:`fwspool.inbox`).
        self.stray_horizon = stray_horizon
        #: When each set-aside pointer's directory may be looked at again (monotonic seconds).
        self._stray_looked: dict[str, float] = {}
        #: Read quarantined records again at the start of the next pass (once).
        self.retry_pending = retry_quarantined
        #: Where ``fwspool rlaunch`` announces launches (fwspool.inbox); None: not read.
        self.inbox_dir = inbox_dir
        self._reported: set[str] = set()
        self.journal = journal
        self.roots = [os.path.abspath(r) for r in roots]
        for root in self.roots:
            if not os.path.isdir(root):
                raise InputError(f"--root {root} is not a directory")
        # Whose files are believed (fwspool.trust): this user's, or a trusted group's.
        self.rules = ReadRules(opener, TrustPolicy(gid=trust_group, roots=self.roots), max_record, max_depth)
        #: Who is asked which jobs still run; without batch systems, nobody (no lost runs).
        self.batch_jobs = (
            SchedulerCheck(
                journal,
                schedulers,
                default_system=default_scheduler,
                lost_after=lost_after,
                report_once=self._report_once,
            )
            if schedulers
            else None
        )
        self.batch_size = batch_size
        self.clock = clock
        # Per pass: who commits the batches, and whether one was handed over since the last
        # should_stop() check.
        self._committer = Committer(journal, IngestSummary())
        self._flushed = False
        #: Passes run so far: every FULL_PASS_EVERY-th one (the first included) lists every open
        #: launch's directory and opens each of its files.
        self._passes = 0

    # -- discovery ---------------------------------------------------------------------------

    def _candidates(
        self,
        dirs: list[tuple[int, str]],
        known: Mapping[str, KnownSource],
        summary: IngestSummary,
        to_list: set[int] | None = None,
    ) -> tuple[list[str], list[str]]:
        """Spool files and FireWorks offline files to read in this pass.

        ``to_list``: the launches whose directory is listed, the others' known files are looked
        at instead (a spool file unchanged since it was read is not even opened: :func:`_unchanged`);
        None: every directory is listed and every file opened.
        """
        spool_files: dict[str, None] = {}
        offline_files: dict[str, None] = {}
        known_in: dict[str, list[str]] = {}
        if to_list is not None:
            for path, row in known.items():
                if row.launch_id is not None and row.kind in ("spool", "fw_offline"):
                    known_in.setdefault(os.path.dirname(path), []).append(path)

        def wanted(path: str) -> bool:
            row = known.get(path)
            if row is None or row.forgotten_at or row.status == "stray":
                # A stray file ran in a directory that is not its launch's (fwspool.identity): it
                # is read again only once a push found that it is the launch after all.
                return row is None
            # A finished launch's files are settled, except a torn tail still waiting for its
            # bytes (e.g. the runner's own file while its exit was recorded in another one).
            return not row.terminal_at or row.status == "torn"

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
                    if wanted(path) and not (row is not None and row.spool_driven):
                        offline_files[path] = None
                    break

        for path, row in known.items():
            if row.kind == "spool" and row.status == "torn" and row.terminal_at and wanted(path):
                spool_files[path] = None
        vanished: list[tuple[int, str]] = []
        for launch_id, directory in dirs:
            files = known_in.get(directory)
            if to_list is not None and launch_id not in to_list and files:
                for path in files:
                    row = known[path]
                    if not wanted(path) or row.launch_id != launch_id:
                        continue
                    if row.kind == "fw_offline":
                        if not row.spool_driven:
                            offline_files[path] = None
                    elif not _unchanged(path, row):
                        spool_files[path] = None
                continue
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                vanished.append((launch_id, directory))
                continue
            except OSError as exc:
                summary.problems.append(f"cannot list {directory}: {exc.strerror}")
                continue
            look_at(directory, names)
        for root in self.roots:
            for directory, subdirs, names in os.walk(root):
                subdirs.sort()
                look_at(directory, names)
        self._report_vanished(vanished, known, spool_files, summary)
        return list(spool_files), list(offline_files)

    def _report_vanished(
        self,
        vanished: list[tuple[int, str]],
        known: Mapping[str, KnownSource],
        found: Mapping[str, None],
        summary: IngestSummary,
    ) -> None:
        """Say once that a launch directory is gone, unless this pass found its spool files
        elsewhere (a ``--root`` over where it was moved): then it is read there, nothing to say."""
        if not vanished:
            return
        found_names = {os.path.basename(p) for p in found}
        gone = {launch_id for launch_id, _ in vanished}
        names: dict[int, set[str]] = {}
        for p, row in known.items():
            if row.launch_id in gone and row.kind == "spool":
                names.setdefault(row.launch_id, set()).add(os.path.basename(p))
        for launch_id, directory in vanished:
            if names.get(launch_id, set()) & found_names:
                continue  # moved: its files are read where they are now
            hint = (
                ""
                if self.roots
                else "; if it was moved, `fwspool sync --root DIR` (DIR holding it) reads it there"
            )
            self._report_once(
                summary,
                f"launch dir vanished: {directory} (launch {launch_id}){hint}; once its batch job is gone the "
                "launch ends as lost",
            )

    # -- one pass ----------------------------------------------------------------------------

    def run_pass(
        self,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[int, int], None] | None = None,
    ) -> IngestSummary:
        """Ingest everything new once. ``should_stop`` is checked between batches."""
        summary = IngestSummary()
        if self.retry_pending:
            self.retry_pending = False
            retry_quarantined(self.journal, self.rules, summary)
        if self.inbox_dir is not None:
            self._read_inbox(summary)
        dirs, known = self.journal.scan_targets()
        full = self._passes % FULL_PASS_EVERY == 0
        self._passes += 1
        to_list = None if full else self.journal.launches_to_list()
        spool_files, offline_files = self._candidates(dirs, known, summary, to_list)
        total = len(spool_files) + len(offline_files)
        batch = BatchBuilder()
        done = 0
        now = self.clock()
        self._committer = Committer(self.journal, summary, self._frame_at)
        self._flushed = False

        def flush_if_full() -> None:
            if batch.size() >= self.batch_size:
                self._flush(batch)

        try:
            for i, path in enumerate(spool_files + offline_files):
                flush_if_full()
                # Stop only after a batch was handed over (here, or while reading the last file):
                # the batches handed over are committed (below), and everything committed is
                # consistent.
                if self._flushed:
                    self._flushed = False
                    if should_stop():
                        break
                if i < len(spool_files):
                    SpoolFileIngest(self.rules, path, known.get(path), batch, summary, flush_if_full).read()
                else:
                    read_offline_file(self.rules, path, known, batch, summary, now)
                done += 1
                if progress:
                    progress(done, total)
            if batch.empty():
                self._committer.wait()
            else:
                self._committer.commit(batch.take())
        finally:
            self._committer.close()
        summary.files = done
        if self.batch_jobs is not None and not should_stop():
            self.batch_jobs.run(self.clock(), summary)
        return summary

    def retry_quarantined(self) -> IngestSummary:
        """Read every quarantined spool record again with this ingester's limits; those now
        accepted become events (:mod:`~fwspool.ingest.quarantine_retry`)."""
        summary = IngestSummary()
        retry_quarantined(self.journal, self.rules, summary)
        return summary

    def _flush(self, batch: BatchBuilder) -> None:
        """Hand the batch to the committer (one transaction) and start a new one."""
        if not batch.empty():
            self._committer.submit(batch.take())
            self._flushed = True

    def _frame_at(self, path: str, offset: int) -> tuple[int, bytes]:
        return frame_at(self.rules.opener, path, offset)

    def _report_once(self, summary: IngestSummary, problem: str) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            summary.problems.append(problem)

    def _read_inbox(self, summary: IngestSummary) -> None:
        """Learn the launches announced in the inbox; remove the pointers no journal needs.

        A pointer whose launch id and directory agree with one of this journal's launches is
        that launch's: removed once the LaunchPad confirmed it and it is over. One of a launch id
        this journal does not know is learned (the push then asks the LaunchPad whether it is its
        launch), unless pointers name that id in several directories: then the LaunchPad's
        registry says which at the next push. Any other is another LaunchPad's (or from before an
        ``lpad reset``): set aside with one line, and left for its own journal. Whichever it is,
        a pointer whose directory is gone, or whose launch its own files show over for longer
        than the retention horizon, goes (:mod:`fwspool.inbox`).
        """
        assert self.inbox_dir is not None
        listed = inbox.list_inbox(self.inbox_dir)
        if not listed:
            return
        homes = self.journal.launch_homes(sorted({x.launch_id for x in listed}))
        strays = self.journal.stray_pointers()
        unknown: dict[int, list[inbox.Pointer]] = {}
        for item in listed:
            known = homes.get(item.launch_id)
            if known is not None and item.tag in {dir_tag(d) for d in known[0].dirs()}:
                self._own_pointer(item.path, *known, summary)
                continue
            if item.path in strays:
                self._clean_up(item.path, None, summary)
                continue
            entry = self._read_pointer(item, summary)
            if entry is None or entry.pointer is None:
                continue
            p = entry.pointer
            if known is not None:
                self._pointer_of_known(entry.path, p, *known, summary)
            elif not self._clean_up(entry.path, None, summary, p, record=False):
                unknown.setdefault(p.launch_id, []).append(p)
        self._learn(unknown, summary)

    def _own_pointer(self, path: str, home: LaunchHome, over: bool, summary: IngestSummary) -> None:
        """A pointer named for one of the journal's launches and its directory."""
        if home.confirmed and over:
            inbox.remove_pointer(path)
        elif not home.confirmed:
            # Until the LaunchPad says it is this journal's, it may be another's.
            self._clean_up(path, None, summary, record=False)

    def _read_pointer(self, item: inbox.Listed, summary: IngestSummary) -> inbox.InboxEntry | None:
        """The pointer's content, believed (else its problem said once); a version 1 one renamed."""
        assert self.inbox_dir is not None
        entry = inbox.read_pointer(item.path, self.rules.trust.refusal)
        if entry.problem is not None:
            self._report_once(summary, entry.problem)
        if entry.pointer is None or entry.pointer.launch_id != item.launch_id:
            return None
        return inbox.rename_version_1(entry, self.inbox_dir) if item.tag is None else entry

    def _pointer_of_known(
        self, path: str, p: inbox.Pointer, home: LaunchHome, over: bool, summary: IngestSummary
    ) -> None:
        """A pointer of a launch id the journal knows, not named for its directory."""
        if agrees(home, p.launch_dir):
            if home.confirmed and over:
                inbox.remove_pointer(path)
            return
        reason = (
            f"inbox pointer {path} announces launch {p.launch_id} in {p.launch_dir}, but this journal's "
            f"launch {p.launch_id} runs in {home.launch_dir}: another LaunchPad's launch (or one from before "
            "an lpad reset); set aside, left for its own journal"
        )
        self._clean_up(path, reason, summary, p)

    def _learn(self, unknown: dict[int, list[inbox.Pointer]], summary: IngestSummary) -> None:
        """Launches the journal did not know, each announced in one directory only."""
        learned = []
        for launch_id, announced in unknown.items():
            if len({normal_dir(p.launch_dir) for p in announced}) > 1:
                self._report_once(
                    summary,
                    f"{len(announced)} inbox pointers announce launch {launch_id} in different directories "
                    "(several LaunchPads share this inbox): it is learned once its LaunchPad says which is its own",
                )
                continue
            p = announced[0]
            learned.append(LaunchRow(p.launch_id, p.fw_id, p.launch_dir, "inbox"))
        if learned:
            self.journal.commit_ingest(IngestBatch(launches=learned))
            summary.announced += len(learned)

    #: Seconds between two looks at one set-aside pointer's directory (is it gone, or long over?).
    STRAY_LOOK_EVERY = 600.0

    def _clean_up(
        self,
        path: str,
        reason: str | None,
        summary: IngestSummary,
        pointer: inbox.Pointer | None = None,
        *,
        record: bool = True,
    ) -> bool:
        """A pointer that is not (or not yet known to be) this journal's: remove it when no journal
        can need it any more (its directory gone, or its launch over for longer than the horizon);
        else, with ``record``, remember it as set aside, saying so once (``reason``: it was just
        found). Whether it was removed."""
        now = time.monotonic()
        if reason is None and now < self._stray_looked.get(path, 0.0):
            return False
        self._stray_looked[path] = now + self.STRAY_LOOK_EVERY
        if pointer is None:
            entry = inbox.read_pointer(path, self.rules.trust.refusal)
            if entry.pointer is None:
                if entry.problem is None and record:  # removed meanwhile
                    self.journal.set_aside_pointer(path, None)
                return entry.problem is None
            pointer = entry.pointer
        try:
            ended = inbox.over_since(pointer.launch_dir, pointer.launch_id)
            gone = False
        except FileNotFoundError:
            ended, gone = None, True
        except OSError:
            ended, gone = None, False
        if gone or (ended is not None and self.clock() - ended > self.stray_horizon):
            inbox.remove_pointer(path)
            if record:
                self.journal.set_aside_pointer(path, None)
            summary.pointers_removed += 1
            return True
        if reason is not None:
            self.journal.set_aside_pointer(path, reason)
            self._report_once(summary, reason)
        return False


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
