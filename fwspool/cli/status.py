"""``fwspool status``: the journal, each launch's outcome, the database (:mod:`fwspool.status`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import click

from fwspool.cli.common import open_journal, reports_errors
from fwspool.cli.options import UplinkOptions, fw_id_option, journal_option, uplink_options


def _since(_ctx: Any, _param: Any, value: str | None) -> Any:
    if value is None:
        return None
    from fwspool.events import utcnow
    from fwspool.status import parse_since

    try:
        return parse_since(value, utcnow())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@journal_option
@uplink_options
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable: the same fields, every matching launch."
)
@click.option("--no-check", is_flag=True, help="Do not ask the database (else asked for at most 1 s).")
@click.option("--all", "every", is_flag=True, help="List every launch, not only those that need attention.")
@click.option(
    "--state",
    "states",
    multiple=True,
    metavar="STATE",
    help="Only launches in this Firework state (RUNNING, COMPLETED, FIZZLED...; as last pushed or "
    "as pending events imply) or with this outcome (killed, lost, superseded...); repeatable.",
)
@fw_id_option("Only launches of this Firework; repeatable.", many=True)
@click.option("--pending", is_flag=True, help="Only launches with events waiting to be pushed.")
@click.option(
    "--since",
    callback=_since,
    metavar="WHEN",
    help="Only launches with an event since WHEN: a duration back from now (30m, 6h, 2d, 1w) or an ISO time.",
)
@reports_errors
def status(
    journal_path: str | None,
    uplink: UplinkOptions,
    as_json: bool,
    no_check: bool,
    every: bool,
    states: tuple[str, ...],
    fw_ids: tuple[int, ...],
    pending: bool,
    since: Any,
) -> None:
    """What each launch came to and what waits: the summary, then the launches that need attention.

    Per launch: the Firework's id, name and state on the LaunchPad as last pushed (and the state
    its pending events imply, when it differs), the outcome (completed, fizzled, killed, exited,
    lost, released, superseded, forgotten, running, waiting) and why, the batch job, the last
    event and its age. The summary: counts by state and outcome, the oldest pending event, the
    last successful push, the database.
    """
    from fwspool.status import CHECK_SECONDS, Filters, check_database, collect, render_lines, report_json

    # --json lists every launch (or those the filters pick), as --all does.
    filters = Filters(states, fw_ids, pending, since, every or as_json)
    with open_journal(journal_path) as journal:
        uplink = uplink.or_journals(journal)
        if not no_check:
            uplink.config()  # a launchpad file that is not there is an error, not a status line
        database = None
        if not no_check:
            # Server selection gives up well within the budget, so that its own reason (refused,
            # TLS, credentials) is shown, not only "no answer". pymongo looks again every 0.5 s:
            # a timeout under that ends after 0.5 s, one of 0.5 s sometimes after 1 s.
            quick = dataclasses.replace(uplink, timeout=min(uplink.timeout, 0.4 * CHECK_SECONDS))
            database = check_database(quick.open)
        report = collect(journal, database, filters)
        # Written as it is made (every launch of a year's journal is not one list or string
        # first), while the journal is open: --all reads it as it goes.
        if as_json:
            _echo_chunks(report_json(report))
        else:
            _echo_chunks(line + "\n" for line in render_lines(report, filters))


def _echo_chunks(parts: Iterable[str], end: str = "", size: int = 1 << 16) -> None:
    """Echo ``parts`` in pieces of about ``size`` characters, as they come."""
    buffer: list[str] = []
    held = 0
    for part in parts:
        buffer.append(part)
        held += len(part)
        if held >= size:
            click.echo("".join(buffer), nl=False)
            buffer, held = [], 0
    click.echo("".join(buffer) + end, nl=False)
