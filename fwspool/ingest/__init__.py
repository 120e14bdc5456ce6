"""Ingest: copy new events from spool files and FireWorks offline files into the journal.

- :mod:`~fwspool.ingest.ingester` — one pass: which files, in which order, the inbox;
- :mod:`~fwspool.ingest.spool_file` — one spool file, from its committed offset;
- :mod:`~fwspool.ingest.offline_file` — one FireWorks offline job, read whole;
- :mod:`~fwspool.ingest.batches` — the batch being built and the thread that commits it;
- :mod:`~fwspool.ingest.scheduler_check` — what the batch system says: lost runs, released reservations.
"""

from __future__ import annotations

from fwspool.config import DEFAULT_LOST_AFTER
from fwspool.ingest.batches import IngestSummary
from fwspool.ingest.ingester import Ingester

__all__ = ["DEFAULT_LOST_AFTER", "IngestSummary", "Ingester"]
