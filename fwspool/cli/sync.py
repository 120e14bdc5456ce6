"""``fwspool sync``: ingest, then push (:meth:`fwspool.daemon.Loop.sync`), the login-node daemon."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from fwspool.cli.common import journal_locked, login_loop, open_journal, reports_errors, said_stopped, say
from fwspool.cli.options import (
    UplinkOptions,
    _options_as_one,
    fworker_file_option,
    heartbeat_option,
    idle_exit_option,
    ingest_options,
    interval_option,
    journal_option,
    launch_dir_option,
    lock_wait_option,
    log_option,
    margin_option,
    maxjobs_queue_option,
    pack_option,
    parallel_option,
    pilot_option,
    uplink_options,
    watch_option,
)
from fwspool.cli.prune import parse_age

if TYPE_CHECKING:
    from fwspool.daemon import IngestSettings


@dataclass(frozen=True)
class SubmitOptions:
    """--submit and the options of ``fwspool qlaunch`` it takes, spelled as FireWorks' qlaunch."""

    submit: bool
    fworker_file: str | None
    launch_dir: str
    maxjobs_queue: int
    pack: int
    parallel: int
    margin: float | None
    pilot: str | None
    pool_size: int
    pool_ttl: float
    idle_exit: float

    def submitter(self, uplink: UplinkOptions, queueadapter: str | None, say: Any, warn: Any) -> Any:
        """The daemon's :class:`~fwspool.submit.Submitter`, or None without --submit; the files
        loaded and checked now (a bad queue adapter is the error to show, before the lock)."""
        if not self.submit:
            for name, value, default in (
                ("--maxjobs_queue", self.maxjobs_queue, 0),
                ("--pack", self.pack, 1),
                ("--parallel", self.parallel, 1),
                ("--margin", self.margin, None),
                ("--pilot", self.pilot, None),
            ):
                if value != default:
                    raise click.UsageError(f"{name} applies to --submit")
            return None
        import os

        from fwspool.cli.qlaunch import load_site
        from fwspool.submit import Submitter

        if not queueadapter:
            raise click.UsageError("--submit needs the queue adapter file: -q my_qadapter.yaml")
        site = load_site(
            uplink.launchpad_file,
            self.fworker_file,
            queueadapter,
            None,
            self.pack,
            self.parallel,
            self.margin,
        )
        return Submitter(
            site, os.path.abspath(self.launch_dir), self.maxjobs_queue, say, warn, self._stocker(queueadapter)
        )

    def _stocker(self, queueadapter: str) -> Any:
        """With --pilot: the pool's :class:`~fwspool.stock.Stocker`, the pool made if need be."""
        if self.pilot is None:
            if self.pool_size != DEFAULT_POOL_SIZE:
                raise click.UsageError("--pool-size applies to --pilot")
            return None
        if self.pack != 1:
            raise click.UsageError(
                "--pack and --pilot exclude each other: a pilot takes its launches from the pool"
            )
        from fwspool.pool import Pool
        from fwspool.scheduler import available_systems, system_of_queue_adapter
        from fwspool.stock import Stocker

        scheduler = available_systems().get(system_of_queue_adapter(queueadapter))
        return Stocker(Pool.create(self.pilot), self.pool_size, self.pool_ttl, self.idle_exit, scheduler)


#: Launches a pool holds in stock unless --pool-size says otherwise.
DEFAULT_POOL_SIZE = 4


submit_options = _options_as_one(
    "submit_options",
    lambda: SubmitOptions,
    click.option(
        "--submit",
        is_flag=True,
        help="Also reserve and submit what is READY (as `fwspool qlaunch rapidfire`), with -q's "
        "queue adapter: the whole login-node routine in one process.",
    ),
    fworker_file_option("The FWorker file, as for qlaunch."),
    launch_dir_option(
        "Where the jobs' block_* directories are made (--pilot: POOL/launches).", fireworks_spelling=True
    ),
    maxjobs_queue_option,
    pack_option,
    parallel_option("Fireworks of a job run at once.", 1),
    margin_option("Seconds before the job's end under which no Firework of it starts [default: {default}]."),
    pilot_option(
        "With --submit: keep this pool directory (on the shared filesystem) stocked with "
        "reserved launches and submit pilot jobs (`fwspool rlaunch --pilot POOL`) that run them."
    ),
    click.option(
        "--pool-size",
        type=click.IntRange(min=1),
        default=DEFAULT_POOL_SIZE,
        show_default=True,
        metavar="K",
        help="With --pilot: reserved launches kept in stock.",
    ),
    click.option(
        "--pool-ttl",
        type=click.FloatRange(min=0, min_open=True),
        default=3600.0,
        show_default=True,
        metavar="SECONDS",
        help="With --pilot: stock no pilot took within this long is handed back (READY).",
    ),
    idle_exit_option(),
)


@click.command()
@journal_option
@uplink_options
@watch_option("Run as the login-node daemon until SIGINT/SIGTERM.")
@interval_option("ingest and push")
@lock_wait_option("ingest or push")
@log_option
@click.option(
    "--retain",
    default="30d",
    show_default=True,
    metavar="AGE",
    help="Once a day, drop the pings and checkpoints of launches over for longer than AGE "
    "(30d, 12h...) and quarantined copies as old, as `fwspool prune` does; 0 keeps everything.",
)
@heartbeat_option
@ingest_options
@submit_options
@reports_errors
def sync(
    journal_path: str | None,
    uplink: UplinkOptions,
    watch: bool,
    interval: float | None,
    lock_wait: float,
    log_file: str | None,
    retain: str,
    heartbeat: float | None,
    ingest_settings: IngestSettings,
    submit_options: SubmitOptions,
) -> None:
    """Ingest, then push: the login-node daemon (with --watch) or a cron one-shot.

    With --watch: SIGTERM or SIGINT stops it between batches, SIGUSR1 logs the journal's summary,
    SIGHUP reopens the --log file (logrotate).

    With --submit (and -q), it also reserves and submits what is READY, as `fwspool qlaunch
    rapidfire` does (--pack, --parallel, --margin, --maxjobs_queue): one process for the whole
    routine; a failed submission is one line and retried with backoff; `fwspool status` shows
    what was submitted.
    """
    from fwspool.daemon import startup_line

    retain_seconds = parse_age(retain, "--retain")
    uplink.config()  # a mistyped -l is the error to show, not another process's lock
    loop = login_loop(watch, interval, log_file, heartbeat=heartbeat, retain=retain_seconds)
    submitter = submit_options.submitter(uplink, ingest_settings.queueadapter, loop.say, loop.warn)
    with open_journal(journal_path, create=True) as journal:
        ingester = ingest_settings.ingester(journal)  # --root and -q checked before the lock too
        with journal_locked(journal, "ingest", "push", wait=lock_wait):
            if watch:
                say(
                    startup_line(
                        "sync",
                        journal.path,
                        uplink.describe(),
                        loop.interval,
                        ingest_settings.describe(),
                        f"retain {retain if retain_seconds else 'everything'}",
                        *([submitter.describe()] if submitter is not None else []),
                    )
                )
            loop.sync(journal, ingester, uplink.open, submitter)
    said_stopped(loop)
