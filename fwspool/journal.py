"""The login-node journal: a local SQLite database between the spool and the LaunchPad.

The journal is the outbox of fwspool. Ingest commits events together with the byte offsets they
advance, in one transaction, so a crash at any moment leaves each event either fully in (with
its offset) or fully out (and read again). Push marks an event pushed only after the database
acknowledged it. The schema (``schema/journal.sql``, generated from :data:`metadata`) is meant to
be read with the plain ``sqlite3`` shell: ISO-8601 UTC text times, JSON text payloads, and views
for the questions an operator asks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import heapq
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable

from fwspool.errors import ConfigError, JournalBusy, JournalError
from fwspool.events import iso, utcnow

if TYPE_CHECKING:
    from fwspool.runs import LaunchEvents, PendingEvent

SCHEMA_VERSION = 2
#: Filesystems where SQLite's locking and WAL shared memory are unreliable.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "ceph", "fuse.sshfs", "beegfs", "panfs", "afs"}
)
#: At most this many quarantined bytes are copied into the journal; the spool keeps the rest.
QUARANTINE_KEEP = 1024 * 1024

metadata = MetaData()

launches = Table(
    "launches",
    metadata,
    Column("launch_id", Integer, primary_key=True, autoincrement=False),
    Column("fw_id", Integer),
    Column("launch_dir", Text),
    # How fwspool first learned of the launch: a spool record, a FireWorks offline file,
    # the LaunchPad's registry of offline runs, or a pointer in the inbox (fwspool.inbox).
    Column("learned_from", Text, nullable=False),
    Column("first_seen_at", Text, nullable=False),
    # Set when the launch's last event is in: no need to scan its directory again.
    Column("terminal_at", Text),
    Column("forgotten_at", Text),
    # The batch job of the reservation (the LaunchPad's reservation_id) or of the run (the
    # started event), its batch system, and since when the batch system no longer has it.
    Column("batch_job_id", Text),
    Column("batch_system", Text),
    Column("batch_gone_at", Text),
    CheckConstraint(
        "learned_from IN ('spool', 'fw_offline', 'registry', 'inbox')", name="launches_learned_from"
    ),
)

sources = Table(
    "sources",
    metadata,
    Column("source_id", Integer, primary_key=True),
    Column("path", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("launch_id", Integer, ForeignKey("launches.launch_id")),
    Column("writer_id", Text),
    # File identity: (device, inode) and the first bytes' checksum detect a file replaced under us.
    Column("dev", Integer),
    Column("ino", Integer),
    Column("fingerprint", Text),
    # Every byte before this offset is settled: ingested as events or quarantined.
    Column("committed_offset", Integer, nullable=False, server_default=text("0")),
    # FireWorks offline files are rewritten in place: the hash of the last version read.
    Column("content_hash", Text),
    Column("status", Text, nullable=False, server_default=text("'active'")),
    Column("status_detail", Text),
    Column("first_seen_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    CheckConstraint("kind IN ('spool', 'fw_offline', 'fw_ping')", name="sources_kind"),
    CheckConstraint(
        "status IN ('active', 'torn', 'replaced', 'truncated', 'missing', 'refused', 'unreadable')",
        name="sources_status",
    ),
)

events = Table(
    "events",
    metadata,
    # "<writer id>-<seq>" (fwspool.events.event_id); deterministic for FireWorks offline files.
    Column("event_id", Text, primary_key=True),
    Column("writer_id", Text, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("launch_id", Integer, nullable=False),
    Column("fw_id", Integer),
    Column("type", Text, nullable=False),
    # The writer's clock when it appended the record (the compute node's clock).
    Column("occurred_at", Text, nullable=False),
    # The event as JSON text, "type" included: json_extract(payload, '$.ping_time') works.
    Column("payload", Text, nullable=False),
    Column("source_id", Integer, ForeignKey("sources.source_id")),
    Column("source_offset", Integer),
    Column("ingested_at", Text, nullable=False),
    Column("pushed_at", Text),
    # applied: the LaunchPad reflects it; superseded: the LaunchPad moved on (rerun, defuse...)
    # and the event was deliberately not applied; skipped: nothing to apply (notes).
    Column("push_outcome", Text),
    Column("push_detail", Text),
    CheckConstraint(
        "push_outcome IS NULL OR push_outcome IN ('applied', 'superseded', 'skipped')",
        name="events_push_outcome",
    ),
    # No UNIQUE (writer_id, seq): event_id is "<writer_id>-<seq>", so the primary key already
    # makes each (writer, seq) one row, and a second unique index would only slow every insert.
)
Index("events_pending", events.c.launch_id, events.c.occurred_at, sqlite_where=events.c.pushed_at.is_(None))
Index("events_by_launch", events.c.launch_id, events.c.type)

quarantine = Table(
    "quarantine",
    metadata,
    Column("quarantine_id", Integer, primary_key=True),
    Column("source_id", Integer, ForeignKey("sources.source_id")),
    Column("path", Text, nullable=False),
    Column("offset", Integer, nullable=False),
    Column("length", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    # The first QUARANTINE_KEEP bytes of the damaged range (all of it when shorter).
    Column("bytes", LargeBinary),
    Column("quarantined_at", Text, nullable=False),
    UniqueConstraint("path", "offset", name="quarantine_path_offset"),
)

forget_requests = Table(
    "forget_requests",
    metadata,
    Column("request_id", Integer, primary_key=True),
    # What `fwspool forget` named: a Firework id or a launch id.
    Column("kind", Text, nullable=False),
    Column("value", Integer, nullable=False),
    # 1: forget (offline_runs.deprecated = true); 0: --undo.
    Column("forget", Integer, nullable=False),
    Column("requested_at", Text, nullable=False),
    # When the LaunchPad's offline_runs were updated accordingly (NULL: on the next push).
    Column("applied_at", Text),
    CheckConstraint("kind IN ('fw_id', 'launch_id')", name="forget_requests_kind"),
)

redo = Table(
    "redo",
    metadata,
    Column("redo_id", Integer, primary_key=True),
    Column("created_at", Text, nullable=False),
    # A bulk completion's full write set (MongoDB extended JSON), saved before it is written and
    # deleted with its events' pushed mark: a push killed halfway replays it (fireworks_map.WriteSet).
    Column("write_set", LargeBinary, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text),
)

VIEWS = {
    "pending_events": """
CREATE VIEW IF NOT EXISTS pending_events AS
SELECT e.event_id, e.launch_id, e.fw_id, e.type, e.occurred_at, e.ingested_at, e.payload
FROM events AS e JOIN launches AS l ON l.launch_id = e.launch_id
WHERE e.pushed_at IS NULL AND l.forgotten_at IS NULL
ORDER BY e.launch_id, e.occurred_at, e.event_id""",
    "launch_status": """
CREATE VIEW IF NOT EXISTS launch_status AS
SELECT l.launch_id, l.fw_id, l.launch_dir, l.learned_from,
       (SELECT e.type FROM events AS e WHERE e.launch_id = l.launch_id
        ORDER BY e.occurred_at DESC, e.event_id DESC LIMIT 1) AS last_event,
       (SELECT max(e.occurred_at) FROM events AS e WHERE e.launch_id = l.launch_id) AS last_event_at,
       (SELECT count(*) FROM events AS e WHERE e.launch_id = l.launch_id AND e.pushed_at IS NULL) AS pending,
       (SELECT count(*) FROM events AS e WHERE e.launch_id = l.launch_id
        AND e.push_outcome = 'applied') AS pushed,
       (SELECT count(*) FROM events AS e WHERE e.launch_id = l.launch_id
        AND e.push_outcome = 'superseded') AS superseded,
       l.forgotten_at IS NOT NULL AS forgotten,
       l.terminal_at
FROM launches AS l
ORDER BY l.launch_id""",
    "quarantined": """
CREATE VIEW IF NOT EXISTS quarantined AS
SELECT q.quarantine_id, q.path, q."offset", q.length, q.reason, q.quarantined_at,
       substr(CAST(q.bytes AS TEXT), 1, 80) AS preview
FROM quarantine AS q
ORDER BY q.quarantined_at, q.path, q."offset\"""",
}


def schema_sql() -> str:
    """The journal schema as SQLite DDL: the text of ``schema/journal.sql``."""
    dialect = sqlite.dialect()
    parts = [
        "-- fwspool journal schema (generated from fwspool/journal.py; do not edit by hand).\n"
        f"-- PRAGMA user_version = {SCHEMA_VERSION}; journal_mode = WAL; synchronous = FULL.\n"
    ]
    for table in metadata.sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";\n")
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            parts.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";\n")
    for ddl in VIEWS.values():
        parts.append(ddl.strip() + ";\n")
    return "\n".join("\n".join(line.rstrip() for line in part.split("\n")) for part in parts)


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


def default_journal_path() -> str:
    """``$FWSPOOL_JOURNAL``, else ``$XDG_STATE_HOME/fwspool/journal.sqlite3`` under the home."""
    env = os.environ.get("FWSPOOL_JOURNAL")
    if env:
        return env
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "fwspool", "journal.sqlite3")


#: One event as ingest hands it over, in the order of :data:`EVENT_ROW_COLUMNS`: a plain tuple,
#: because a large ingest makes one per record and SQLite binds tuples directly.
EventRow = tuple[str, str, int, int, int | None, str, str, str, int | None]
EVENT_ROW_COLUMNS = (
    "event_id",
    "writer_id",
    "seq",
    "launch_id",
    "fw_id",
    "type",
    "occurred_at",
    "payload",
    "source_offset",
)


@dataclass(slots=True)
class IngestBatch:
    """Everything one ingest transaction commits together."""

    launches: list[dict[str, Any]]
    #: Event rows by the path of the source file they were read from; the journal resolves each
    #: path to its source_id once per batch.
    events: dict[str, list[EventRow]]
    sources: list[dict[str, Any]]  # full rows to upsert, keyed by path
    quarantine: list[dict[str, Any]]
    terminal_launches: set[int]
    #: Launches whose run a signal ended: terminal now unless a batch job may run them again
    #: (then the batch system decides: :meth:`Journal.record_batch_view`).
    signal_exits: set[int] = field(default_factory=set)
    #: (path, offset) -> (length, bytes) of the record there, for the quarantine of a record whose
    #: event id the journal holds with other content (two writers claiming one writer id).
    frame_at: Callable[[str, int], tuple[int, bytes]] | None = None


class BatchLaunch(NamedTuple):
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
class BatchView:
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


@dataclass(slots=True)
class IngestCounts:
    new_events: int = 0
    duplicates: int = 0
    quarantined: int = 0
    #: One line per file whose records were not ingested because their ids were taken.
    problems: list[str] = field(default_factory=list)


class Journal:
    """A journal database. Open with :meth:`open`; close when done (or use ``with``)."""

    def __init__(self, path: str, engine: Engine) -> None:
        self.path = path
        self.engine = engine
        self._conn: Connection | None = None
        self.warnings: list[str] = []

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | None = None, *, allow_network_fs: bool | None = None) -> Journal:
        """Open (creating if needed) the journal at ``path`` (default :func:`default_journal_path`).

        Refuses a network filesystem unless ``allow_network_fs`` (or ``FWSPOOL_ALLOW_NETWORK_JOURNAL=1``).
        """
        path = os.path.abspath(os.path.expanduser(path or default_journal_path()))
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
        created = not os.path.exists(path)
        if created:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                os.close(fd)
            except FileExistsError:
                created = False
            except OSError as exc:
                raise JournalError(f"cannot create journal {path}: {exc.strerror}") from exc
        # check_same_thread=False: ingest hands its connection to a committer thread, one user at
        # a time (Ingester waits for each commit before it touches the journal again).
        engine = create_engine(
            f"sqlite+pysqlite:///{path}", poolclass=NullPool, connect_args={"check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            # Take BEGIN away from pysqlite so that the code issues BEGIN IMMEDIATE itself.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 30000")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take the write lock up front (IMMEDIATE), so two writers queue instead of
            # failing with SQLITE_BUSY on lock upgrade; readers start a plain deferred snapshot.
            conn.exec_driver_sql("BEGIN" if conn.info.get("reading") else "BEGIN IMMEDIATE")

        journal = cls(path, engine)
        try:
            journal._init_schema()
        except sa_exc.OperationalError as exc:
            engine.dispose()
            raise JournalError(f"cannot open journal {path}: {_sqlite_reason(exc)}") from exc
        except sa_exc.DatabaseError as exc:
            engine.dispose()
            raise JournalError(f"{path} is not a usable fwspool journal: {_sqlite_reason(exc)}") from exc
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            journal.warnings.append(
                f"journal {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
            )
        return journal

    def _init_schema(self) -> None:
        with self.engine.begin() as conn:
            version = conn.exec_driver_sql("PRAGMA user_version").scalar() or 0
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"journal {self.path} has schema version {version}; this fwspool knows {SCHEMA_VERSION}"
                )
            if version == SCHEMA_VERSION:
                return
            if version == 0:
                metadata.create_all(conn)
                for ddl in VIEWS.values():
                    conn.exec_driver_sql(ddl)
                conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return
        try:
            self._migrate()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot upgrade journal {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        """Bring a journal of schema version 1 to version 2, keeping every row.

        Version 2 adds the batch job columns and ``'inbox'`` to the CHECK of ``learned_from``;
        SQLite cannot change a CHECK in place, so ``launches`` is rebuilt the way SQLite's own
        ALTER TABLE documentation does it: foreign keys off (possible only outside a
        transaction), one IMMEDIATE transaction, a foreign-key check before the commit.
        """
        raw = self.engine.raw_connection()
        try:
            db = raw.driver_connection
            assert isinstance(db, sqlite3.Connection)
            if db.execute("PRAGMA user_version").fetchone()[0] != 1:
                return
            old = [r[1] for r in db.execute('PRAGMA table_info("launches")')]
            db.execute("PRAGMA foreign_keys = OFF")
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("PRAGMA user_version").fetchone()[0] != 1:
                    db.execute("ROLLBACK")  # another process migrated it meanwhile
                    return
                for name in VIEWS:
                    db.execute(f"DROP VIEW IF EXISTS {name}")
                ddl = str(CreateTable(launches).compile(dialect=sqlite.dialect())).strip()
                db.execute(ddl.replace("CREATE TABLE launches ", "CREATE TABLE launches_v2 ", 1))
                columns = ", ".join(map(_quote, old))
                db.execute(f"INSERT INTO launches_v2 ({columns}) SELECT {columns} FROM launches")
                db.execute("DROP TABLE launches")
                db.execute("ALTER TABLE launches_v2 RENAME TO launches")
                for view in VIEWS.values():
                    db.execute(view)
                problems = db.execute("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise JournalError(
                        f"journal {self.path}: migration found broken references {problems[:3]}"
                    )
                db.execute("PRAGMA user_version = 2")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                db.execute("PRAGMA foreign_keys = ON")
        finally:
            raw.close()

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE … COMMIT (or ROLLBACK on error), mapping SQLite failures to JournalError."""
        conn = self.conn
        try:
            with conn.begin():
                yield conn
        except sa_exc.OperationalError as exc:
            raise JournalError(f"journal {self.path}: {_sqlite_reason(exc)}") from exc

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only snapshot (deferred BEGIN … ROLLBACK): readers never block writers in WAL."""
        conn = self.conn
        conn.info["reading"] = True
        try:
            with conn.begin() as tx:
                yield conn
                tx.rollback()
        except sa_exc.OperationalError as exc:
            raise JournalError(f"journal {self.path}: {_sqlite_reason(exc)}") from exc
        finally:
            conn.info["reading"] = False

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
                            "try again when it finishes"
                        ) from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.reading() as conn:
            row = conn.execute(meta.select().where(meta.c.key == key)).first()
        return None if row is None else row.value

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            stmt = sqlite.insert(meta).values(key=key, value=value)
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    # -- ingest side -------------------------------------------------------------------------

    def scan_targets(self) -> tuple[list[tuple[int, str]], dict[str, dict[str, Any]]]:
        """What an ingest pass looks at: the directories of launches still in progress, and every
        known source file's row by path, with its launch's ``terminal_at`` and ``forgotten_at``
        and, for FireWorks offline files, ``spool_driven``: the launch has a ``started`` event from
        a spool file, so `fwspool rlaunch` runs it and its FW_offline.json will never change."""
        with self.reading() as conn:
            return self._scan_targets(conn)

    @staticmethod
    def _scan_targets(conn: Connection) -> tuple[list[tuple[int, str]], dict[str, dict[str, Any]]]:
        dirs = [
            (row.launch_id, row.launch_dir)
            for row in conn.execute(
                launches.select()
                .with_only_columns(launches.c.launch_id, launches.c.launch_dir)
                .where(launches.c.terminal_at.is_(None), launches.c.forgotten_at.is_(None))
                .where(launches.c.launch_dir.is_not(None))
            )
        ]
        started_from_spool = (
            select(events.c.event_id)
            .where(events.c.launch_id == sources.c.launch_id, events.c.type == "started")
            .where(events.c.source_offset.is_not(None))
            .exists()
        )
        rows = conn.execute(
            sources.select()
            .outerjoin(launches, launches.c.launch_id == sources.c.launch_id)
            .with_only_columns(
                *sources.c,
                launches.c.terminal_at,
                launches.c.forgotten_at,
                case((sources.c.kind == "fw_offline", started_from_spool), else_=False).label("spool_driven"),
            )
        ).mappings()
        by_path = {row["path"]: dict(row) for row in rows}
        return dirs, by_path

    def commit_ingest(self, batch: IngestBatch) -> IngestCounts:
        """Commit one ingest batch atomically: launches, events, source offsets, quarantine.

        ``ON CONFLICT DO NOTHING`` makes a row read twice one row; SQLite's change count (the
        rowcount) counts only the rows really inserted. The rows go to SQLite as plain tuples,
        thousands per statement (:func:`_insert_rows`).
        """
        counts = IngestCounts()
        now = iso(utcnow())
        with self.transaction() as conn:
            if batch.launches:
                _insert_rows(
                    conn,
                    "launches",
                    (
                        "launch_id",
                        "fw_id",
                        "launch_dir",
                        "learned_from",
                        "first_seen_at",
                        "batch_job_id",
                        "batch_system",
                    ),
                    [
                        (
                            r["launch_id"],
                            r["fw_id"],
                            r["launch_dir"],
                            r["learned_from"],
                            now,
                            r.get("batch_job_id"),
                            r.get("batch_system"),
                        )
                        for r in batch.launches
                    ],
                    _LAUNCH_UPSERT,
                )
            by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
            for row in batch.sources:
                by_columns.setdefault(tuple(row), []).append((*row.values(), now, now))
            for columns, rows in by_columns.items():
                _insert_rows(
                    conn, "sources", (*columns, "first_seen_at", "updated_at"), rows, _source_upsert(columns)
                )
            if batch.events or batch.quarantine:
                source_ids = _source_ids(conn, {*batch.events, *(q["path"] for q in batch.quarantine)})
            if batch.events:
                event_rows: list[tuple[Any, ...]] = []
                for path, rows_of_path in batch.events.items():
                    tail = (source_ids.get(path), now)
                    event_rows += [row + tail for row in rows_of_path]
                counts.new_events = _insert_rows(
                    conn,
                    "events",
                    (*EVENT_ROW_COLUMNS, "source_id", "ingested_at"),
                    event_rows,
                    "ON CONFLICT DO NOTHING",
                )
                counts.duplicates = len(event_rows) - counts.new_events
            if batch.quarantine:
                counts.quarantined = _insert_rows(
                    conn,
                    "quarantine",
                    ("source_id", "path", "offset", "length", "reason", "bytes", "quarantined_at"),
                    [
                        (
                            source_ids.get(q["path"]),
                            q["path"],
                            q["offset"],
                            q["length"],
                            q["reason"],
                            q["bytes"],
                            now,
                        )
                        for q in batch.quarantine
                    ],
                    "ON CONFLICT DO NOTHING",
                )
            if counts.duplicates:
                # A duplicate is the same record read again, unless its content differs: then two
                # writers claim one writer id (a copied or forged file) and it must not vanish.
                conflicts = _conflicting_events(conn, batch.events)
                if conflicts:
                    counts.duplicates -= len(conflicts)
                    counts.quarantined += self._quarantine_conflicts(
                        conn, batch, conflicts, source_ids, now, counts
                    )
            if batch.launches:
                _apply_forget_requests(conn, now)
            if batch.terminal_launches:
                conn.execute(
                    launches.update()
                    .where(launches.c.launch_id.in_(sorted(batch.terminal_launches)))
                    .where(launches.c.terminal_at.is_(None))
                    .values(terminal_at=now)
                )
            if batch.signal_exits:
                conn.execute(
                    launches.update()
                    .where(launches.c.launch_id.in_(sorted(batch.signal_exits)))
                    .where(launches.c.terminal_at.is_(None), launches.c.batch_job_id.is_(None))
                    .values(terminal_at=now)
                )
        return counts

    @staticmethod
    def _quarantine_conflicts(
        conn: Connection,
        batch: IngestBatch,
        conflicts: list[tuple[str, EventRow, str]],
        source_ids: dict[str, int],
        now: str,
        counts: IngestCounts,
    ) -> int:
        rows = []
        per_file: dict[tuple[str, str], int] = {}
        for path, row, other in conflicts:
            length, data = batch.frame_at(path, row[8]) if batch.frame_at and row[8] is not None else (0, b"")
            reason = (
                f"event {row[0]} is already in the journal, from {other}, with other content: "
                f"two writers claim writer id {row[1]}"
            )
            rows.append(
                (source_ids.get(path), path, row[8], length, reason[:500], data[:QUARANTINE_KEEP], now)
            )
            per_file[(path, other)] = per_file.get((path, other), 0) + 1
        for (path, other), n in per_file.items():
            counts.problems.append(
                f"{n} records of {path} not ingested: their writer id is also {other}'s, with other "
                "content (quarantined)"
            )
        return _insert_rows(
            conn,
            "quarantine",
            ("source_id", "path", "offset", "length", "reason", "bytes", "quarantined_at"),
            rows,
            "ON CONFLICT DO NOTHING",
        )

    # -- the batch system's view -------------------------------------------------------------

    def batch_launches(self) -> list[BatchLaunch]:
        """Open launches with a batch job whose fate is not decided yet (no lost/released event)."""
        with self.reading() as conn:
            rows = conn.exec_driver_sql(
                """
                SELECT l.launch_id, l.fw_id, l.launch_dir, l.batch_job_id, l.batch_system, l.batch_gone_at,
                       (SELECT e.type || ':' || coalesce(json_extract(e.payload, '$.signal'), '')
                        FROM events AS e
                        WHERE e.launch_id = l.launch_id
                          AND e.type IN ('started', 'exited', 'completed', 'lost', 'released')
                        ORDER BY e.occurred_at DESC, e.event_id DESC LIMIT 1) AS last
                FROM launches AS l
                WHERE l.terminal_at IS NULL AND l.forgotten_at IS NULL AND l.batch_job_id IS NOT NULL
                ORDER BY l.launch_id
                """
            ).all()
        out = []
        for launch_id, fw_id, launch_dir, job, system, gone_at, last in rows:
            kind, _, sig = (last or "").partition(":")
            out.append(
                BatchLaunch(launch_id, fw_id, launch_dir, job, system, gone_at, kind or None, bool(sig))
            )
        return out

    def record_batch_view(self, view: BatchView) -> int:
        """Commit one batch-system check; returns how many inferred events were new."""
        if view.empty():
            return 0
        now = iso(utcnow())
        with self.transaction() as conn:
            for launch_id, system in view.systems.items():
                conn.execute(
                    launches.update().where(launches.c.launch_id == launch_id).values(batch_system=system)
                )
            if view.gone:
                conn.execute(
                    launches.update()
                    .where(launches.c.launch_id.in_(view.gone), launches.c.batch_gone_at.is_(None))
                    .values(batch_gone_at=now)
                )
            if view.back:
                conn.execute(
                    launches.update().where(launches.c.launch_id.in_(view.back)).values(batch_gone_at=None)
                )
            new = 0
            if view.inferred:
                new = _insert_rows(
                    conn,
                    "events",
                    (*EVENT_ROW_COLUMNS, "source_id", "ingested_at"),
                    [row + (None, now) for row in view.inferred],
                    "ON CONFLICT DO NOTHING",
                )
            if view.terminal:
                conn.execute(
                    launches.update()
                    .where(launches.c.launch_id.in_(view.terminal), launches.c.terminal_at.is_(None))
                    .values(terminal_at=now)
                )
        return new

    def settled_launches(self, launch_ids: Sequence[int]) -> dict[int, bool]:
        """For each of these launch ids the journal knows: whether it is over (final or forgotten)."""
        out: dict[int, bool] = {}
        with self.reading() as conn:
            for i in range(0, len(launch_ids), 500):
                chunk = list(launch_ids[i : i + 500])
                for row in conn.execute(
                    select(launches.c.launch_id, launches.c.terminal_at, launches.c.forgotten_at).where(
                        launches.c.launch_id.in_(chunk)
                    )
                ):
                    out[row.launch_id] = row.terminal_at is not None or row.forgotten_at is not None
        return out

    # -- queries for people and for push -----------------------------------------------------

    def launch_status(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM launch_status")

    def count_events(self, where: str = "1=1", params: Sequence[Any] = ()) -> int:
        with self.reading() as conn:
            value = conn.exec_driver_sql(f"SELECT count(*) FROM events WHERE {where}", tuple(params)).scalar()
        return int(value or 0)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only SQL query and return rows as dicts (for tests, tools and status)."""
        with self.reading() as conn:
            return [dict(r) for r in conn.exec_driver_sql(sql, params).mappings()]

    # -- push side ---------------------------------------------------------------------------

    def pending_launches(self, after: int | None, limit: int) -> list[LaunchEvents]:
        """Pending events of up to ``limit`` launches with ids above ``after``, in order.

        Forgotten launches are left out: their events stay in the journal, visible, unpushed.
        """
        from fwspool.runs import LaunchEvents, PendingEvent

        with self.reading() as conn:
            lids = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT DISTINCT e.launch_id FROM events AS e JOIN launches AS l ON l.launch_id = e.launch_id "
                    "WHERE e.pushed_at IS NULL AND l.forgotten_at IS NULL AND e.launch_id > ? "
                    "ORDER BY e.launch_id LIMIT ?",
                    (-(2**62) if after is None else after, limit),
                )
            ]
            if not lids:
                return []
            marks = ",".join("?" * len(lids))
            # Each writer's events in its own order (seq): its clock may have stepped back.
            rows = conn.exec_driver_sql(
                "SELECT event_id, launch_id, type, occurred_at, payload, writer_id FROM events "
                f"WHERE pushed_at IS NULL AND launch_id IN ({marks}) ORDER BY launch_id, writer_id, seq",
                tuple(lids),
            ).all()
            completed = {
                r[0]
                for r in conn.exec_driver_sql(
                    f"SELECT DISTINCT launch_id FROM events WHERE type = 'completed' AND launch_id IN ({marks})",
                    tuple(lids),
                )
            }
            # Where each launch announced by the inbox ran: its directory, and any it moved to.
            announced: dict[int, set[str]] = {}
            for launch_id, directory in conn.exec_driver_sql(
                f"SELECT launch_id, launch_dir FROM launches WHERE learned_from = 'inbox' AND launch_id IN ({marks}) "
                "UNION ALL SELECT e.launch_id, json_extract(e.payload, '$.launch_dir') FROM events AS e "
                "JOIN launches AS l ON l.launch_id = e.launch_id "
                f"WHERE l.learned_from = 'inbox' AND e.type = 'launch_dir_changed' AND e.launch_id IN ({marks})",
                (*lids, *lids),
            ):
                if directory:
                    announced.setdefault(launch_id, set()).add(directory)
        by_launch: dict[int, dict[str, list[PendingEvent]]] = {}
        for event_id_, launch_id, etype, occurred_at, payload, writer in rows:
            stream = by_launch.setdefault(launch_id, {}).setdefault(writer, [])
            stream.append(PendingEvent(event_id_, etype, occurred_at, json.loads(payload)))
        # Writers of one launch (the runner, its signal handler, `fwspool emit`) interleave by their
        # clocks, but never against their own order: a merge, not a sort.
        return [
            LaunchEvents(
                launch_id,
                list(heapq.merge(*streams.values(), key=_occurred_at))
                if len(streams) > 1
                else [*streams.values()][0],
                launch_id in completed,
                tuple(sorted(announced.get(launch_id, ()))),
            )
            for launch_id, streams in by_launch.items()
        ]

    def mark_pushed(
        self, outcomes: Sequence[tuple[str, str, str | None]], *, done_redo: Sequence[int] = ()
    ) -> None:
        """Record that the LaunchPad acknowledged these events (call only after it did), and drop
        the redo records of the writes that carried them, in the same transaction."""
        if not outcomes and not done_redo:
            return
        now = iso(utcnow())
        with self.transaction() as conn:
            if outcomes:
                conn.execute(
                    events.update()
                    .where(events.c.event_id == bindparam("eid"))
                    .where(events.c.pushed_at.is_(None))
                    .values(
                        pushed_at=now, push_outcome=bindparam("outcome"), push_detail=bindparam("detail")
                    ),
                    [{"eid": e, "outcome": o, "detail": d} for e, o, d in outcomes],
                )
            if done_redo:
                conn.execute(redo.delete().where(redo.c.redo_id.in_(list(done_redo))))

    def identity(self) -> str:
        """This journal's random id, made on first use (names its workflow locks on the LaunchPad)."""
        value = self.get_meta("journal_id")
        if value is None:
            import uuid

            with self.transaction() as conn:
                stmt = sqlite.insert(meta).values(key="journal_id", value=uuid.uuid4().hex)
                conn.execute(stmt.on_conflict_do_nothing())
            value = self.get_meta("journal_id")
        return str(value)

    def save_redo(self, write_set: bytes) -> int:
        """Durably keep a write set about to be sent to the LaunchPad; returns its id."""
        with self.transaction() as conn:
            res = conn.execute(redo.insert().values(created_at=iso(utcnow()), write_set=write_set))
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def pending_redo(self) -> list[tuple[int, bytes]]:
        """Write sets of pushes that died between writing and marking, oldest first."""
        with self.reading() as conn:
            return [
                (r.redo_id, bytes(r.write_set)) for r in conn.execute(redo.select().order_by(redo.c.redo_id))
            ]

    def pending_summary(self) -> tuple[int, str | None]:
        """How many events wait to be pushed, and the oldest one's ingest time."""
        rows = self.query("SELECT count(*) AS n, min(ingested_at) AS oldest FROM pending_events")
        return int(rows[0]["n"]), rows[0]["oldest"]

    def register_offline_runs(self, runs: Sequence[dict[str, Any]]) -> int:
        """Add launches from the LaunchPad's registry of open offline runs; returns how many were new.

        Only fills in what the journal does not know yet, so an idle pass writes nothing.
        """
        if not runs:
            return 0
        known = (
            {
                r["launch_id"]: r
                for r in self.query("SELECT launch_id, fw_id, launch_dir, batch_job_id FROM launches")
            }
            if len(runs) > 500
            else {
                r["launch_id"]: r
                for r in self.query(
                    "SELECT launch_id, fw_id, launch_dir, batch_job_id FROM launches "
                    f"WHERE launch_id IN ({','.join('?' * len(runs))})",
                    tuple(r["launch_id"] for r in runs),
                )
            }
        )
        new = [
            r
            for r in runs
            if r["launch_id"] not in known
            or (known[r["launch_id"]]["launch_dir"] is None and r.get("launch_dir"))
            or (known[r["launch_id"]]["fw_id"] is None and r.get("fw_id") is not None)
            or (known[r["launch_id"]]["batch_job_id"] is None and r.get("batch_job_id"))
        ]
        if not new:
            return 0
        now = iso(utcnow())
        with self.transaction() as conn:
            stmt = sqlite.insert(launches).on_conflict_do_update(
                index_elements=["launch_id"],
                set_={
                    "fw_id": text("coalesce(launches.fw_id, excluded.fw_id)"),
                    "launch_dir": text("coalesce(launches.launch_dir, excluded.launch_dir)"),
                    # The reservation's job; a run's own (its started event) is newer and stays.
                    "batch_job_id": text("coalesce(launches.batch_job_id, excluded.batch_job_id)"),
                },
            )
            conn.execute(
                stmt,
                [
                    {
                        "launch_id": r["launch_id"],
                        "fw_id": r.get("fw_id"),
                        "launch_dir": r.get("launch_dir"),
                        "learned_from": "registry",
                        "first_seen_at": now,
                        "batch_job_id": r.get("batch_job_id"),
                    }
                    for r in new
                ],
            )
            _apply_forget_requests(conn, now)
        return len(new)

    def request_forget(self, fw_ids: Sequence[int], launch_ids: Sequence[int], *, undo: bool = False) -> int:
        """Stop (or, with ``undo``, resume) ingesting and pushing these launches; the LaunchPad's
        offline_runs follow on the next successful push. Returns the number of known launches affected."""
        now = iso(utcnow())
        rows = [("fw_id", v) for v in fw_ids] + [("launch_id", v) for v in launch_ids]
        with self.transaction() as conn:
            for kind, value in rows:
                conn.execute(
                    forget_requests.insert().values(
                        kind=kind, value=value, forget=0 if undo else 1, requested_at=now
                    )
                )
            cond = launches.c.fw_id.in_(list(fw_ids)) | launches.c.launch_id.in_(list(launch_ids))
            res = conn.execute(launches.update().where(cond).values(forgotten_at=None if undo else now))
        return int(res.rowcount)

    def unapplied_forget_requests(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM forget_requests WHERE applied_at IS NULL ORDER BY request_id")

    def mark_forget_applied(self, request_ids: Sequence[int]) -> None:
        if not request_ids:
            return
        with self.transaction() as conn:
            conn.execute(
                forget_requests.update()
                .where(forget_requests.c.request_id.in_(list(request_ids)))
                .values(applied_at=iso(utcnow()))
            )


#: Fill in what an earlier source could not know (fw_id, launch_dir), never overwrite them; the
#: batch job of the newest run wins, and a new job is not "gone" because the old one was.
_LAUNCH_UPSERT = (
    "ON CONFLICT (launch_id) DO UPDATE SET fw_id = coalesce(launches.fw_id, excluded.fw_id), "
    "launch_dir = coalesce(launches.launch_dir, excluded.launch_dir), "
    "batch_gone_at = CASE WHEN excluded.batch_job_id IS NOT NULL "
    "AND excluded.batch_job_id IS NOT launches.batch_job_id THEN NULL ELSE launches.batch_gone_at END, "
    "batch_job_id = coalesce(excluded.batch_job_id, launches.batch_job_id), "
    "batch_system = coalesce(excluded.batch_system, launches.batch_system)"
)


def _apply_forget_requests(conn: Connection, now: str) -> None:
    """Launches learned after a forget are forgotten too: the newest request per key decides."""
    if conn.exec_driver_sql("SELECT 1 FROM forget_requests LIMIT 1").first() is None:
        return  # the common case: nothing was ever forgotten, so no scan of every launch
    conn.exec_driver_sql(
        """
        UPDATE launches SET forgotten_at = ?
        WHERE forgotten_at IS NULL AND (
            (SELECT forget FROM forget_requests WHERE kind = 'fw_id' AND value = launches.fw_id
             ORDER BY request_id DESC LIMIT 1) = 1
            OR (SELECT forget FROM forget_requests WHERE kind = 'launch_id' AND value = launches.launch_id
             ORDER BY request_id DESC LIMIT 1) = 1)
        """,
        (now,),
    )


def _conflicting_events(
    conn: Connection, events: dict[str, list[EventRow]]
) -> list[tuple[str, EventRow, str]]:
    """Spool event rows whose id the journal holds with other content: (path, row, the path the
    journal's copy came from). Only called when a batch had duplicates."""
    ids = [row[0] for rows in events.values() for row in rows if row[8] is not None]
    stored: dict[str, tuple[tuple[Any, ...], str]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for eid, *content, path in conn.exec_driver_sql(
            "SELECT e.event_id, e.launch_id, e.fw_id, e.type, e.occurred_at, e.payload, s.path "
            "FROM events AS e LEFT JOIN sources AS s ON s.source_id = e.source_id "
            f"WHERE e.event_id IN ({','.join('?' * len(chunk))})",
            tuple(chunk),
        ):
            stored[eid] = (tuple(content), path or "a file no longer known")
    out = []
    for path, rows in events.items():
        for row in rows:
            have = stored.get(row[0])
            if (
                row[8] is not None
                and have is not None
                and have[0] != (row[3], row[4], row[5], row[6], row[7])
            ):
                out.append((path, row, have[1]))
    return out


def _source_ids(conn: Connection, paths: Iterable[str]) -> dict[str, int]:
    paths = list(paths)
    ids: dict[str, int] = {}
    for i in range(0, len(paths), 500):
        chunk = paths[i : i + 500]
        sql = f"SELECT path, source_id FROM sources WHERE path IN ({','.join('?' * len(chunk))})"
        ids.update((path, source_id) for path, source_id in conn.exec_driver_sql(sql, tuple(chunk)))
    return ids


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


#: Rows per multi-row INSERT statement, at most (fewer when SQLite allows fewer parameters).
ROWS_PER_INSERT = 2000


def _insert_rows(
    conn: Connection, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]], conflict: str
) -> int:
    """``INSERT INTO table (columns) VALUES (…), (…), … conflict`` for all ``rows``, thousands of
    rows per statement; returns SQLite's change count (rows inserted, or upserted).

    Not ``executemany``: that calls into SQLite once per row and takes the GIL back after each
    call, so while ingest reads the next batch on the main thread, a committer thread would wait
    for the GIL once per row. One statement per few thousand rows runs without the GIL, and costs
    the same in SQLite.
    """
    width = len(columns)
    dbapi = conn.connection.driver_connection
    # SQLite's limit on bound parameters: 999 before SQLite 3.32, 32766 or more since.
    limit = (
        dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if isinstance(dbapi, sqlite3.Connection) else 999
    )
    per = max(1, min(ROWS_PER_INSERT, limit // width))
    changed = 0
    for i in range(0, len(rows), per):
        part = rows[i : i + per]
        sql = _insert_sql(table, columns, len(part), conflict)
        changed += conn.exec_driver_sql(sql, tuple(chain.from_iterable(part))).rowcount
    return changed


@functools.lru_cache(maxsize=32)
def _insert_sql(table: str, columns: tuple[str, ...], n_rows: int, conflict: str) -> str:
    if table not in metadata.tables or not set(columns) <= set(metadata.tables[table].c.keys()):
        raise ValueError(f"not columns of {table}: {columns}")
    row = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(map(_quote, columns))}) VALUES {', '.join([row] * n_rows)} {conflict}"


@functools.lru_cache(maxsize=32)
def _source_upsert(columns: tuple[str, ...]) -> str:
    """The conflict clause of a sources row with these columns: update them (and updated_at) by path."""
    if "path" not in columns:
        raise ValueError("a sources row needs its path")
    update = [c for c in columns if c != "path"] + ["updated_at"]
    return (
        f"ON CONFLICT (path) DO UPDATE SET {', '.join(f'{_quote(c)} = excluded.{_quote(c)}' for c in update)}"
    )


def _sqlite_reason(exc: sa_exc.DBAPIError) -> str:
    """The SQLite message of a wrapped error, e.g. "database or disk is full"."""
    orig = getattr(exc, "orig", None)
    return str(orig) if orig is not None else str(exc).splitlines()[0]


def _occurred_at(event: PendingEvent) -> str:
    return event.occurred_at
