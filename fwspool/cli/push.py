"""``fwspool push``: the journal → the LaunchPad (:meth:`fwspool.daemon.Loop.push`)."""

from __future__ import annotations

import click

from fwspool.cli.common import (
    UplinkOptions,
    journal_option,
    login_loop,
    open_journal,
    reports_errors,
    uplink_options,
)


@click.command()
@journal_option
@uplink_options
@click.option(
    "--watch", is_flag=True, help="Keep pushing until SIGINT/SIGTERM; back off while the database is down."
)
@click.option(
    "--interval", type=float, default=30.0, show_default=True, help="Seconds between --watch passes."
)
@reports_errors
def push(journal_path: str | None, uplink: UplinkOptions, watch: bool, interval: float) -> None:
    """Replay the journal's pending events to the LaunchPad."""
    loop = login_loop(watch, interval)
    with open_journal(journal_path) as journal, journal.lock("push"):
        loop.push(journal, uplink.open)
