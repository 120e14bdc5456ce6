"""``fwspool ingest``: spool files, offline files, the inbox and the batch system → the journal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fwspool.cli.common import journal_locked, login_loop, open_journal, reports_errors, say, say_on_stderr
from fwspool.cli.options import (
    heartbeat_option,
    ingest_options,
    interval_option,
    journal_option,
    lock_wait_option,
    log_option,
    watch_option,
)

if TYPE_CHECKING:
    from fwspool.daemon import IngestSettings


@click.command()
@journal_option
@watch_option("Keep ingesting until SIGINT/SIGTERM.")
@interval_option("ingest")
@lock_wait_option("ingest")
@log_option
@heartbeat_option
@ingest_options
@reports_errors
def ingest(
    journal_path: str | None,
    watch: bool,
    interval: float | None,
    lock_wait: float,
    log_file: str | None,
    heartbeat: float | None,
    ingest_settings: IngestSettings,
) -> None:
    """Copy new events from spool files (and FireWorks offline files) into the journal.

    Also reads the inbox (launches announced by `fwspool rlaunch`) and asks the batch system,
    once per pass, which jobs of open launches still run (lost runs, reservations to release).
    """
    from fwspool.daemon import startup_line

    # stdout is for the total alone: the lines of --watch passes go to stderr.
    loop = login_loop(watch, interval, log_file, say=say_on_stderr, heartbeat=heartbeat)
    with open_journal(journal_path, create=True) as journal:
        ingester = ingest_settings.ingester(journal)  # --root and -q checked before the lock
        with journal_locked(journal, "ingest", wait=lock_wait):
            if watch:
                say_on_stderr(
                    startup_line(
                        "ingest", journal.path, "no LaunchPad", loop.interval, ingest_settings.describe()
                    )
                )
            total = loop.ingest(ingester)
    if watch and loop.stop.signal_name:
        say_on_stderr(f"stopped by {loop.stop.signal_name}")
    say(total.line())
