"""The log of the login-node commands (``ingest``, ``push``, ``sync``, ``prune``): their lines,
stamped, and the file they go to.

Every line those commands print goes through :data:`LOG`: results on stdout, problems on stderr.
A line is stamped with the UTC time (``2026-12-04T10:15:00Z fwspool: ...``) when its stream is
not a terminal — a file under cron, a pipe — except systemd's journal, which stamps every line
itself (systemd names the journal's stream in ``JOURNAL_STREAM``).

Where the log is a file, SIGHUP reopens it by name, for logrotate (which renames the file, then
signals): the file of ``--log FILE``, which then takes both streams; or, without ``--log``, the
file stdout and stderr were redirected to when the command started (``>> sync.log 2>&1`` under
cron, ``StandardOutput=append:`` under systemd), by the path Linux gives for it then
(``/proc/self/fd``). The reopening swaps file descriptors 1 and 2 (``dup2``): everything written
there afterwards, by fwspool or by a library, goes to the new file.

FireWorks' import-time warnings (``install the fireworks[newt] extra ...``, logged on stdout by a
module FireWorks imports while it looks up a class) are silenced: they say nothing about fwspool's
work (:func:`silence_fireworks_import_warnings`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
import sys
from collections.abc import Callable
from typing import IO, Any

import click

from fwspool.errors import LogFileError

#: What FireWorks' modules log when imported, by logger: never about the work at hand.
FIREWORKS_IMPORT_WARNINGS = {
    "fireworks.user_objects.queue_adapters.pbs_newt_adapter": "install the fireworks[newt] extra",
}


def stamp(when: dt.datetime) -> str:
    """ISO-8601 UTC to the second: ``2026-12-04T10:15:00Z``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _is_journald(stream: IO[Any]) -> bool:
    """Whether ``stream`` is systemd's journal (``JOURNAL_STREAM`` is its ``device:inode``)."""
    wanted = os.environ.get("JOURNAL_STREAM")
    if not wanted:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both of the first two
        return False
    return wanted == f"{st.st_dev}:{st.st_ino}"


def wants_stamps(stream: IO[Any]) -> bool:
    """Whether lines written to ``stream`` get a time: not on a terminal, not to the journal."""
    try:
        if stream.isatty():
            return False
    except (ValueError, AttributeError):
        return True
    return not _is_journald(stream)


def redirected_to_file(fds: tuple[int, ...] = (1, 2)) -> tuple[str | None, tuple[int, ...]]:
    """The file stdout (else stderr) writes to, by path, and which of ``fds`` write to it; (None,
    ()) when neither is a regular file Linux can name."""
    found: dict[tuple[int, int], list[int]] = {}
    names: dict[tuple[int, int], str] = {}
    for fd in fds:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            path = os.readlink(f"/proc/self/fd/{fd}")
            named = os.stat(path)  # " (deleted)", another mount namespace: not a path to reopen
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if (named.st_dev, named.st_ino) != key:
            continue
        found.setdefault(key, []).append(fd)
        names[key] = path
    if not found:
        return None, ()
    key = next(iter(found))
    return names[key], tuple(found[key])


class Log:
    """Where a command's lines go, and how they look. One per process: :data:`LOG`."""

    def __init__(self, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.clock = clock
        #: Lines are stamped (where not a terminal): set by the login-node commands.
        self.stamping = False
        #: The file the log is written to, by name, and the descriptors that write there.
        self.path: str | None = None
        self.fds: tuple[int, ...] = ()
        #: Given as ``--log``: both streams go there.
        self.explicit = False

    def reset(self) -> None:
        """Plain lines, no file: the state before a command starts (the CLI's group does this)."""
        self.stamping, self.path, self.fds, self.explicit = False, None, (), False

    def start(self, path: str | None = None) -> None:
        """From now on, this process's lines are a login-node command's log: stamped, and with
        ``path`` appended to that file (stdout and stderr both)."""
        self.stamping = True
        if path is None:
            self.path, self.fds = redirected_to_file()
            return
        self.path, self.fds, self.explicit = os.path.abspath(os.path.expanduser(path)), (1, 2), True
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            self._point_at_file()
        except OSError as exc:
            raise LogFileError(f"cannot write the log file {self.path}: {exc.strerror or exc}") from None

    def reopen(self) -> str:
        """Open the log file again by its name (after logrotate moved it away): the SIGHUP
        handler. Only descriptors change hands, nothing Python buffers, so it is safe to run
        between any two bytecodes. Returns the line to log."""
        if self.path is None:
            return (
                "SIGHUP: the log is not a file (stdout is a terminal, a pipe or the journal); "
                "nothing to reopen"
            )
        try:
            self._point_at_file()
        except OSError as exc:
            return f"SIGHUP: cannot reopen the log file {self.path}: {exc.strerror or exc}; still writing to the old one"
        return f"log reopened on SIGHUP: {self.path}"

    def _point_at_file(self) -> None:
        assert self.path is not None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            for target in self.fds:
                os.dup2(fd, target)
        finally:
            os.close(fd)

    def line(self, text: str, *, err: bool = False) -> None:
        """One line (or a few: a traceback) on stdout, or on stderr with ``err``; each stamped
        when this is a login-node command's log and the stream is not a terminal."""
        if self.stamping and wants_stamps(sys.stderr if err else sys.stdout):
            prefix = stamp(self.clock()) + " "
            text = "\n".join(prefix + part for part in text.split("\n"))
        click.echo(text, err=err)


#: This process's log.
LOG = Log()


class _DropImportWarning(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def silence_fireworks_import_warnings() -> None:
    """Drop what FireWorks' modules log when imported (:data:`FIREWORKS_IMPORT_WARNINGS`).

    The filter sits on the logger itself, before FireWorks creates it: FireWorks' ``get_fw_logger``
    reuses the logger of that name, adds its stream handler and sets its level, but keeps filters.
    """
    for name, prefix in FIREWORKS_IMPORT_WARNINGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropImportWarning) for f in logger.filters):
            logger.addFilter(_DropImportWarning(prefix))
