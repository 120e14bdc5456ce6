"""Every option more than one ``fwspool`` command takes, declared once, and the option groups that
reach a command as one value (:class:`UplinkOptions`, ingest's settings).

Each option is declared in one place, here or in the one command that has it (a test parses
``fwspool/cli`` and fails on a second declaration of a name). Where commands say different things
about the same option (``--watch``: what it keeps doing), the declaration takes the command's help
text. Defaults come from the constant of the module that owns the setting, so the help can never
show another number than the code uses; those modules are cheap leaves (``fwspool.config``,
``fwspool.spool``, ``fwspool.inbox``, ``fwspool.block``, ``fwspool.journal``): ``fwspool`` does not
import the daemon, ingest or pymongo to start.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fwspool.block import DEFAULT_MARGIN
from fwspool.config import DEFAULT_INTERVAL, DEFAULT_LOST_AFTER, DEFAULT_TIMEOUT, HEARTBEAT
from fwspool.inbox import DEFAULT_INBOX
from fwspool.journal import Journal, default_journal_path
from fwspool.spool import DEFAULT_MAX_RECORD

if TYPE_CHECKING:
    from fwspool.config import LaunchPadConfig
    from fwspool.uplink import MongoUplink

F = TypeVar("F", bound=Callable[..., Any])


# -- the login-node loop ---------------------------------------------------------------------------


def watch_option(help: str) -> Callable[[F], F]:  # noqa: A002 - click's own keyword
    """``--watch``: keep running until SIGINT/SIGTERM; ``help`` says doing what."""
    return click.option("--watch", is_flag=True, help=help)


def interval_option(what: str) -> Callable[[F], F]:
    """``--interval S``: one default for every ``--watch`` command, :data:`DEFAULT_INTERVAL`
    (``None`` here: the daemon resolves it, so a run without the option is a run with the default)."""
    return click.option(
        "--interval",
        type=click.FloatRange(min=0),
        default=None,
        metavar="SECONDS",
        help=f"Seconds between {what} passes with --watch [default: {DEFAULT_INTERVAL:g}].",
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


def pilot_option(help: str, dest: str = "pilot") -> Callable[[F], F]:  # noqa: A002
    """``--pilot POOL``: the pilot pool a command stocks, submits a pilot for, or runs from."""
    return click.option("--pilot", dest, metavar="POOL", default=None, help=help)


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
    help=f"Seconds of silence while idle before a line says so [default {HEARTBEAT:g}].",
)

journal_option = click.option(
    "--journal",
    "journal_path",
    envvar="FWSPOOL_JOURNAL",
    default=None,
    metavar="PATH",
    help=f"Journal database on the login node's local disk [env FWSPOOL_JOURNAL; default {default_journal_path()}].",
)


# -- where things are ------------------------------------------------------------------------------


def inbox_option(help: str) -> Callable[[F], F]:  # noqa: A002
    """``--inbox DIR``; ``help`` says what the command does with it (the default is appended)."""
    return click.option(
        "--inbox",
        "inbox_dir",
        envvar="FWSPOOL_INBOX",
        default=None,
        metavar="DIR",
        help=f"{help} [env FWSPOOL_INBOX; default {DEFAULT_INBOX}].",
    )


def root_option(help: str, **extra: Any) -> Callable[[F], F]:  # noqa: A002
    """``--root DIR`` (repeatable): a tree of spool files and FireWorks offline jobs."""
    return click.option("--root", "roots", multiple=True, help=help, **extra)


def queueadapter_option(help: str) -> Callable[[F], F]:  # noqa: A002
    """``-q/--queueadapter FILE``: the queue adapter file ``qlaunch`` uses."""
    return click.option("-q", "--queueadapter", "queueadapter", default=None, metavar="FILE", help=help)


def launch_dir_option(help: str, *, fireworks_spelling: bool = False) -> Callable[[F], F]:  # noqa: A002
    """``--launch-dir DIR`` (default: here), each command with its own help: a compute-node
    command's launch directory (checked to be a directory), or with ``fireworks_spelling``
    (``-d``, ``--launch_dir``) where ``fwspool qlaunch`` makes its block directories."""
    names = ("-d", "--launch_dir", "--launch-dir", "launch_dir") if fireworks_spelling else ("--launch-dir",)
    extra: dict[str, Any] = (
        {"metavar": "DIR"} if fireworks_spelling else {"type": click.Path(file_okay=False)}
    )
    return click.option(*names, default=".", show_default=True, help=help, **extra)


group_readable_option = click.option(
    "--group-readable",
    "spool_mode",
    is_flag=True,
    envvar="FWSPOOL_GROUP_READABLE",
    callback=lambda _ctx, _param, readable: 0o640 if readable else 0o600,
    help="Create spool files with mode 0640 instead of 0600, for an ingest run by another "
    "member of the file's group (with --trust-group) [env FWSPOOL_GROUP_READABLE=1].",
)


# -- as FireWorks' qlaunch and rlaunch spell them --------------------------------------------------


def launchpad_file_option(
    help: str, *, fireworks_spelling: bool = False, hidden: bool = False
) -> Callable[[F], F]:  # noqa: A002
    """``-l/--launchpad-file FILE``; with ``fireworks_spelling`` also ``--launchpad_file``, as
    FireWorks' own commands take it (``fwspool qlaunch`` and ``rlaunch`` stand in for them)."""
    names = (
        ("-l", "--launchpad-file", "--launchpad_file") if fireworks_spelling else ("-l", "--launchpad-file")
    )
    return click.option(*names, "launchpad_file", default=None, metavar="FILE", hidden=hidden, help=help)


def fworker_file_option(help: str) -> Callable[[F], F]:  # noqa: A002
    """``-w/--fworker-file/--fworker_file FILE``, as FireWorks' own commands take it."""
    return click.option("-w", "--fworker-file", "--fworker_file", "fworker_file", metavar="FILE", help=help)


def config_dir_option(help: str, *, hidden: bool = False) -> Callable[[F], F]:  # noqa: A002
    """``-c/--config-dir/--config_dir DIR``: where FireWorks' commands look for ``my_*.yaml``."""
    return click.option(
        "-c", "--config-dir", "--config_dir", "config_dir", metavar="DIR", hidden=hidden, help=help
    )


def fw_id_option(help: str, *, many: bool = False, fireworks_spelling: bool = False) -> Callable[[F], F]:  # noqa: A002
    """``--fw-id N``: one Firework id (``fw_id``), or with ``many`` repeatable (``fw_ids``); with
    ``fireworks_spelling`` also ``--fw_id``, as ``qlaunch -r`` appends it to rlaunch's line."""
    names = ["--fw_id"] if fireworks_spelling else []
    if many:
        return click.option("--fw-id", "fw_ids", multiple=True, type=int, help=help)
    return click.option(*names, "--fw-id", "fw_id", type=int, default=None, help=help)


def launch_id_option(help: str, *, many: bool = False) -> Callable[[F], F]:  # noqa: A002
    """``--launch-id N``: one launch id (``launch_id``), or with ``many`` repeatable (``launch_ids``)."""
    if many:
        return click.option("--launch-id", "launch_ids", multiple=True, type=int, help=help)
    return click.option("--launch-id", "launch_id", type=int, default=None, help=help)


# -- a packed job ----------------------------------------------------------------------------------


#: ``--pack K``: Fireworks per batch job (``fwspool qlaunch``, ``fwspool sync --submit``).
pack_option = click.option(
    "--pack", type=click.IntRange(min=1), default=1, show_default=True, help="Fireworks per batch job."
)

#: ``-m/--maxjobs_queue N``: as FireWorks' qlaunch rapidfire spells it.
maxjobs_queue_option = click.option(
    "-m",
    "--maxjobs_queue",
    "--maxjobs-queue",
    "maxjobs_queue",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Never more of your jobs in the queue (0: no limit).",
)


def parallel_option(help: str, default: int | None) -> Callable[[F], F]:  # noqa: A002
    """``--parallel N``: launches of a packed job run at once (qlaunch: to write into the block;
    rlaunch --block: to override the block's)."""
    return click.option(
        "--parallel", type=click.IntRange(min=1), default=default, show_default=default is not None, help=help
    )


def margin_option(help: str) -> Callable[[F], F]:  # noqa: A002
    """``--margin S``: no launch of a packed job starts this close to the job's end; ``None``: the
    block's, :data:`fwspool.block.DEFAULT_MARGIN` unless qlaunch wrote another."""
    return click.option(
        "--margin",
        type=click.FloatRange(min=0),
        default=None,
        help=help.format(default=f"{DEFAULT_MARGIN:g}"),
    )


def timeout_option(help: str, default: float | None, type: Any = float) -> Callable[[F], F]:  # noqa: A002
    """``--timeout S``: the database's (uplink) or rapidfire's own (stop submitting after)."""
    return click.option(
        "--timeout",
        type=type,
        default=default,
        show_default=default is not None,
        help=help,
    )


# -- options that reach a command as one value -----------------------------------------------------


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
    launchpad_file_option("FireWorks launchpad file [default: lpad's lookup, my_launchpad.yaml]."),
    click.option(
        "--uri",
        default=None,
        metavar="URI",
        help="MongoDB URI instead of a launchpad file [env FWSPOOL_MONGODB_URI].",
    ),
    click.option("--name", default=None, help="Database name with --uri [env FWSPOOL_MONGODB_NAME]."),
    timeout_option("Seconds to wait for the database before giving up this pass.", DEFAULT_TIMEOUT),
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
    root_option(
        "Also scan this tree for spool files and FireWorks offline jobs (repeatable).",
        type=click.Path(file_okay=False),
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
    queueadapter_option(
        "The queue adapter file `qlaunch` uses: which batch system to ask about jobs "
        "[default: each launch's own, from its started event or FW_submit.script]."
    ),
    click.option(
        "--lost-after",
        type=click.FloatRange(min=0),
        default=DEFAULT_LOST_AFTER,
        show_default=True,
        metavar="SECONDS",
        help="How long a batch job must have been gone before its launch counts as lost "
        "(or, never started, its reservation is released).",
    ),
    inbox_option("Where `fwspool rlaunch` announces launches"),
    click.option(
        "--max-record",
        type=click.IntRange(min=1),
        default=None,
        metavar="BYTES",
        help=f"Largest spool record accepted [default {DEFAULT_MAX_RECORD >> 20} MiB]; a larger one is "
        "quarantined, and its launch waits for --retry-quarantined with a larger limit.",
    ),
    click.option(
        "--retry-quarantined",
        is_flag=True,
        help="First read every quarantined spool record again with these limits; those now "
        "accepted are ingested (after raising --max-record).",
    ),
)
