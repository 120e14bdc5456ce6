"""``fwspool demo``: the whole path on a throwaway database (:func:`fwspool.demo.run_demo`)."""

from __future__ import annotations

import click

from fwspool.cli.common import reports_errors


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary directory (database, journal, launch dir).")
@reports_errors
def demo(keep: bool) -> None:
    """Show the whole path on a throwaway database: a three-step workflow run offline to its end
    through a database outage, then `fwspool status`, a journal query, and the lines to use next."""
    from fwspool.demo import run_demo

    run_demo(say=click.echo, keep=keep)
