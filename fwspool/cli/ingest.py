"""``fwspool ingest``: spool files, offline files, the inbox and the batch system → the journal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fwspool.cli.common import (
    ingest_options,
    journal_option,
    login_loop,
    open_journal,
    reports_errors,
    say_on_stderr,
)

if TYPE_CHECKING:
    from fwspool.daemon import IngestSettings


@click.command()
@journal_option
@click.option("--watch", is_flag=True, help="Keep ingesting until SIGINT/SIGTERM.")
@click.option(
    "--interval", type=float, default=10.0, show_default=True, help="Seconds between --watch passes."
)
@click.option(
    "--lock-wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for another ingest holding the journal.",
)
@ingest_options
@reports_errors
def ingest(
    journal_path: str | None,
    watch: bool,
    interval: float,
    lock_wait: float,
    ingest_settings: IngestSettings,
) -> None:
    """Copy new events from spool files (and FireWorks offline files) into the journal.

    Also reads the inbox (launches announced by `fwspool rlaunch`) and asks the batch system,
    once per pass, which jobs of open launches still run (lost runs, reservations to release).
    """
    # stdout is for the total alone: the lines of --watch passes go to stderr.
    loop = login_loop(watch, interval, say=say_on_stderr)
    with open_journal(journal_path, create=True) as journal, journal.lock("ingest", wait=lock_wait):
        total = loop.ingest(ingest_settings.ingester(journal))
        click.echo(total.line())
