"""What the ``fwspool`` commands share: errors as one line and an exit code, warnings, the login
loop, opening the journal, and the lines they print (the options they share: :mod:`.options`).

Every error a user can cause is a :class:`~fwspool.errors.FwspoolError`: one line on stderr,
``fwspool: <message>``, and its documented exit code (docs/commands.md, "Exit codes"). Every line goes
through :data:`fwspool.log.LOG`, which stamps the login-node commands' lines (:func:`start_log`).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fwspool.config import redact
from fwspool.errors import EX_SOFTWARE, FwspoolError, JournalBusy
from fwspool.journal import Journal
from fwspool.log import LOG

if TYPE_CHECKING:
    from fwspool.daemon import Loop

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
    from fwspool.config import DEFAULT_INTERVAL, HEARTBEAT
    from fwspool.daemon import Loop, StopFlag

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
