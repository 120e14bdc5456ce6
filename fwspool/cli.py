"""The ``fwspool`` command line: a thin layer over the documented Python API.

Every error a user can cause is a :class:`~fwspool.errors.FwspoolError`: one line on stderr,
``fwspool: <message>``, and its documented exit code (README, "Exit codes").
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click
import msgspec

from fwspool import __version__
from fwspool.config import redact
from fwspool.errors import EX_SOFTWARE, DataError, FwspoolError, InputError
from fwspool.events import EVENT_CLASSES, Event, utcnow
from fwspool.journal import Journal, default_journal_path

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(func: F) -> F:
    """Turn FwspoolError into one line and an exit code; let bugs show their traceback.

    Everything printed passes through :func:`fwspool.config.redact`, which knows every secret
    this process has seen: a message or traceback that quotes a password shows ``***``.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FwspoolError as exc:
            click.echo(f"fwspool: {redact(exc.message)}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            # Disk full or a read-only filesystem where fwspool writes: still one line.
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(redact(f"fwspool: {exc.strerror or exc}{where}"), err=True)
            sys.exit(EX_SOFTWARE if exc.errno is None else 74)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception:
            import traceback

            click.echo(redact(f"fwspool: internal error, please report:\n{traceback.format_exc()}"), err=True)
            sys.exit(EX_SOFTWARE)

    return wrapper  # type: ignore[return-value]


_warned: set[str] = set()


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: Any = None,
) -> None:
    """Python warnings (pymongo's about URI options...) as one redacted line each, once."""
    text = redact(str(message)).splitlines()[0] if str(message) else category.__name__
    if text not in _warned:
        _warned.add(text)
        click.echo(f"fwspool: warning: {text}", err=True)


def trust_group_option(func: F) -> F:
    """--trust-group GROUP: also believe spool and offline files owned by this group."""

    def to_gid(_ctx: Any, _param: Any, value: str | None) -> int | None:
        if not value:
            return None
        from fwspool.trust import group_id

        try:
            return group_id(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option(
        "--trust-group",
        "trust_group",
        envvar="FWSPOOL_TRUST_GROUP",
        default=None,
        metavar="GROUP",
        callback=to_gid,
        help="Also accept spool and FireWorks offline files owned by this group "
        "[env FWSPOOL_TRUST_GROUP; default: only files owned by you].",
    )(func)


def group_readable_option(func: F) -> F:
    return click.option(
        "--group-readable",
        is_flag=True,
        envvar="FWSPOOL_GROUP_READABLE",
        help="Create spool files with mode 0640 instead of 0600, for an ingest run by another "
        "member of the file's group (with --trust-group) [env FWSPOOL_GROUP_READABLE=1].",
    )(func)


journal_option = click.option(
    "--journal",
    "journal_path",
    envvar="FWSPOOL_JOURNAL",
    default=None,
    metavar="PATH",
    help=f"Journal database on the login node's local disk [env FWSPOOL_JOURNAL; default {default_journal_path()}].",
)


root_option = click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Also scan this tree for spool files and FireWorks offline jobs (repeatable).",
)


def batch_options(func: F) -> F:
    """-q/--queueadapter, --lost-after, --inbox: what ingest learns beyond the spool files."""
    func = click.option(
        "--inbox",
        "inbox_dir",
        envvar="FWSPOOL_INBOX",
        default=None,
        metavar="DIR",
        help="Where `fwspool rlaunch` announces launches [env FWSPOOL_INBOX; default ~/.fwspool/inbox].",
    )(func)
    func = click.option(
        "--lost-after",
        type=click.FloatRange(min=0),
        default=300.0,
        show_default=True,
        metavar="SECONDS",
        help="How long a batch job must have been gone before its launch counts as lost "
        "(or, never started, its reservation is released).",
    )(func)
    func = click.option(
        "-q",
        "--queueadapter",
        "queueadapter",
        default=None,
        metavar="FILE",
        help="The queue adapter file `qlaunch` uses: which batch system to ask about jobs "
        "[default: each launch's own, from its started event or FW_submit.script].",
    )(func)
    return func


def make_ingester(
    journal: Journal,
    *,
    roots: tuple[str, ...],
    trust_group: int | None,
    queueadapter: str | None,
    lost_after: float,
    inbox_dir: str | None,
    max_record: int | None = None,
) -> Any:
    from fwspool.batch import available_systems, system_of_queue_adapter
    from fwspool.inbox import default_inbox
    from fwspool.ingest import Ingester
    from fwspool.spool import DEFAULT_MAX_RECORD

    return Ingester(
        journal,
        roots=roots,
        max_record=max_record or DEFAULT_MAX_RECORD,
        trust_group=trust_group,
        inbox_dir=inbox_dir or default_inbox(),
        batch_systems=available_systems(),
        default_batch_system=system_of_queue_adapter(queueadapter) if queueadapter else None,
        lost_after=lost_after,
    )


def open_journal(path: str | None) -> Journal:
    journal = Journal.open(path)
    for warning in journal.warnings:
        click.echo(f"fwspool: warning: {warning}", err=True)
    return journal


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fwspool")
def main() -> None:
    """Spool-and-forward for FireWorks on clusters whose compute nodes cannot reach the database.

    Compute nodes append events to spool files (`fwspool rlaunch`, `fwspool emit`); the login node
    copies them into a local journal (`fwspool ingest`) and replays it to the LaunchPad.
    """
    warnings.showwarning = show_warning


@main.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "-w",
    "--fworker-file",
    "--fworker_file",
    "fworker_file",
    metavar="FILE",
    help="FWorker YAML/JSON, as for `rlaunch -w` [default: as rlaunch, my_fworker.yaml in "
    "the config dir, else FireWorks' FWORKER_LOC].",
)
@click.option(
    "-c",
    "--config-dir",
    "--config_dir",
    "config_dir",
    metavar="DIR",
    hidden=True,
    help="As `rlaunch -c`: where to look for my_fworker.yaml when -w is not given.",
)
@click.option(
    "-l",
    "--launchpad-file",
    "--launchpad_file",
    "launchpad_file",
    metavar="FILE",
    hidden=True,
    help="Accepted for drop-in compatibility with `rlaunch`; never used (no database here).",
)
@click.option("--loglvl", hidden=True, help="Accepted for drop-in compatibility with `rlaunch`; ignored.")
@click.option(
    "-s",
    "--silencer",
    is_flag=True,
    hidden=True,
    help="Accepted for drop-in compatibility with `rlaunch`; ignored.",
)
@click.option(
    "--launch-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory prepared by `qlaunch -r` (FW.json, FW_offline.json).",
)
@click.option(
    "--ping-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds between pings [default: FireWorks' PING_TIME_SECS].",
)
@click.option(
    "--fw_id",
    "--fw-id",
    "fw_id",
    type=int,
    default=None,
    help="The Firework id `qlaunch -r` appends to the line; checked against FW.json.",
)
@click.option(
    "--inbox",
    "inbox_dir",
    envvar="FWSPOOL_INBOX",
    default=None,
    metavar="DIR",
    help="Where to announce the launch to the login node [env FWSPOOL_INBOX; default ~/.fwspool/inbox].",
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
    group_readable: bool,
    extra: tuple[str, ...],
) -> None:
    """Run the Firework reserved in a launch directory, recording every state change to the spool.

    The queue adapter's rocket_launch line for `qlaunch -r`:
    `/path/to/fwspool rlaunch -w my_fworker.yaml singleshot --offline` (qlaunch -r needs the
    words `singleshot` and `--offline` to reserve and write FW.json, and appends `--fw_id N`).
    Never opens a database connection. rlaunch's -l, -c, --loglvl, -s are accepted so an old line
    keeps working. Exit codes: README, "Exit codes".
    """
    from fwspool import rlaunch as runner

    allowed = {"singleshot", "--offline"}
    unknown = [w for w in extra if w not in allowed]
    if unknown:
        raise click.UsageError(f"unexpected arguments: {' '.join(unknown)}")
    code = runner.run(
        launch_dir,
        fworker_file=fworker_file,
        config_dir=config_dir,
        ping_seconds=ping_seconds,
        spool_mode=0o640 if group_readable else 0o600,
        fw_id=fw_id,
        inbox_dir=inbox_dir,
    )
    sys.exit(code)


@main.command()
@click.option(
    "--launch-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The launch directory (its FW_offline.json gives the launch id).",
)
@click.option("--launch-id", type=int, default=None, help="Launch id, if there is no FW_offline.json.")
@click.option(
    "--fw-id",
    type=int,
    default=None,
    help="Firework id to record with the event [default: the fw_id in the launch dir's FW.json].",
)
@click.option(
    "--data", "data_json", default=None, metavar="JSON", help="The event's fields as a JSON object."
)
@group_readable_option
@click.argument("event_type", type=click.Choice(sorted(EVENT_CLASSES)))
@reports_errors
def emit(
    launch_dir: str,
    launch_id: int | None,
    fw_id: int | None,
    data_json: str | None,
    group_readable: bool,
    event_type: str,
) -> None:
    """Append one event to the spool from a shell job script.

    Times left out are now (UTC): `fwspool emit ping`; `fwspool emit completed --data
    '{"state": "COMPLETED", "action": {"stored_data": {"energy": -1.5}}}'`; `fwspool emit note
    --data '{"step": "relaxed"}'`.
    """
    from fwspool.offline import read_fw_id
    from fwspool.rlaunch import read_launch_id
    from fwspool.spool import DEFAULT_MAX_RECORD, SpoolWriter

    launch_dir = os.path.abspath(launch_dir)
    if not os.path.isdir(launch_dir):
        raise InputError(f"launch directory {launch_dir} does not exist")
    if launch_id is None:
        launch_id = read_launch_id(launch_dir)
    if fw_id is None:
        # FW.json is written at reservation (`qlaunch -r`); without it the event has no fw_id.
        fw_id = read_fw_id(launch_dir, DEFAULT_MAX_RECORD)
    event = build_event(event_type, data_json)
    with SpoolWriter(launch_dir, launch_id, fw_id, mode=0o640 if group_readable else 0o600) as writer:
        record = writer.append(event)
    click.echo(f"{event_type} event {record.writer}-{record.seq} written to {writer.path}")


def build_event(event_type: str, data_json: str | None) -> Event:
    """An event of ``event_type`` from ``--data`` JSON, filling in missing times with now."""
    try:
        data = json.loads(data_json) if data_json else {}
    except json.JSONDecodeError as exc:
        raise DataError(f"--data is not valid JSON: {exc}") from exc
    if event_type == "note":
        return EVENT_CLASSES["note"](data=data)
    if not isinstance(data, dict):
        raise DataError("--data must be a JSON object")
    now = utcnow()
    defaults = {"started": "started_on", "ping": "ping_time", "completed": "completed_on"}
    if event_type in defaults:
        data.setdefault(defaults[event_type], now.isoformat())
    if event_type == "checkpoint":
        data.setdefault("ping_time", now.isoformat())
    if event_type == "started":
        from fireworks.utilities.fw_utilities import get_my_host, get_my_ip

        # As FireWorks' checkout_fw (and `fwspool rlaunch`): the node this runs on.
        data.setdefault("host", get_my_host())
        data.setdefault("ip", get_my_ip())
    if event_type == "completed":
        data["action"] = complete_action(data.get("action", {}))
    try:
        return msgspec.convert(data, EVENT_CLASSES[event_type], strict=False)
    except msgspec.ValidationError as exc:
        raise DataError(f"--data does not fit a {event_type} event: {exc}") from exc


def complete_action(action: Any) -> dict[str, Any]:
    """A whole FWAction dict from a partial one (``{"stored_data": {...}}``): the fields left out
    take FWAction's defaults, as in what `fwspool rlaunch` records, and the result must load with
    ``FWAction.from_dict`` (which needs every field), so a bad action fails here, not at the push."""
    import copy

    from fireworks.core.firework import FWAction

    if not isinstance(action, dict):
        raise DataError("--data: a completed event's action must be a JSON object")
    full = {**json.loads(json.dumps(FWAction().to_dict())), **action}
    try:
        FWAction.from_dict(copy.deepcopy(full))
    except Exception as exc:  # FireWorks raises anything from KeyError to its own errors
        raise DataError(f"--data: the action is not a valid FWAction: {exc!r}") from exc
    return full


@main.command()
@journal_option
@root_option
@click.option("--watch", is_flag=True, help="Keep ingesting until SIGINT/SIGTERM.")
@click.option(
    "--interval", type=float, default=10.0, show_default=True, help="Seconds between --watch passes."
)
@click.option(
    "--max-record",
    type=int,
    default=None,
    metavar="BYTES",
    help="Largest record accepted [default 64 MiB]; larger ones are quarantined.",
)
@click.option(
    "--lock-wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for another ingest holding the journal.",
)
@trust_group_option
@batch_options
@reports_errors
def ingest(
    journal_path: str | None,
    roots: tuple[str, ...],
    watch: bool,
    interval: float,
    max_record: int | None,
    lock_wait: float,
    trust_group: int | None,
    queueadapter: str | None,
    lost_after: float,
    inbox_dir: str | None,
) -> None:
    """Copy new events from spool files (and FireWorks offline files) into the journal.

    Also reads the inbox (launches announced by `fwspool rlaunch`) and asks the batch system,
    once per pass, which jobs of open launches still run (lost runs, reservations to release).
    """
    from fwspool.daemon import StopFlag
    from fwspool.ingest import IngestSummary

    stop = StopFlag()
    stop.install()
    with open_journal(journal_path) as journal, journal.lock("ingest", wait=lock_wait):
        ingester = make_ingester(
            journal,
            roots=roots,
            trust_group=trust_group,
            queueadapter=queueadapter,
            lost_after=lost_after,
            inbox_dir=inbox_dir,
            max_record=max_record,
        )
        total = IngestSummary()
        while True:
            summary = run_with_progress(
                lambda progress: ingester.run_pass(should_stop=stop, progress=progress)
            )
            total.add(summary)
            for problem in summary.problems:
                click.echo(redact(f"fwspool: {problem}"), err=True)
            if watch and summary.new_events:
                click.echo(summary.line(), err=True)
            if not watch or stop():
                break
            stop.sleep(interval)
            if stop():
                break
        click.echo(total.line())


def run_with_progress(work: Callable[[Callable[[int, int], None] | None], Any]) -> Any:
    """Run ``work(progress)`` with a progress bar on a terminal, silently otherwise."""
    if not sys.stderr.isatty():
        return work(None)
    state: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in state and total >= 200:
            state["bar"] = click.progressbar(length=total, label="files", file=sys.stderr)
            state["bar"].__enter__()
        if "bar" in state:
            bar = state["bar"]
            bar.update(done - bar.pos)

    try:
        return work(progress)
    finally:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)


def uplink_options(func: F) -> F:
    """-l/--launchpad-file, --uri, --name, --timeout: where the LaunchPad is."""
    func = click.option(
        "--timeout",
        type=float,
        default=5.0,
        show_default=True,
        help="Seconds to wait for the database before giving up this pass.",
    )(func)
    func = click.option("--name", default=None, help="Database name with --uri [env FWSPOOL_MONGODB_NAME].")(
        func
    )
    func = click.option(
        "--uri",
        default=None,
        metavar="URI",
        help="MongoDB URI instead of a launchpad file [env FWSPOOL_MONGODB_URI].",
    )(func)
    func = click.option(
        "-l",
        "--launchpad-file",
        default=None,
        metavar="FILE",
        help="FireWorks launchpad file [default: lpad's lookup, my_launchpad.yaml].",
    )(func)
    return func


def open_uplink(launchpad_file: str | None, uri: str | None, name: str | None, timeout: float) -> Any:
    from fwspool.config import resolve
    from fwspool.uplink import MongoUplink

    return MongoUplink(resolve(launchpad_file, uri, name), timeout=timeout)


def say(line: str) -> None:
    click.echo(line)


def warn(line: str) -> None:
    click.echo(redact(f"fwspool: {line}"), err=True)


@main.command()
@journal_option
@uplink_options
@click.option(
    "--watch", is_flag=True, help="Keep pushing until SIGINT/SIGTERM; back off while the database is down."
)
@click.option(
    "--interval", type=float, default=30.0, show_default=True, help="Seconds between --watch passes."
)
@reports_errors
def push(
    journal_path: str | None,
    launchpad_file: str | None,
    uri: str | None,
    name: str | None,
    timeout: float,
    watch: bool,
    interval: float,
) -> None:
    """Replay the journal's pending events to the LaunchPad."""
    from fwspool.daemon import StopFlag, push_loop

    stop = StopFlag()
    stop.install()
    with open_journal(journal_path) as journal, journal.lock("push"):
        push_loop(
            journal,
            lambda: open_uplink(launchpad_file, uri, name, timeout),
            watch=watch,
            interval=interval,
            stop=stop,
            say=say,
            warn=warn,
            run_pass=run_with_progress,
        )


@main.command()
@journal_option
@uplink_options
@root_option
@click.option("--watch", is_flag=True, help="Run as the login-node daemon until SIGINT/SIGTERM.")
@click.option("--interval", type=float, default=30.0, show_default=True, help="Seconds between passes.")
@trust_group_option
@batch_options
@reports_errors
def sync(
    journal_path: str | None,
    launchpad_file: str | None,
    uri: str | None,
    name: str | None,
    timeout: float,
    roots: tuple[str, ...],
    watch: bool,
    interval: float,
    trust_group: int | None,
    queueadapter: str | None,
    lost_after: float,
    inbox_dir: str | None,
) -> None:
    """Ingest, then push: the login-node daemon (with --watch) or a cron one-shot."""
    from fwspool.daemon import StopFlag, sync_loop

    stop = StopFlag()
    stop.install()
    with open_journal(journal_path) as journal, journal.lock("ingest"), journal.lock("push"):
        ingester = make_ingester(
            journal,
            roots=roots,
            trust_group=trust_group,
            queueadapter=queueadapter,
            lost_after=lost_after,
            inbox_dir=inbox_dir,
        )
        sync_loop(
            journal,
            ingester,
            lambda: open_uplink(launchpad_file, uri, name, timeout),
            watch=watch,
            interval=interval,
            stop=stop,
            say=say,
            warn=warn,
            run_pass=run_with_progress,
        )


@main.command()
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
    get deprecated=true on the next successful push, even if the database is down now.
    """
    if not fw_ids and not launch_ids:
        raise click.UsageError("name at least one FW_ID or --launch-id")
    with open_journal(journal_path) as journal:
        n = journal.request_forget(fw_ids, launch_ids, undo=undo)
    verb = "resumed" if undo else "forgotten"
    click.echo(f"{n} known launches {verb}; the LaunchPad follows on the next push")


@main.command()
@journal_option
@uplink_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-check", is_flag=True, help="Do not try to reach the database.")
@reports_errors
def status(
    journal_path: str | None,
    launchpad_file: str | None,
    uri: str | None,
    name: str | None,
    timeout: float,
    as_json: bool,
    no_check: bool,
) -> None:
    """Per launch: last event, pending, pushed, superseded, forgotten; totals; the database."""
    from fwspool.status import collect, render

    with open_journal(journal_path) as journal:
        report = collect(
            journal, None if no_check else (lambda: open_uplink(launchpad_file, uri, name, timeout))
        )
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        click.echo(render(report))


@main.command()
@click.option("--keep", is_flag=True, help="Keep the temporary directory (database, journal, launch dir).")
@reports_errors
def demo(keep: bool) -> None:
    """Show the whole path on a throwaway database: run offline, database down, ingest, push."""
    from fwspool.demo import run_demo

    states = run_demo(say=click.echo, keep=keep)
    if states.get("step1") != "COMPLETED" or states.get("step2") != "READY":
        raise FwspoolError(f"the demo workflow did not advance as expected: {states}")


if __name__ == "__main__":
    main()
