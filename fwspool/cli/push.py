"""``fwspool push``: the journal → the LaunchPad (:meth:`fwspool.daemon.Loop.push`)."""

from __future__ import annotations

import click

from fwspool.cli.common import journal_locked, login_loop, open_journal, reports_errors, said_stopped, say
from fwspool.cli.options import (
    UplinkOptions,
    heartbeat_option,
    interval_option,
    journal_option,
    lock_wait_option,
    log_option,
    uplink_options,
    watch_option,
)


@click.command()
@journal_option
@uplink_options
@watch_option("Keep pushing until SIGINT/SIGTERM; back off while the database is down.")
@interval_option("push")
@lock_wait_option("push")
@log_option
@heartbeat_option
@reports_errors
def push(
    journal_path: str | None,
    uplink: UplinkOptions,
    watch: bool,
    interval: float | None,
    lock_wait: float,
    log_file: str | None,
    heartbeat: float | None,
) -> None:
    """Replay the journal's pending events to the LaunchPad."""
    from fwspool.daemon import startup_line

    uplink.config()  # a mistyped -l is the error to show, not another process's lock
    loop = login_loop(watch, interval, log_file, heartbeat=heartbeat)
    with open_journal(journal_path) as journal, journal_locked(journal, "push", wait=lock_wait):
        if watch:
            say(startup_line("push", journal.path, uplink.describe(), loop.interval))
        loop.push(journal, uplink.open)
    said_stopped(loop)
