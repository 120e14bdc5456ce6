"""The login-node journal: a local SQLite database between the spool and the LaunchPad.

The journal is the outbox of fwspool, and where its exactly-once promise is kept:

- :mod:`~fwspool.journal.store` — ingest commits events together with the byte offsets they
  advance, in one transaction, so a crash at any moment leaves each event either fully in (with
  its offset) or fully out (and read again); an event's id makes a record read twice one row.
- :mod:`~fwspool.journal.outbox` — push marks an event pushed only after the database
  acknowledged it, and keeps the redo log of a bulk completion in flight.
- :mod:`~fwspool.journal.views` — what people ask.
- :mod:`~fwspool.journal.retention` — what can be dropped once it no longer matters, and why
  that cannot bring an event back.
- :mod:`~fwspool.journal.database` — the file, its explicit transactions, its locks;
  :mod:`~fwspool.journal.schema` — the tables (``schema/journal.sql`` is generated from them);
  :mod:`~fwspool.journal.rows` — the rows that cross the journal's boundary, by name (import
  them from there).

The schema is meant to be read with the plain ``sqlite3`` shell: ISO-8601 UTC text times, JSON
text payloads, and views for the questions an operator asks.
"""

from __future__ import annotations

from fwspool.journal.database import NETWORK_FILESYSTEMS, default_journal_path, filesystem_type
from fwspool.journal.outbox import Outbox
from fwspool.journal.retention import LAST_PRUNE_KEY, PRUNED_TYPES, PruneSummary, Retention
from fwspool.journal.schema import SCHEMA_VERSION, schema_sql
from fwspool.journal.store import QUARANTINE_KEEP, IngestStore
from fwspool.journal.views import LAST_PUSH_KEY, JournalSummary, OperatorViews


class Journal(IngestStore, Outbox, OperatorViews, Retention):
    """A journal database. Open with :meth:`open`; close when done (or use ``with``).

    One object with four roles, each in its own module: ingest's store, push's outbox, the
    operator's views and retention, over one connection
    (:class:`~fwspool.journal.database.JournalDatabase`).
    """


__all__ = [
    "LAST_PRUNE_KEY",
    "LAST_PUSH_KEY",
    "NETWORK_FILESYSTEMS",
    "PRUNED_TYPES",
    "QUARANTINE_KEEP",
    "SCHEMA_VERSION",
    "Journal",
    "JournalSummary",
    "PruneSummary",
    "default_journal_path",
    "filesystem_type",
    "schema_sql",
]
