"""The journal's SQLite file: opened safely, with explicit transactions.

The driver is put in autocommit mode and every transaction is begun by this code: writers with
``BEGIN IMMEDIATE`` (they take the write lock up front, so two writers queue on the busy timeout
instead of failing when a read lock would have to be upgraded), readers with a deferred
``BEGIN`` (a snapshot that never blocks a writer in WAL mode). Every SQL statement of the
journal is plain text with ``?`` parameters, run on :attr:`JournalDatabase.db`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any, Self

from fwspool.errors import ConfigError, InputError, JournalBusy, JournalError
from fwspool.journal.schema import columns_of, create_or_upgrade, quote
from fwspool.journal.summary import summarize

#: Filesystems where SQLite's locking and WAL shared memory are unreliable.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "ceph", "fuse.sshfs", "beegfs", "panfs", "afs"}
)
#: Rows per multi-row INSERT statement, at most (fewer when SQLite allows fewer parameters).
ROWS_PER_INSERT = 2000


def default_journal_path() -> str:
    """``$FWSPOOL_JOURNAL``, else ``$XDG_STATE_HOME/fwspool/journal.sqlite3`` under the home."""
    env = os.environ.get("FWSPOOL_JOURNAL")
    if env:
        return env
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "fwspool", "journal.sqlite3")


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding ``path`` (``/proc/self/mountinfo``), or ""."""
    path = os.path.realpath(path)
    best, best_type = "", ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mount_point = fields[4].replace("\\040", " ")
                inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, best_type = mount_point, right.split()[0]
    except OSError:
        return ""
    return best_type


#: Set on a new, empty file only, before its first table: SQLite keeps both in the file.
NEW_FILE_PRAGMAS = (
    # 16 KiB pages (SQLite's default is 4) make a first ingest write, checkpoint and re-read a
    # quarter as many pages, about 2.4 us less CPU per event inserted (docs/at-scale.md); an older
    # journal keeps its page size.
    "page_size = 16384",
    # Pruned space then goes back to the filesystem without a VACUUM; an older journal is
    # converted by its first prune (fwspool.journal.retention). Not on an existing file: there
    # SQLite rewrites the header even when the mode is the same, a write that makes every
    # command, `fwspool status` included, wait for the write lock another process holds.
    "auto_vacuum = INCREMENTAL",
)

#: Set first on every connection: anything after it may wait for another process's lock.
BUSY_TIMEOUT = "busy_timeout = 30000"

#: Set on every connection, in this order, after BUSY_TIMEOUT (and a new file's NEW_FILE_PRAGMAS).
PRAGMAS = (
    "journal_mode = WAL",
    "synchronous = FULL",
    "foreign_keys = ON",
)


class JournalDatabase:
    """The connection to one journal file and its transactions; the roles of the journal
    (:mod:`fwspool.journal`) are built on it."""

    def __init__(self, path: str, db: sqlite3.Connection) -> None:
        self.path = path
        #: The one connection. Ingest hands it to its committer thread, one user at a time.
        self.db = db
        #: Lines for the user about how the journal was found (its permissions).
        self.warnings: list[str] = []

    @classmethod
    def open(
        cls, path: str | None = None, *, allow_network_fs: bool | None = None, create: bool = True
    ) -> Self:
        """Open the journal at ``path`` (default :func:`default_journal_path`), creating it unless
        ``create`` is false: then a journal that does not exist is an :class:`InputError` (a typo
        must not look like an empty journal).

        Refuses a network filesystem unless ``allow_network_fs`` (or ``FWSPOOL_ALLOW_NETWORK_JOURNAL=1``).
        """
        path = os.path.abspath(os.path.expanduser(path or default_journal_path()))
        if not create and not os.path.lexists(path):
            raise InputError(
                f"no journal at {path}: `fwspool ingest` or `fwspool sync` creates it "
                "(give theirs with --journal or FWSPOOL_JOURNAL)"
            )
        _check_location(path, allow_network_fs)
        _create_private(path)
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
        try:
            db.execute(f"PRAGMA {BUSY_TIMEOUT}")
            new_file = db.execute("PRAGMA page_count").fetchone()[0] == 0
            for pragma in (*NEW_FILE_PRAGMAS, *PRAGMAS) if new_file else PRAGMAS:
                db.execute(f"PRAGMA {pragma}")
            create_or_upgrade(db, path, summarize)
        except sqlite3.OperationalError as exc:
            db.close()
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            db.close()
            raise JournalError(f"{path} is not a usable fwspool journal: {exc}") from exc
        except BaseException:
            db.close()
            raise
        journal = cls(path, db)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            journal.warnings.append(
                f"journal {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
            )
        return journal

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on any error); SQLite's failures as JournalError."""
        with self._begun("BEGIN IMMEDIATE", commit=True) as db:
            yield db

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only snapshot: deferred BEGIN … ROLLBACK."""
        with self._begun("BEGIN", commit=False) as db:
            yield db

    @contextlib.contextmanager
    def _begun(self, begin: str, *, commit: bool) -> Iterator[sqlite3.Connection]:
        db = self.db
        try:
            db.execute(begin)
            try:
                yield db
                db.execute("COMMIT" if commit else "ROLLBACK")
            finally:
                # A failed statement or COMMIT (disk full) may leave the transaction open.
                if db.in_transaction:
                    db.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            raise JournalError(f"journal {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def lock(self, role: str, *, wait: float = 0.0) -> Iterator[None]:
        """An exclusive advisory lock for one role ("ingest", "push") across processes.

        SQLite already serialises writers; this lock keeps two ingesters from reading the same
        files at once, which would be correct (inserts are idempotent) but wasteful and confusing.
        """
        lock_path = f"{self.path}.{role}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                        raise JournalBusy(
                            f"another fwspool {role} (pid {holder}) is using journal {self.path}; "
                            "try again when it finishes",
                            int(holder) if holder.isdigit() else None,
                        ) from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    # -- small shared reads and writes -------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only SQL query and return rows as dicts (for tests, tools and status)."""
        with self.reading() as db:
            return rows_as_dicts(db.execute(sql, params))

    def get_meta(self, key: str) -> str | None:
        with self.reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def rows_as_dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def insert_rows(
    db: sqlite3.Connection,
    table: str,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    conflict: str,
) -> int:
    """``INSERT INTO table (columns) VALUES (…), (…), … conflict`` for all ``rows``, thousands of
    rows per statement; returns SQLite's change count (rows inserted, or upserted).

    Not ``executemany``: that calls into SQLite once per row and takes the GIL back after each
    call, so while ingest reads the next batch on the main thread, a committer thread would wait
    for the GIL once per row. One statement per few thousand rows runs without the GIL, and costs
    the same in SQLite.
    """
    width = len(columns)
    # SQLite's limit on bound parameters: 999 before SQLite 3.32, 32766 or more since.
    per = max(1, min(ROWS_PER_INSERT, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    changed = 0
    for i in range(0, len(rows), per):
        part = rows[i : i + per]
        sql = _insert_sql(table, columns, len(part), conflict)
        changed += db.execute(sql, tuple(chain.from_iterable(part))).rowcount
    return changed


@functools.lru_cache(maxsize=32)
def _insert_sql(table: str, columns: tuple[str, ...], n_rows: int, conflict: str) -> str:
    if not set(columns) <= columns_of(table):
        raise ValueError(f"not columns of {table}: {columns}")
    row = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(map(quote, columns))}) VALUES {', '.join([row] * n_rows)} {conflict}"


def _check_location(path: str, allow_network_fs: bool | None) -> None:
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise JournalError(f"cannot create journal directory {directory}: {exc.strerror}") from exc
    if allow_network_fs is None:
        allow_network_fs = os.environ.get("FWSPOOL_ALLOW_NETWORK_JOURNAL", "") not in ("", "0")
    fstype = filesystem_type(directory)
    if fstype in NETWORK_FILESYSTEMS and not allow_network_fs:
        raise ConfigError(
            f"journal {path} is on a {fstype} filesystem; SQLite needs a local disk there "
            "(use --journal on local disk, or FWSPOOL_ALLOW_NETWORK_JOURNAL=1 at your own risk)"
        )


def _create_private(path: str) -> None:
    """Create the journal file readable by its owner only, unless it exists (never through a link)."""
    if os.path.exists(path):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise JournalError(f"cannot create journal {path}: {exc.strerror}") from exc
