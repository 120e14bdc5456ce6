"""``fwspool sync``: ingest, then push (:meth:`fwspool.daemon.Loop.sync`), the login-node daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fwspool.cli.common import journal_locked, login_loop, open_journal, reports_errors, said_stopped, say
from fwspool.cli.options import (
    UplinkOptions,
    heartbeat_option,
    ingest_options,
    interval_option,
    journal_option,
    lock_wait_option,
    log_option,
    uplink_options,
    watch_option,
)
from fwspool.cli.prune import parse_age

if TYPE_CHECKING:
    from fwspool.daemon import IngestSettings


@click.command()
@journal_option
@uplink_options
@watch_option("Run as the login-node daemon until SIGINT/SIGTERM.")
@interval_option("ingest and push")
@lock_wait_option("ingest or push")
@log_option
@click.option(
    "--retain",
    default="30d",
    show_default=True,
    metavar="AGE",
    help="Once a day, drop the pings and checkpoints of launches over for longer than AGE "
    "(30d, 12h...) and quarantined copies as old, as `fwspool prune` does; 0 keeps everything.",
)
@heartbeat_option
@ingest_options
@reports_errors
def sync(
    journal_path: str | None,
    uplink: UplinkOptions,
    watch: bool,
    interval: float | None,
    lock_wait: float,
    log_file: str | None,
    retain: str,
    heartbeat: float | None,
    ingest_settings: IngestSettings,
) -> None:
    """Ingest, then push: the login-node daemon (with --watch) or a cron one-shot.

    With --watch: SIGTERM or SIGINT stops it between batches, SIGUSR1 logs the journal's summary,
    SIGHUP reopens the --log file (logrotate).
    """
    from fwspool.daemon import startup_line

    retain_seconds = parse_age(retain, "--retain")
    uplink.config()  # a mistyped -l is the error to show, not another process's lock
    loop = login_loop(watch, interval, log_file, heartbeat=heartbeat, retain=retain_seconds)
    with open_journal(journal_path, create=True) as journal:
        ingester = ingest_settings.ingester(journal)  # --root and -q checked before the lock too
        with journal_locked(journal, "ingest", "push", wait=lock_wait):
            if watch:
                say(
                    startup_line(
                        "sync",
                        journal.path,
                        uplink.describe(),
                        loop.interval,
                        ingest_settings.describe(),
                        f"retain {retain if retain_seconds else 'everything'}",
                    )
                )
            loop.sync(journal, ingester, uplink.open)
    said_stopped(loop)
