"""The journal's schema: its tables, views and version, and the upgrade from older versions.

The tables are described once, here, with SQLAlchemy Core; everything else (``schema/journal.sql``,
the database a new journal starts with) is generated from this description, so the documented
schema and the real one cannot drift. The queries themselves are plain SQL text (the other
modules of :mod:`fwspool.journal`): what an operator would type into the ``sqlite3`` shell.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

from fwspool.errors import JournalError

#: ``PRAGMA user_version`` of a journal this code writes.
SCHEMA_VERSION = 6

#: The event types that say how a run went (``blocks`` and ``fwspool status`` read the last one).
RUN_TYPES = ("started", "exited", "completed", "lost", "released")
#: The same, as an SQL list: ``type IN {RUN_TYPES_SQL}``.
RUN_TYPES_SQL = "(" + ", ".join(f"'{t}'" for t in RUN_TYPES) + ")"


@functools.cache
def tables() -> SimpleNamespace:
    """The tables, described with SQLAlchemy Core (``metadata``, ``launches``, ``events``...).

    Built on first use: a new journal, an upgrade, ``schema/journal.sql``. A command that opens a
    journal of this version never imports SQLAlchemy (its import was most of ``fwspool status``'s
    start-up).
    """
    from sqlalchemy import MetaData

    metadata = MetaData()
    return SimpleNamespace(
        metadata=metadata,
        launches=_launches(metadata),
        sources=_sources(metadata),
        events=_events(metadata),
        launch_summary=_launch_summary(metadata),
        **_bookkeeping(metadata),
    )


def _launches(metadata: Any) -> Any:
    """The launches fwspool knows, one row each."""
    from sqlalchemy import CheckConstraint, Column, Integer, Table, Text

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
        # What the last push that applied events of the launch left on the LaunchPad (fwspool.outcomes):
        # the Firework's name and state, what the launch came to and why, and when.
        Column("fw_name", Text),
        Column("pushed_state", Text),
        Column("outcome", Text),
        Column("outcome_detail", Text),
        Column("pushed_state_at", Text),
        # When the LaunchPad confirmed that its launch of this id runs in launch_dir (a registry pull
        # or a push): until then the launch is only what a directory claimed (fwspool.identity).
        Column("confirmed_at", Text),
        # Why the last push left the launch's events pending (not on this LaunchPad yet, a completion
        # waiting for quarantined records...), in words; NULL once they are applied.
        Column("held", Text),
        # When the LaunchPad was seen to have moved past the launch (a rerun, a later launch of its
        # Firework, a released reservation reserved again): history, not attention.
        Column("history_at", Text),
        CheckConstraint(
            "learned_from IN ('spool', 'fw_offline', 'registry', 'inbox')", name="launches_learned_from"
        ),
        CheckConstraint(
            "outcome IS NULL OR outcome IN "
            "('running', 'completed', 'fizzled', 'killed', 'exited', 'lost', 'released', 'superseded')",
            name="launches_outcome",
        ),
    )
    _index_launches(launches)
    return launches


def _index_launches(launches: Any) -> None:
    from sqlalchemy import Index

    # A push finds a Firework's earlier launches (history) and `forget --fw-id` its launches.
    Index("launches_by_fw", launches.c.fw_id)
    # `fwspool status` picks launches by them (schema 6): by outcome, NULL for those no push
    # recorded yet (their events decide), 'running' and the failures (which may need attention);
    # --state by the state the last push left; --since by when fwspool first saw a launch.
    Index("launches_by_outcome", launches.c.outcome)
    Index("launches_by_state", launches.c.pushed_state)
    Index("launches_by_first_seen", launches.c.first_seen_at)
    # --state forgotten: the few launches `fwspool forget` set aside.
    Index("launches_forgotten", launches.c.launch_id, sqlite_where=launches.c.forgotten_at.isnot(None))


def _sources(metadata: Any) -> Any:
    """The files read, one row each, with how far."""
    from sqlalchemy import (
        CheckConstraint,
        Column,
        ForeignKey,
        Integer,
        Table,
        Text,
        text,
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
        # 'pointer': an inbox pointer this journal set aside (it names another LaunchPad's launch).
        CheckConstraint("kind IN ('spool', 'fw_offline', 'fw_ping', 'pointer')", name="sources_kind"),
        CheckConstraint(
            "status IN ('active', 'torn', 'replaced', 'truncated', 'missing', 'refused', 'unreadable', 'stray')",
            name="sources_status",
        ),
    )
    return sources


def _events(metadata: Any) -> Any:
    """The events, one row each."""
    from sqlalchemy import (
        CheckConstraint,
        Column,
        ForeignKey,
        Index,
        Integer,
        Table,
        Text,
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
        # and the event was deliberately not applied; skipped: nothing to apply (notes); stray: its
        # file ran in a directory that is not this LaunchPad's launch of that id (set aside, never
        # applied; fwspool.identity).
        Column("push_outcome", Text),
        Column("push_detail", Text),
        CheckConstraint(
            "push_outcome IS NULL OR push_outcome IN ('applied', 'superseded', 'skipped', 'stray')",
            name="events_push_outcome",
        ),
        # No UNIQUE (writer_id, seq): event_id is "<writer_id>-<seq>", so the primary key already
        # makes each (writer, seq) one row, and a second unique index would only slow every insert.
    )
    Index(
        "events_pending", events.c.launch_id, events.c.occurred_at, sqlite_where=events.c.pushed_at.is_(None)
    )
    Index("events_by_launch", events.c.launch_id, events.c.type)
    return events


def _launch_summary(metadata: Any) -> Any:
    """What status reads instead of the events (fwspool.journal.summary)."""
    from sqlalchemy import (
        Column,
        Index,
        Integer,
        Table,
        Text,
        text,
    )

    # What ``fwspool status`` and the daemon's summary read instead of ``events``: per launch id that
    # has events, their counts by push state, the oldest pending one, the last one, the last run
    # event and the last completion's state. Kept by fwspool.journal.summary in the very transaction
    # that inserts, marks or deletes events: a kill at any moment leaves it exactly as the events
    # are. "Last" is ORDER BY occurred_at DESC, event_id DESC.
    launch_summary = Table(
        "launch_summary",
        metadata,
        Column("launch_id", Integer, primary_key=True, autoincrement=False),
        Column("events", Integer, nullable=False, server_default=text("0")),
        # pushed_at IS NULL; then push_outcome 'applied', 'superseded', 'skipped', 'stray'.
        Column("pending", Integer, nullable=False, server_default=text("0")),
        Column("pushed", Integer, nullable=False, server_default=text("0")),
        Column("superseded", Integer, nullable=False, server_default=text("0")),
        Column("skipped", Integer, nullable=False, server_default=text("0")),
        Column("stray", Integer, nullable=False, server_default=text("0")),
        # min(ingested_at) of its pending events.
        Column("oldest_pending_at", Text),
        Column("last_event", Text),
        Column("last_event_at", Text),
        Column("last_event_id", Text),
        # The last of its RUN_TYPES events, and the state of its last completion (COMPLETED, FIZZLED).
        Column("last_run", Text),
        Column("last_run_at", Text),
        Column("last_run_id", Text),
        Column("completed_state", Text),
        Column("completed_at", Text),
        Column("completed_id", Text),
    )
    # `fwspool status`: the launches whose events wait (few, between two pushes) and --since.
    Index("launch_summary_pending", launch_summary.c.launch_id, sqlite_where=launch_summary.c.pending > 0)
    Index("launch_summary_by_last_event", launch_summary.c.last_event_at)
    return launch_summary


def _bookkeeping(metadata: Any) -> Any:
    """The quarantine, forget requests, the redo log, meta."""
    from sqlalchemy import (
        Column,
        ForeignKey,
        Integer,
        LargeBinary,
        Table,
        Text,
        UniqueConstraint,
    )

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

    return {"quarantine": quarantine, **_requests(metadata)}


def _requests(metadata: Any) -> dict[str, Any]:
    """Forget requests, the redo log, meta."""
    from sqlalchemy import CheckConstraint, Column, Integer, LargeBinary, Table, Text

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
        # deleted with its events' pushed mark: a push killed halfway replays it (launchpad.writeset).
        Column("write_set", LargeBinary, nullable=False),
    )

    meta = Table(
        "meta",
        metadata,
        Column("key", Text, primary_key=True),
        Column("value", Text),
    )
    return {"forget_requests": forget_requests, "redo": redo, "meta": meta}


VIEWS = {
    "pending_events": """
CREATE VIEW IF NOT EXISTS pending_events AS
SELECT e.event_id, e.launch_id, e.fw_id, e.type, e.occurred_at, e.ingested_at, e.payload
FROM events AS e JOIN launches AS l ON l.launch_id = e.launch_id
WHERE e.pushed_at IS NULL AND l.forgotten_at IS NULL
ORDER BY e.launch_id, e.occurred_at, e.event_id""",
    "launch_status": """
CREATE VIEW IF NOT EXISTS launch_status AS
SELECT l.launch_id, l.fw_id, l.fw_name, l.launch_dir, l.learned_from, l.first_seen_at,
       l.pushed_state, l.outcome, l.outcome_detail, l.pushed_state_at,
       l.batch_job_id, l.batch_system, l.batch_gone_at,
       s.last_event, s.last_event_at, coalesce(s.pending, 0) AS pending, s.oldest_pending_at,
       coalesce(s.pushed, 0) AS pushed, coalesce(s.superseded, 0) AS superseded,
       l.forgotten_at IS NOT NULL AS forgotten, l.forgotten_at,
       l.terminal_at, l.held, l.history_at, l.confirmed_at
FROM launches AS l LEFT JOIN launch_summary AS s ON s.launch_id = l.launch_id
ORDER BY l.launch_id""",
    "quarantined": """
CREATE VIEW IF NOT EXISTS quarantined AS
SELECT q.quarantine_id, q.path, q."offset", q.length, q.reason, q.quarantined_at,
       substr(CAST(q.bytes AS TEXT), 1, 80) AS preview
FROM quarantine AS q
ORDER BY q.quarantined_at, q.path, q."offset\"""",
}


def _create(construct: Any) -> str:
    """The SQLite DDL of a table or an index."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    make = CreateIndex if construct.__visit_name__ == "index" else CreateTable
    return str(make(construct).compile(dialect=sqlite.dialect())).strip()


def _indexes(table: Any) -> list[str]:
    """The DDL of a table's indexes, by name."""
    return [_create(index) for index in sorted(table.indexes, key=lambda i: str(i.name))]


def _ddl() -> list[str]:
    """Every CREATE statement of the schema, in dependency order."""
    out = []
    for table in tables().metadata.sorted_tables:
        out += [_create(table), *_indexes(table)]
    out += [ddl.strip() for ddl in VIEWS.values()]
    return out


def schema_sql() -> str:
    """The journal schema as SQLite DDL: the text of ``schema/journal.sql``."""
    parts = [
        "-- fwspool journal schema (generated from fwspool/journal/schema.py; do not edit by hand).\n"
        f"-- PRAGMA user_version = {SCHEMA_VERSION}; page_size = 16384; auto_vacuum = INCREMENTAL; journal_mode = WAL; synchronous = FULL.\n"
    ]
    parts += [ddl + ";\n" for ddl in _ddl()]
    return "\n".join("\n".join(line.rstrip() for line in part.split("\n")) for part in parts)


def create_or_upgrade(
    db: sqlite3.Connection, path: str, summarize: Callable[[sqlite3.Connection], None]
) -> None:
    """Give a new journal the schema, or bring an older one up to :data:`SCHEMA_VERSION`.

    Each step is one IMMEDIATE transaction that re-reads the version first: two processes opening
    a new journal at once create it once.
    """
    if _version(db) == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _version(db)
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {path} has schema version {version}; this fwspool knows {SCHEMA_VERSION}"
            )
        if version == 0:
            for ddl in _ddl():
                db.execute(ddl)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    try:
        if _version(db) in (1, 2):
            _rebuild_launches(db, path)
        if _version(db) == 3:
            _widen_to_4(db, path)
        if _version(db) == 4:
            _summarize_to_5(db, path, summarize)
        if _version(db) == 5:
            _index_to_6(db)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot upgrade journal {path}: {exc}") from exc


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


@contextlib.contextmanager
def _step_from(db: sqlite3.Connection, *versions: int) -> Iterator[bool]:
    """One upgrade step, in one IMMEDIATE transaction that re-reads the version first: yields
    whether this process takes the journal from one of ``versions`` (another may have done it
    meanwhile: then nothing is left to do), commits when the step ends, rolls back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if _version(db) not in versions:
            db.execute("ROLLBACK")
            yield False
            return
        yield True
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _rebuild_launches(db: sqlite3.Connection, path: str) -> None:
    """Bring a journal of schema version 1 or 2 to version 3, keeping every row.

    Version 2 added the batch job columns and ``'inbox'`` to the CHECK of ``learned_from``;
    version 3 what the last push left (``fw_name``, ``pushed_state``, ``outcome``...) and the
    CHECK of ``outcome``. Both are the table ``launches`` only, and SQLite cannot change a CHECK
    in place, so ``launches`` is rebuilt from its current definition the way SQLite's own ALTER
    TABLE documentation does it: foreign keys off (possible only outside a transaction), one
    IMMEDIATE transaction, a foreign-key check before the commit. The views are made anew.
    """
    old = [r[1] for r in db.execute('PRAGMA table_info("launches")')]
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        with _step_from(db, 1, 2) as mine:
            if not mine:
                return
            from sqlalchemy import CheckConstraint, MetaData, Table

            launches = tables().launches
            new_columns = [c.name for c in launches.c if c.name not in _ADDED_IN_4]
            for name in VIEWS:
                db.execute(f"DROP VIEW IF EXISTS {name}")
            # Version 3's launches; _widen_to_4 then takes it to this version's.
            v3 = Table("launches_v3", MetaData(), *(c._copy() for c in launches.c if c.name in new_columns))
            for constraint in launches.constraints:
                if isinstance(constraint, CheckConstraint):
                    v3.append_constraint(CheckConstraint(constraint.sqltext, name=constraint.name))
            db.execute(_create(v3).replace("CREATE TABLE launches_v3 ", "CREATE TABLE launches_new ", 1))
            columns = ", ".join(map(quote, old))
            db.execute(f"INSERT INTO launches_new ({columns}) SELECT {columns} FROM launches")
            db.execute("DROP TABLE launches")
            db.execute("ALTER TABLE launches_new RENAME TO launches")
            problems = db.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise JournalError(f"journal {path}: migration found broken references {problems[:3]}")
            db.execute("PRAGMA user_version = 3")
    finally:
        db.execute("PRAGMA foreign_keys = ON")


#: Columns version 4 added to ``launches`` (at its end, as ALTER TABLE adds them).
_ADDED_IN_4 = ("confirmed_at", "held", "history_at")


def _widen_to_4(db: sqlite3.Connection, path: str) -> None:
    """Bring a journal of schema version 3 to version 4, in place, keeping every row.

    Version 4 knows a launch's identity (fwspool.identity): three new columns of ``launches``
    and an index of its ``fw_id``, and one more value in three CHECKs (``sources.kind`` 'pointer', ``sources.status`` and
    ``events.push_outcome`` 'stray'). The columns are added with ALTER TABLE. A CHECK that only
    admits more values is changed in the stored schema text, the procedure SQLite's ALTER TABLE
    documentation gives for constraint changes that leave the file format alone: copying a
    year's ``events`` table to widen one CHECK would take minutes and double the file. Every row
    already satisfies the wider CHECK, so nothing needs checking but the schema itself
    (``PRAGMA integrity_check`` before the commit). One IMMEDIATE transaction.
    """
    try:
        with _step_from(db, 3) as mine:
            if not mine:
                return
            have = {r[1] for r in db.execute('PRAGMA table_info("launches")')}
            for column in _ADDED_IN_4:
                if column not in have:
                    db.execute(f"ALTER TABLE launches ADD COLUMN {column} TEXT")
            version = int(db.execute("PRAGMA schema_version").fetchone()[0])
            db.execute("PRAGMA writable_schema = ON")
            t = tables()
            for table in (t.launches, t.sources, t.events):
                db.execute(
                    "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                    (_create(table), table.name),
                )
            db.execute(f"PRAGMA schema_version = {version + 1}")
            db.execute("PRAGMA writable_schema = OFF")
            db.execute(_create(next(i for i in t.launches.indexes if i.name == "launches_by_fw")))
            # The views read launch_summary since version 5: _summarize_to_5 makes them anew.
            for name in VIEWS:
                db.execute(f"DROP VIEW IF EXISTS {name}")
            problems = [r[0] for r in db.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise JournalError(f"journal {path}: the upgrade to schema 4 found {problems[:3]}")
            db.execute("PRAGMA user_version = 4")
    finally:
        db.execute("PRAGMA writable_schema = OFF")


def _summarize_to_5(
    db: sqlite3.Connection, path: str, summarize: Callable[[sqlite3.Connection], None]
) -> None:
    """Bring a journal of schema version 4 to version 5, in place, keeping every row.

    Version 5 adds ``launch_summary`` (what ``fwspool status`` reads instead of every event,
    kept by :mod:`fwspool.journal.summary`) and fills it in one pass over ``events``.
    The views are made anew (``launch_status`` reads ``launch_summary``). One IMMEDIATE
    transaction: a kill leaves version 4 as it was. On a journal of 10 million events this pass
    takes a minute or two, once.
    """
    with _step_from(db, 4) as mine:
        if not mine:
            return
        db.execute(_create(tables().launch_summary))  # its indexes: _index_to_6
        summarize(db)
        for name, view in VIEWS.items():
            db.execute(f"DROP VIEW IF EXISTS {name}")
            db.execute(view)
        db.execute("PRAGMA user_version = 5")


def _index_to_6(db: sqlite3.Connection) -> None:
    """Bring a journal of schema version 5 to version 6, in place, keeping every row.

    Version 6 adds the indexes that ``fwspool status`` picks its launches with (``--state``,
    ``--since``, the launches whose events are pending or whose outcome no push recorded), on
    ``launches`` and ``launch_summary`` only: one row per launch, so a few seconds on a year's
    journal. One IMMEDIATE transaction.
    """
    with _step_from(db, 5) as mine:
        if not mine:
            return
        have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        t = tables()
        for table in (t.launches, t.launch_summary):
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                if index.name not in have:
                    db.execute(_create(index))
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def quote(column: str) -> str:
    """An SQL identifier, quoted (``offset`` is a keyword)."""
    return '"' + column.replace('"', '""') + '"'


def columns_of(table: str) -> frozenset[str]:
    """The column names of one of the journal's tables."""
    return frozenset(tables().metadata.tables[table].c.keys())


def in_chunks(values: Sequence[Any], size: int = 500) -> Iterator[tuple[Sequence[Any], str]]:
    """``values`` in chunks of at most ``size``, each with its ``?, ?, …`` placeholder list."""
    for i in range(0, len(values), size):
        chunk = values[i : i + size]
        yield chunk, ",".join("?" * len(chunk))
