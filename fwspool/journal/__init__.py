"""The login-node journal: a local SQLite database between the spool and the LaunchPad.

The journal is the outbox of fwspool, and where its exactly-once promise is kept:

- :mod:`~fwspool.journal.store` — ingest commits events together with the byte offsets they
  advance, in one transaction, so a crash at any moment leaves each event either fully in (with
  its offset) or fully out (and read again); an event's id makes a record read twice one row.
- :mod:`~fwspool.journal.outbox` — push marks an event pushed only after the database
  acknowledged it, and keeps the redo log of a bulk completion in flight.
- :mod:`~fwspool.journal.views` — what people ask.
- :mod:`~fwspool.journal.database` — the file, its explicit transactions, its locks;
  :mod:`~fwspool.journal.schema` — the tables (``schema/journal.sql`` is generated from them);
  :mod:`~fwspool.journal.rows` — the rows that cross the journal's boundary, by name.

The schema is meant to be read with the plain ``sqlite3`` shell: ISO-8601 UTC text times, JSON
text payloads, and views for the questions an operator asks.
"""

from __future__ import annotations

from fwspool.journal.database import NETWORK_FILESYSTEMS, default_journal_path, filesystem_type
from fwspool.journal.outbox import Outbox
from fwspool.journal.rows import (
    EVENT_ROW_COLUMNS,
    KEEP,
    BatchLaunch,
    BatchView,
    EventRow,
    ForgetRequest,
    IngestBatch,
    IngestCounts,
    KnownSource,
    LaunchRow,
    QuarantinedRecord,
    QuarantineRow,
    SourceRow,
)
from fwspool.journal.schema import SCHEMA_VERSION, schema_sql
from fwspool.journal.store import QUARANTINE_KEEP, IngestStore
from fwspool.journal.views import OperatorViews


class Journal(IngestStore, Outbox, OperatorViews):
    """A journal database. Open with :meth:`open`; close when done (or use ``with``).

    One object with three roles, each in its own module: ingest's store, push's outbox and the
    operator's views, over one connection (:class:`~fwspool.journal.database.JournalDatabase`).
    """


__all__ = [
    "EVENT_ROW_COLUMNS",
    "KEEP",
    "NETWORK_FILESYSTEMS",
    "QUARANTINE_KEEP",
    "SCHEMA_VERSION",
    "BatchLaunch",
    "BatchView",
    "EventRow",
    "ForgetRequest",
    "IngestBatch",
    "IngestCounts",
    "Journal",
    "KnownSource",
    "LaunchRow",
    "QuarantineRow",
    "QuarantinedRecord",
    "SourceRow",
    "default_journal_path",
    "filesystem_type",
    "schema_sql",
]
