"""``fwspool forget``: stop ingesting and pushing launches (:meth:`fwspool.journal.Journal.request_forget`)."""

from __future__ import annotations

import click

from fwspool.cli.common import journal_option, open_journal, reports_errors, warn
from fwspool.errors import InputError


@click.command()
@journal_option
@click.argument("fw_ids", nargs=-1, type=int)
@click.option(
    "--launch-id", "launch_ids", multiple=True, type=int, help="Forget this launch id (repeatable)."
)
@click.option("--undo", is_flag=True, help="Resume ingesting and pushing them.")
@reports_errors
def forget(
    journal_path: str | None, fw_ids: tuple[int, ...], launch_ids: tuple[int, ...], undo: bool
) -> None:
    """Stop ingesting and pushing these Fireworks' launches (like `lpad forget_offline`).

    Their pending events stay in the journal, visible, unpushed. The LaunchPad's offline_runs
    get deprecated=true on the next successful push, even if the database is down now. A
    Firework or launch the journal knows nothing of is named in a warning and not forgotten;
    when none is known, nothing is, and the exit code is 66.
    """
    if not fw_ids and not launch_ids:
        raise click.UsageError("name at least one FW_ID or --launch-id")
    with open_journal(journal_path) as journal:
        request = journal.request_forget(fw_ids, launch_ids, undo=undo)
    unknown = [f"Firework {i}" for i in request.unknown_fw_ids]
    unknown += [f"launch {i}" for i in request.unknown_launch_ids]
    if len(unknown) == len(fw_ids) + len(launch_ids):
        raise InputError(
            f"the journal knows no launch of {', '.join(unknown)}: nothing {'resumed' if undo else 'forgotten'} "
            "(a job the journal has not seen yet: `fwspool sync` first; or `lpad forget_offline`)"
        )
    for name in unknown:
        warn(f"warning: the journal knows no launch of {name}: not {'resumed' if undo else 'forgotten'}")
    verb = "resumed" if undo else "forgotten"
    click.echo(f"{request.launches} known launches {verb}; the LaunchPad follows on the next push")
