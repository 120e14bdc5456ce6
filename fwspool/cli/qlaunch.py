"""``fwspool qlaunch``: FireWorks' ``qlaunch -r`` with many Fireworks per batch job (``--pack K``)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from fwspool.cli.common import reports_errors, say
from fwspool.cli.options import (
    config_dir_option,
    fworker_file_option,
    idle_exit_option,
    launch_dir_option,
    launchpad_file_option,
    margin_option,
    maxjobs_queue_option,
    pack_option,
    parallel_option,
    pilot_option,
    timeout_option,
)
from fwspool.errors import ConfigError, InputError, UplinkUnavailable
from fwspool.plural import counted

if TYPE_CHECKING:
    from fwspool import qlaunch as packing

HELP = """Reserve Fireworks and submit them to the batch system, K per job (login node).

As FireWorks' `qlaunch -r` (reservation mode, implied; `-r` is accepted), with the same -l, -w,
-q and -c, and the `singleshot` and `rapidfire` words; `--pack K` puts up to K Fireworks in each
job, under one block_* directory (one launcher_* directory each), and `--parallel P` runs P of
them at once. The queue adapter's rocket_launch line is the `fwspool rlaunch ... singleshot
--offline` line of a single launch: fwspool qlaunch appends `--block DIR`.
Fireworks whose _queueadapter settings differ go in separate jobs. A failed submission hands
its reservations back.

Example: fwspool qlaunch -r -l my_launchpad.yaml -q my_qadapter.yaml --pack 25 --parallel 4
rapidfire --nlaunches 3
"""


@dataclass(slots=True)
class Site:
    """The files FireWorks' qlaunch would read, loaded."""

    launchpad: Any
    fworker: Any
    qadapter: Any
    pack: int
    parallel: int
    margin: float | None

    def packing(self) -> dict[str, Any]:
        """What :func:`fwspool.qlaunch.submit_pack` and ``rapidfire`` take from the site."""
        return {
            "launchpad": self.launchpad,
            "fworker": self.fworker,
            "qadapter": self.qadapter,
            "pack": self.pack,
            "parallel": self.parallel,
            "margin": self.margin,
        }


def _config_file(given: str | None, config_dir: str | None, name: str, fallback: str | None) -> str | None:
    """As FireWorks' qlaunch finds a file: the option, else ``name`` in the config dir, else its
    FW_config location."""
    from fireworks import fw_config

    if given:
        return given
    in_dir = os.path.join(config_dir or fw_config.CONFIG_FILE_DIR, name)
    return in_dir if os.path.exists(in_dir) else fallback


def _load(
    launchpad_file: str | None, fworker_file: str | None, qadapter_file: str | None, config_dir: str | None
) -> tuple[Any, Any, Any]:
    from fireworks import fw_config
    from fireworks.core.launchpad import LaunchPad
    from fireworks.utilities.fw_serializers import load_object_from_file

    from fwspool.rlaunch import read_fworker

    lp_path = _config_file(launchpad_file, config_dir, "my_launchpad.yaml", fw_config.LAUNCHPAD_LOC)
    q_path = _config_file(qadapter_file, config_dir, "my_qadapter.yaml", fw_config.QUEUEADAPTER_LOC)
    w_path = _config_file(fworker_file, config_dir, "my_fworker.yaml", fw_config.FWORKER_LOC)
    if not q_path:
        raise InputError("no queue adapter file: give -q FILE (as for FireWorks' qlaunch)")
    for what, path in (("launchpad", lp_path), ("queue adapter", q_path)):
        if path and not os.path.exists(path):
            raise InputError(f"{what} file {path} does not exist")
    try:
        launchpad = LaunchPad.from_file(lp_path) if lp_path else LaunchPad()
    except Exception as exc:
        raise ConfigError(f"launchpad file {lp_path} is unusable: {exc}") from exc
    try:
        qadapter = load_object_from_file(q_path)
    except Exception as exc:
        raise ConfigError(f"queue adapter file {q_path} is unusable: {exc}") from exc
    from fwspool import qlaunch as packing  # FireWorks' queue side: only when submitting

    packing.check_rocket_launch(qadapter, q_path)
    return launchpad, read_fworker(w_path), qadapter


def _database_errors(func: Any) -> Any:
    """An unreachable database is one line and exit 75, as for `fwspool push`."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pymongo.errors import ConnectionFailure

        try:
            return func(*args, **kwargs)
        except ConnectionFailure as exc:
            raise UplinkUnavailable(f"cannot reach MongoDB: {str(exc).splitlines()[0][:200]}") from exc

    return wrapper


@click.group(help=HELP)
@click.option("-r", "--reserve", is_flag=True, help="Accepted as FireWorks' qlaunch has it: always implied.")
@launchpad_file_option("The launchpad file, as for qlaunch.", fireworks_spelling=True)
@fworker_file_option("The FWorker file, as for qlaunch.")
@click.option(
    "-q",
    "--queueadapter_file",
    "--queueadapter-file",
    "qadapter_file",
    metavar="FILE",
    help="The queue adapter file, as for qlaunch.",
)
@config_dir_option("Where to look for my_*.yaml, as for qlaunch.")
@pack_option
@parallel_option("Fireworks of a job run at once.", 1)
@margin_option("Seconds before the job's end under which no Firework of it starts [default: {default}].")
@click.pass_context
def qlaunch(
    ctx: click.Context,
    reserve: bool,
    launchpad_file: str | None,
    fworker_file: str | None,
    qadapter_file: str | None,
    config_dir: str | None,
    pack: int,
    parallel: int,
    margin: float | None,
) -> None:
    ctx.obj = (launchpad_file, fworker_file, qadapter_file, config_dir, pack, parallel, margin)


def load_site(
    launchpad_file: str | None,
    fworker_file: str | None,
    qadapter_file: str | None,
    config_dir: str | None,
    pack: int = 1,
    parallel: int = 1,
    margin: float | None = None,
) -> Site:
    """The files FireWorks' qlaunch would read, found and loaded as it finds them (also for
    ``fwspool sync --watch --submit``)."""
    launchpad, fworker, qadapter = _load(launchpad_file, fworker_file, qadapter_file, config_dir)
    return Site(launchpad, fworker, qadapter, pack, parallel, margin)


def _site(ctx: click.Context) -> Site:
    return load_site(*ctx.obj)


@qlaunch.command(help="Submit one job with up to --pack Fireworks (--pilot: one pilot job for a pool).")
@launch_dir_option("Where the block_* directory is made.", fireworks_spelling=True)
@pilot_option(
    "Submit one pilot job (`fwspool rlaunch --pilot POOL`) for this pool instead: it runs "
    "what `fwspool sync --watch --submit --pilot POOL` stocks there."
)
@idle_exit_option()
@click.pass_context
@reports_errors
@_database_errors
def singleshot(ctx: click.Context, launch_dir: str, pilot: str | None, idle_exit: float) -> None:
    from fwspool import qlaunch as packing

    site = _site(ctx)
    if pilot is not None:
        from fwspool.pool import Pool
        from fwspool.stock import submit_pilot

        if site.pack != 1:
            raise click.UsageError(
                "--pack and --pilot exclude each other: a pilot takes its launches from the pool"
            )
        submit_pilot(site, Pool.create(pilot), idle_exit, say)
        return
    job = packing.submit_pack(launch_root=launch_dir, say=say, **site.packing())
    if job is None:
        say("fwspool qlaunch: no READY Firework to submit")


@qlaunch.command(help="Submit packed jobs while Fireworks are READY, as qlaunch rapidfire.")
@launch_dir_option("Where the block_* directories are made.", fireworks_spelling=True)
@click.option(
    "--nlaunches",
    default="0",
    show_default=True,
    help="Jobs to submit; 0: until nothing is READY or WAITING; 'infinite'.",
)
@maxjobs_queue_option
@click.option(
    "--sleep",
    "sleep_seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds between rounds [default: FireWorks' RAPIDFIRE_SLEEP_SECS].",
)
@timeout_option(
    "Stop submitting after this many seconds (0: never, as qlaunch).", None, click.FloatRange(min=0)
)
@click.pass_context
@reports_errors
@_database_errors
def rapidfire(
    ctx: click.Context,
    launch_dir: str,
    nlaunches: str,
    maxjobs_queue: int,
    sleep_seconds: float | None,
    timeout: float | None,
) -> None:
    if nlaunches == "infinite":
        count = -1
    elif nlaunches.isdigit():
        count = int(nlaunches)
    else:
        raise click.BadParameter("a number of jobs, or 'infinite'", param_hint="--nlaunches")
    from fwspool import qlaunch as packing

    site = _site(ctx)
    jobs: list[packing.PackJob] = []
    try:
        packing.rapidfire(
            launch_root=launch_dir,
            nlaunches=count,
            maxjobs_queue=maxjobs_queue,
            sleep_seconds=sleep_seconds,
            timeout=timeout,
            say=say,
            submitted=jobs,
            **site.packing(),
        )
    except KeyboardInterrupt:
        # Ctrl-C, most likely while it waits: a reservation under way was handed back.
        say(f"fwspool qlaunch: stopped by SIGINT: {_submitted(jobs)}")
        sys.exit(130)
    say(f"fwspool qlaunch: {_submitted(jobs)}")


def _submitted(jobs: list[packing.PackJob]) -> str:
    fireworks = sum(len(j.launches) for j in jobs)
    return f"{counted(len(jobs), 'job')}, {counted(fireworks, 'Firework')} submitted"
