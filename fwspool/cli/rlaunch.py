"""``fwspool rlaunch``: the compute node's drop-in for FireWorks' ``rlaunch singleshot --offline``."""

from __future__ import annotations

import sys
import textwrap

import click

from fwspool import block
from fwspool import rlaunch as runner
from fwspool.cli.common import reports_errors
from fwspool.cli.options import (
    config_dir_option,
    fw_id_option,
    fworker_file_option,
    group_readable_option,
    idle_exit_option,
    inbox_option,
    launch_dir_option,
    launchpad_file_option,
    margin_option,
    parallel_option,
    pilot_option,
)

#: The words of FireWorks' rlaunch line that ``qlaunch -r`` needs to see, and nothing else.
RLAUNCH_WORDS = {"singleshot", "--offline"}


def _exit_codes() -> str:
    """:data:`fwspool.rlaunch.EXIT_CODES` as a table (``\\b``: click keeps its lines as they are)."""
    rows = (
        textwrap.fill(meaning, width=74, initial_indent=f"{code:<4}", subsequent_indent=" " * 4)
        for code, meaning in runner.EXIT_CODES.items()
    )
    return "\b\n" + "\n".join(rows)


HELP = f"""Run the Firework reserved in a launch directory, recording every state change to the spool.

The queue adapter's rocket_launch line for `qlaunch -r`:
`/path/to/fwspool rlaunch -w my_fworker.yaml singleshot --offline` (qlaunch -r needs the
words `singleshot` and `--offline` to reserve and write FW.json, and appends `--fw_id N`).
Never opens a database connection. rlaunch's -l, -c, --loglvl, -s are accepted so an old line
keeps working.

Exit codes:

{_exit_codes()}
"""


@click.command(help=HELP, context_settings={"ignore_unknown_options": True})
@fworker_file_option(
    "FWorker YAML/JSON, as for `rlaunch -w` [default: as rlaunch, my_fworker.yaml in "
    "the config dir, else FireWorks' FWORKER_LOC].",
)
@config_dir_option("As `rlaunch -c`: where to look for my_fworker.yaml when -w is not given.", hidden=True)
@launchpad_file_option(
    "Accepted for drop-in compatibility with `rlaunch`; never used (no database here).",
    fireworks_spelling=True,
    hidden=True,
)
@click.option("--loglvl", hidden=True, help="Accepted for drop-in compatibility with `rlaunch`; ignored.")
@click.option(
    "-s",
    "--silencer",
    is_flag=True,
    hidden=True,
    help="Accepted for drop-in compatibility with `rlaunch`; ignored.",
)
@launch_dir_option("Directory prepared by `qlaunch -r` (FW.json, FW_offline.json).")
@click.option(
    "--ping-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds between pings [default: FireWorks' PING_TIME_SECS].",
)
@fw_id_option(
    "The Firework id `qlaunch -r` appends to the line; checked against FW.json.", fireworks_spelling=True
)
@inbox_option("Where to announce the launch to the login node")
@click.option(
    "--block",
    "block_dir",
    metavar="DIR",
    default=None,
    help="Run the launches of a block prepared by `fwspool qlaunch --pack` (it appends this option).",
)
@margin_option(
    "With --block: start no launch with less than this many seconds before the job's "
    "deadline (plus the Firework's _fwspool_estimate) [default: the block's, {default}]."
)
@parallel_option("With --block: how many launches run at once [default: the block's, from qlaunch].", None)
@pilot_option(
    "Run launches from this pilot pool until the job's deadline or --idle-exit "
    "(`fwspool sync --watch --submit --pilot POOL` appends it).",
    dest="pilot_pool",
)
@idle_exit_option(None)
@click.option(
    "--walltime",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="With --pilot: the job's walltime, for its deadline (the batch system's end time wins "
    "when earlier).",
)
@group_readable_option
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@reports_errors
def rlaunch(
    fworker_file: str | None,
    config_dir: str | None,
    launchpad_file: str | None,
    loglvl: str | None,
    silencer: bool,
    launch_dir: str,
    ping_seconds: float | None,
    fw_id: int | None,
    inbox_dir: str | None,
    block_dir: str | None,
    margin: float | None,
    parallel: int | None,
    pilot_pool: str | None,
    idle_exit: float | None,
    walltime: float | None,
    spool_mode: int,
    extra: tuple[str, ...],
) -> None:
    unknown = [w for w in extra if w not in RLAUNCH_WORDS]
    if unknown:
        raise click.UsageError(f"unexpected arguments: {' '.join(unknown)}")
    settings = runner.LaunchSettings(
        fworker_file=fworker_file,
        config_dir=config_dir,
        ping_seconds=ping_seconds,
        spool_mode=spool_mode,
        inbox_dir=inbox_dir,
    )
    if pilot_pool is not None:
        from fwspool.pilot import run_pilot

        if fw_id is not None or block_dir is not None:
            raise click.UsageError(
                "--pilot excludes --fw_id and --block: a pilot takes its launches from the pool"
            )
        sys.exit(
            run_pilot(
                pilot_pool, settings, margin=margin, parallel=parallel, idle_exit=idle_exit, walltime=walltime
            )
        )
    if idle_exit is not None or walltime is not None:
        raise click.UsageError("--idle-exit and --walltime apply to a pilot (--pilot POOL)")
    if block_dir is not None:
        if fw_id is not None:
            raise click.UsageError("--fw_id and --block exclude each other: a block names its Fireworks")
        sys.exit(block.run_block(block_dir, settings, margin=margin, parallel=parallel))
    if margin is not None or parallel is not None:
        raise click.UsageError(
            "--margin and --parallel apply to a block (--block DIR) or a pilot (--pilot POOL)"
        )
    sys.exit(runner.run(launch_dir, settings, fw_id=fw_id))
