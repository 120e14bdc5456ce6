"""``fwspool forget``: stop ingesting and pushing launches (:meth:`fwspool.journal.Journal.request_forget`)."""

from __future__ import annotations

import click

from fwspool.cli.common import open_journal, reports_errors, warn
from fwspool.cli.options import journal_option, launch_id_option
from fwspool.errors import InputError
from fwspool.journal import Journal
from fwspool.plural import counted

#: The Fireworks a forget names, at most.
_SHOWN = 10


@click.command()
@journal_option
@click.argument("fw_ids", nargs=-1, type=int)
@launch_id_option("Forget this launch id (repeatable).", many=True)
@click.option("--undo", is_flag=True, help="Resume ingesting and pushing them.")
@reports_errors
def forget(
    journal_path: str | None, fw_ids: tuple[int, ...], launch_ids: tuple[int, ...], undo: bool
) -> None:
    """Stop ingesting and pushing these Fireworks' launches (like `lpad forget_offline`).

    Their pending events stay in the journal, visible, unpushed. The LaunchPad's offline_runs
    get deprecated=true on the next successful push, even if the database is down now, and the
    Fireworks stay as they are there for good: `lpad rerun_fws` or `lpad defuse_fws` next. A
    Firework or launch the journal knows nothing of is named in a warning and not forgotten;
    when none is known, nothing is, and the exit code is 66.
    """
    if not fw_ids and not launch_ids:
        raise click.UsageError("name at least one FW_ID or --launch-id")
    with open_journal(journal_path) as journal:
        request = journal.request_forget(fw_ids, launch_ids, undo=undo)
        fireworks = _fireworks_of(journal, fw_ids, launch_ids)
    unknown = [f"Firework {i}" for i in request.unknown_fw_ids]
    unknown += [f"launch {i}" for i in request.unknown_launch_ids]
    if len(unknown) == len(fw_ids) + len(launch_ids):
        raise InputError(
            f"the journal knows no launch of {', '.join(unknown)}: nothing {'resumed' if undo else 'forgotten'} "
            "(a job the journal has not seen yet: `fwspool sync` first; or `lpad forget_offline`)"
        )
    for name in unknown:
        warn(f"warning: the journal knows no launch of {name}: not {'resumed' if undo else 'forgotten'}")
    for line in _what_follows(request.launches, fireworks, undo):
        click.echo(line)


def _fireworks_of(
    journal: Journal, fw_ids: tuple[int, ...], launch_ids: tuple[int, ...]
) -> dict[int, str | None]:
    """The Fireworks of these launches, each with its state as the last push left it (None: never pushed)."""
    found: dict[int, str | None] = {}
    for kind, values in (("fw_id", fw_ids), ("launch_id", launch_ids)):
        if values:
            marks = ",".join("?" * len(values))
            for row in journal.query(
                f"SELECT fw_id, pushed_state FROM launches WHERE {kind} IN ({marks}) ORDER BY launch_id",
                values,
            ):
                if row["fw_id"] is not None:
                    found[row["fw_id"]] = row["pushed_state"]
    return found


def _what_follows(launches: int, fireworks: dict[int, str | None], undo: bool) -> list[str]:
    """What happened, and what happens to the Fireworks on the LaunchPad, with what to run next."""
    ids = sorted(fireworks)
    one = len(ids) == 1
    shown = ", ".join(
        f"{i} ({f'{state} as last pushed' if (state := fireworks[i]) else 'not pushed yet'})"
        for i in ids[:_SHOWN]
    )
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    named = f"{'Firework' if one else 'Fireworks'} {shown}{more}" if ids else "no Firework known yet"
    its, it = ("its", "it") if one else ("their", "them")
    if undo:
        return [
            f"{counted(launches, 'known launch')} resumed: {named}",
            f"the next push applies {its} pending events and marks {its} offline "
            f"{'run' if one else 'runs'} current again",
        ]
    if not ids:
        return [
            f"{counted(launches, 'known launch')} forgotten",
            "the next push marks their offline runs forgotten",
        ]
    which = ",".join(map(str, ids))
    return [
        f"{counted(launches, 'known launch')} forgotten: {named}",
        f"{its} events stay in the journal, unpushed; the next push marks {its} offline {'run' if one else 'runs'} "
        f"forgotten (as `lpad forget_offline`), and the LaunchPad keeps {'the Firework' if one else 'the Fireworks'} "
        f"as {'it is' if one else 'they are'} for good (a RUNNING or RESERVED one never ends): "
        f"`lpad rerun_fws -i {which}` makes {it} READY to run again, `lpad defuse_fws -i {which}` stops {it}; "
        f"`fwspool forget --undo {' '.join(map(str, ids))}` takes this back",
    ]
