"""``fwspool sync``: ingest, then push (:meth:`fwspool.daemon.Loop.sync`), the login-node daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fwspool.cli.common import (
    UplinkOptions,
    ingest_options,
    journal_option,
    login_loop,
    open_journal,
    reports_errors,
    uplink_options,
)

if TYPE_CHECKING:
    from fwspool.daemon import IngestSettings


@click.command()
@journal_option
@uplink_options
@click.option("--watch", is_flag=True, help="Run as the login-node daemon until SIGINT/SIGTERM.")
@click.option("--interval", type=float, default=30.0, show_default=True, help="Seconds between passes.")
@ingest_options
@reports_errors
def sync(
    journal_path: str | None,
    uplink: UplinkOptions,
    watch: bool,
    interval: float,
    ingest_settings: IngestSettings,
) -> None:
    """Ingest, then push: the login-node daemon (with --watch) or a cron one-shot."""
    loop = login_loop(watch, interval)
    with open_journal(journal_path, create=True) as journal, journal.lock("ingest"), journal.lock("push"):
        loop.sync(journal, ingest_settings.ingester(journal), uplink.open)
