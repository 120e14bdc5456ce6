"""fwspool: spool-and-forward for FireWorks on clusters whose compute nodes cannot reach MongoDB.

Data flows one way::

    compute node              login node                         anywhere
    SpoolWriter ──spool──▶ Ingester ──▶ Journal (SQLite) ──▶ push ──▶ LaunchPad (MongoDB)

Modules: :mod:`fwspool.events` (the event types), :mod:`fwspool.spool` (record format, writer,
reader), :mod:`fwspool.offline` (FireWorks' own offline files), :mod:`fwspool.journal`,
:mod:`fwspool.ingest`, :mod:`fwspool.rlaunch` (the compute-side runner), :mod:`fwspool.cli`.
"""

__version__ = "0.1.0"
