"""``fwspool status``: the journal and the database, for people (:mod:`fwspool.status`)."""

from __future__ import annotations

import json

import click

from fwspool.cli.common import UplinkOptions, journal_option, open_journal, reports_errors, uplink_options


@click.command()
@journal_option
@uplink_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-check", is_flag=True, help="Do not try to reach the database.")
@reports_errors
def status(journal_path: str | None, uplink: UplinkOptions, as_json: bool, no_check: bool) -> None:
    """Per launch: last event, pending, pushed, superseded, forgotten; totals; the database."""
    from fwspool.status import collect, render

    with open_journal(journal_path) as journal:
        report = collect(journal, None if no_check else uplink.open)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        click.echo(render(report))
