"""What the ``fwspool`` commands share: errors as one line and an exit code, warnings, the options
several commands take, opening the journal and the uplink, and the lines they print.

Every error a user can cause is a :class:`~fwspool.errors.FwspoolError`: one line on stderr,
``fwspool: <message>``, and its documented exit code (docs/commands.md, "Exit codes"). Every line goes
through :data:`fwspool.log.LOG`, which stamps the login-node commands' lines (:func:`start_log`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fwspool.config import redact
from fwspool.errors import EX_SOFTWARE, FwspoolError, JournalBusy
from fwspool.journal import Journal, default_journal_path
from fwspool.log import LOG

if TYPE_CHECKING:
    from fwspool.config import LaunchPadConfig
    from fwspool.daemon import Loop
    from fwspool.uplink import MongoUplink

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
            LOG.line(f"fwspool: {redact(exc.message)}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            # The reader went away (`fwspool status | head`): click ends quietly, as Unix tools do.
            raise
        except OSError as exc:
            # Disk full or a read-only filesystem where fwspool writes: still one line.
            where = f" ({exc.filename})" if exc.filename else ""
            LOG.line(redact(f"fwspool: {exc.strerror or exc}{where}"), err=True)
            sys.exit(EX_SOFTWARE if exc.errno is None else 74)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception:
            import traceback

            text = redact(f"fwspool: internal error, please report:\n{traceback.format_exc()}")
            LOG.line(text.rstrip("\n"), err=True)
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
        LOG.line(f"fwspool: warning: {text}", err=True)


def say(line: str) -> None:
    """A result line, on stdout."""
    LOG.line(line)


def say_on_stderr(line: str) -> None:
    """A progress line of a command whose stdout is its final result."""
    LOG.line(line, err=True)


def warn(line: str) -> None:
    """A problem, one redacted ``fwspool: ...`` line on stderr."""
    LOG.line(redact(f"fwspool: {line}"), err=True)


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


def start_log(log_file: str | None) -> None:
    """This command's lines are a login-node log from now on (:mod:`fwspool.log`): stamped where
    not a terminal, and appended to ``log_file`` when given."""
    LOG.start(log_file)


def login_loop(
    watch: bool,
    interval: float | None,
    log_file: str | None,
    *,
    say: Callable[[str], None] = say,
    heartbeat: float | None = None,
    retain: float = 0.0,
) -> Loop:
    """The :class:`~fwspool.daemon.Loop` of a login-node command (a one-shot at a terminal says
    its passes' lines even when they changed nothing), its log started, stopped by
    SIGINT/SIGTERM from now on (before the journal is opened: a signal meanwhile ends the command
    after one pass), answering SIGUSR1 and reopening its log on SIGHUP."""
    from fwspool.daemon import DEFAULT_INTERVAL, HEARTBEAT, Loop, StopFlag

    start_log(log_file)
    stop = StopFlag()
    stop.install(reopen_log=LOG.reopen)
    return Loop(
        watch=watch,
        idle_lines=not watch and log_file is None and sys.stdout.isatty(),
        interval=DEFAULT_INTERVAL if interval is None else interval,
        stop=stop,
        say=say,
        warn=warn,
        run_pass=run_with_progress,
        heartbeat=heartbeat or HEARTBEAT,
        retain=retain,
    )


def said_stopped(loop: Loop) -> None:
    """The last line of a ``--watch`` command stopped by a signal."""
    if loop.watch and loop.stop.signal_name:
        say(f"stopped by {loop.stop.signal_name}")


def interval_option(what: str) -> Callable[[F], F]:
    """``--interval S``: one default for every ``--watch`` command,
    :data:`fwspool.daemon.DEFAULT_INTERVAL` (resolved when the command runs: ``fwspool`` does not
    import the daemon to start; a test checks that the help shows that value)."""
    return click.option(
        "--interval",
        type=click.FloatRange(min=0),
        default=None,
        metavar="SECONDS",
        help=f"Seconds between {what} passes with --watch [default: 30].",
    )


def idle_exit_option(default: float | None = 60.0) -> Callable[[F], F]:
    """``--idle-exit SECONDS``: how long a pilot waits for an empty pool (``fwspool rlaunch``,
    ``fwspool qlaunch`` and ``fwspool sync`` with ``--pilot``; None: the pilot's own default)."""
    return click.option(
        "--idle-exit",
        type=click.FloatRange(min=0),
        default=default,
        show_default=default is not None,
        metavar="SECONDS",
        help="With --pilot: a pilot ends once the pool has had nothing for it this long"
        + (" [default: 60]." if default is None else "."),
    )


def lock_wait_option(what: str) -> Callable[[F], F]:
    return click.option(
        "--lock-wait",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        metavar="SECONDS",
        help=f"Seconds to wait for another {what} holding the journal (else exit 75 at once).",
    )


log_option = click.option(
    "--log",
    "log_file",
    default=None,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Append every line (stdout and stderr) to FILE, each with its UTC time; SIGHUP reopens "
    "FILE (logrotate) [default: stdout and stderr, stamped unless a terminal or the journal].",
)

#: The longest silence of an idle --watch command; hidden: for tests of the heartbeat.
heartbeat_option = click.option(
    "--heartbeat",
    type=click.FloatRange(min=0.1),
    default=None,
    hidden=True,
    help="Seconds of silence while idle before a line says so [default 3600].",
)


journal_option = click.option(
    "--journal",
    "journal_path",
    envvar="FWSPOOL_JOURNAL",
    default=None,
    metavar="PATH",
    help=f"Journal database on the login node's local disk [env FWSPOOL_JOURNAL; default {default_journal_path()}].",
)


@contextlib.contextmanager
def journal_locked(journal: Journal, *roles: str, wait: float = 0.0) -> Iterator[None]:
    """The journal's locks for these roles (:meth:`Journal.lock`); when a ``--watch`` daemon holds
    one, the error says so: it never finishes, so "try again when it finishes" would not do."""
    from fwspool.daemon import watch_command

    with contextlib.ExitStack() as locks:
        for role in roles:
            try:
                locks.enter_context(journal.lock(role, wait=wait))
            except JournalBusy as exc:
                command = watch_command(exc.holder_pid) if exc.holder_pid else None
                if command is None:
                    raise
                pid = exc.holder_pid
                raise JournalBusy(
                    f"a daemon holds journal {journal.path}: `{command}` (pid {pid}) {role}s there until it is "
                    f"stopped, so this would wait for good; it does this work already (drop this command, e.g. "
                    f"a cron line beside it), or stop it first (`kill {pid}`, or `systemctl --user stop fwspool`)",
                    pid,
                ) from None
        yield


def open_journal(path: str | None, *, create: bool = False) -> Journal:
    """:meth:`Journal.open`, its warnings (a journal other users can read) printed on stderr.

    Only the commands that fill the journal (``ingest``, ``sync``) create it: for the others, a
    journal that does not exist is an error (exit 66), not an empty journal.
    """
    journal = Journal.open(path, create=create)
    for warning in journal.warnings:
        LOG.line(f"fwspool: warning: {warning}", err=True)
    return journal


#: --launch-dir DIR (default: here), for the compute-node commands; each gives its own help.
launch_dir_option = functools.partial(
    click.option, "--launch-dir", default=".", show_default=True, type=click.Path(file_okay=False)
)

group_readable_option = click.option(
    "--group-readable",
    "spool_mode",
    is_flag=True,
    envvar="FWSPOOL_GROUP_READABLE",
    callback=lambda _ctx, _param, readable: 0o640 if readable else 0o600,
    help="Create spool files with mode 0640 instead of 0600, for an ingest run by another "
    "member of the file's group (with --trust-group) [env FWSPOOL_GROUP_READABLE=1].",
)


def _options_as_one(into: str, settings: Callable[[], type], *options: Callable[[F], F]) -> Callable[[F], F]:
    """Add ``options`` to a command whose function gets their values as one argument ``into``: an
    instance of the dataclass ``settings()`` returns, whose fields are the options' names (a
    function, so that the class is imported when the command runs, not when ``fwspool`` starts)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cls = settings()
            values = {field.name: kwargs.pop(field.name) for field in dataclasses.fields(cls)}
            return func(*args, **{into: cls(**values)}, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


@dataclass(frozen=True)
class UplinkOptions:
    """-l/--launchpad-file, --uri, --name, --timeout: where the LaunchPad is."""

    launchpad_file: str | None
    uri: str | None
    name: str | None
    timeout: float

    def config(self) -> LaunchPadConfig:
        from fwspool.config import resolve

        return resolve(self.launchpad_file, self.uri, self.name)

    def given(self) -> bool:
        """Whether the command line or the environment names a LaunchPad."""
        import os

        return bool(self.launchpad_file or self.uri or os.environ.get("FWSPOOL_MONGODB_URI"))

    def or_journals(self, journal: Journal) -> UplinkOptions:
        """These options, or, when they name no LaunchPad, the journal's own (the launchpad file
        its first push was given: :mod:`fwspool.binding`), if that file is still there."""
        import os

        binding = journal.binding()
        if self.given() or binding is None or not binding.launchpad_file:
            return self
        if not os.path.isfile(binding.launchpad_file):
            return self
        return dataclasses.replace(self, launchpad_file=binding.launchpad_file)

    def open(self) -> MongoUplink:
        from fwspool.uplink import MongoUplink

        return MongoUplink(self.config(), timeout=self.timeout)

    def describe(self) -> str:
        """Where the LaunchPad is, redacted, and where that was said: for the start-up line."""
        config = self.config()
        return f"LaunchPad {config.where()} from {config.source} ({config.credentials()})"


uplink_options = _options_as_one(
    "uplink",
    lambda: UplinkOptions,
    click.option(
        "-l",
        "--launchpad-file",
        default=None,
        metavar="FILE",
        help="FireWorks launchpad file [default: lpad's lookup, my_launchpad.yaml].",
    ),
    click.option(
        "--uri",
        default=None,
        metavar="URI",
        help="MongoDB URI instead of a launchpad file [env FWSPOOL_MONGODB_URI].",
    ),
    click.option("--name", default=None, help="Database name with --uri [env FWSPOOL_MONGODB_NAME]."),
    click.option(
        "--timeout",
        type=float,
        default=5.0,
        show_default=True,
        help="Seconds to wait for the database before giving up this pass.",
    ),
)


def _group_id(_ctx: Any, _param: Any, value: str | None) -> int | None:
    if not value:
        return None
    from fwspool.trust import group_id

    try:
        return group_id(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _ingest_settings() -> type:
    from fwspool.daemon import IngestSettings

    return IngestSettings


#: What ingest reads besides the spool files it knows and how: --root, --trust-group, -q,
#: --lost-after, --inbox, --max-record and --retry-quarantined, reaching the command as
#: ``ingest_settings``, a :class:`fwspool.daemon.IngestSettings`.
ingest_options = _options_as_one(
    "ingest_settings",
    _ingest_settings,
    click.option(
        "--root",
        "roots",
        multiple=True,
        type=click.Path(file_okay=False),
        help="Also scan this tree for spool files and FireWorks offline jobs (repeatable).",
    ),
    click.option(
        "--trust-group",
        "trust_group",
        envvar="FWSPOOL_TRUST_GROUP",
        default=None,
        metavar="GROUP",
        callback=_group_id,
        help="Also accept spool and FireWorks offline files owned by this group "
        "[env FWSPOOL_TRUST_GROUP; default: only files owned by you].",
    ),
    click.option(
        "-q",
        "--queueadapter",
        "queueadapter",
        default=None,
        metavar="FILE",
        help="The queue adapter file `qlaunch` uses: which batch system to ask about jobs "
        "[default: each launch's own, from its started event or FW_submit.script].",
    ),
    click.option(
        "--lost-after",
        type=click.FloatRange(min=0),
        default=300.0,
        show_default=True,
        metavar="SECONDS",
        help="How long a batch job must have been gone before its launch counts as lost "
        "(or, never started, its reservation is released).",
    ),
    click.option(
        "--inbox",
        "inbox_dir",
        envvar="FWSPOOL_INBOX",
        default=None,
        metavar="DIR",
        help="Where `fwspool rlaunch` announces launches [env FWSPOOL_INBOX; default ~/.fwspool/inbox].",
    ),
    click.option(
        "--max-record",
        type=click.IntRange(min=1),
        default=None,
        metavar="BYTES",
        help="Largest spool record accepted [default 64 MiB]; a larger one is quarantined, and its "
        "launch waits for --retry-quarantined with a larger limit.",
    ),
    click.option(
        "--retry-quarantined",
        is_flag=True,
        help="First read every quarantined spool record again with these limits; those now "
        "accepted are ingested (after raising --max-record).",
    ),
)
