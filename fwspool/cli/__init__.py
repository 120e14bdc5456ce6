"""The ``fwspool`` command line: a thin layer over the documented Python API.

One module per command (parse the options, call the API, print); :mod:`fwspool.cli.common` holds
what they share, among it how an error becomes one line and an exit code (docs/commands.md, "Exit codes").
"""

from __future__ import annotations

import warnings

import click

from fwspool import __version__
from fwspool.cli import (
    common,
    demo,
    doctor,
    emit,
    forget,
    ingest,
    prune,
    push,
    qlaunch,
    rlaunch,
    status,
    sync,
)
from fwspool.log import LOG, silence_fireworks_import_warnings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fwspool")
def main() -> None:
    """Spool-and-forward for FireWorks on clusters whose compute nodes cannot reach the database.

    Compute nodes append events to spool files (`fwspool rlaunch`, `fwspool emit`); the login node
    copies them into a local journal (`fwspool ingest`) and replays it to the LaunchPad.
    """
    warnings.showwarning = common.show_warning
    LOG.reset()
    silence_fireworks_import_warnings()


for _command in (
    rlaunch.rlaunch,
    qlaunch.qlaunch,
    emit.emit,
    ingest.ingest,
    push.push,
    sync.sync,
    prune.prune,
    forget.forget,
    status.status,
    doctor.doctor,
    demo.demo,
):
    main.add_command(_command)
