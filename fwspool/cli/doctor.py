"""``fwspool doctor``: parse, run the checklist (:func:`fwspool.doctor.run_checks`), print a line per check."""

from __future__ import annotations

import sys

import click

from fwspool.cli.common import reports_errors
from fwspool.cli.options import (
    UplinkOptions,
    inbox_option,
    journal_option,
    queueadapter_option,
    root_option,
    uplink_options,
)


@click.command()
@journal_option
@uplink_options
@queueadapter_option("The queue adapter file `qlaunch -r` uses [default: as qlaunch, my_qadapter.yaml here].")
@inbox_option("Where `fwspool rlaunch` announces launches")
@root_option("A tree `fwspool ingest --root` will scan (repeatable).", metavar="DIR")
@reports_errors
def doctor(
    journal_path: str | None,
    uplink: UplinkOptions,
    queueadapter: str | None,
    inbox_dir: str | None,
    roots: tuple[str, ...],
) -> None:
    """Check the set-up before the first job: one line per check, ✓ or ✗ with the fix.

    The launchpad file parses and its database answers and is a LaunchPad; the journal is on
    local disk, readable by you alone; the queue adapter's rocket_launch line works with
    `qlaunch -r` and names an fwspool the batch job will find; the inbox and the --root trees are
    readable; the batch system answers. Exits 1 when any check fails. Writes nothing.
    """
    from fwspool.doctor import DoctorInputs, run_checks

    checks = run_checks(
        DoctorInputs(
            launchpad_file=uplink.launchpad_file,
            uri=uplink.uri,
            name=uplink.name,
            timeout=uplink.timeout,
            queueadapter=queueadapter,
            journal=journal_path,
            inbox=inbox_dir,
            roots=roots,
        )
    )
    for check in checks:
        click.echo(check.line())
    failures = sum(1 for check in checks if check.failed)
    if failures:
        click.echo(f"{failures} of {len(checks)} checks failed", err=True)
        sys.exit(1)
