"""Errors a user can cause, each with a one-line message and a documented exit code.

The CLI prints ``fwspool: <message>`` and exits with :attr:`FwspoolError.exit_code`; a
traceback means a bug. The codes follow BSD ``sysexits.h`` where one fits (docs/commands.md, "Exit codes").
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 2  # click's own code for bad options
EX_DATAERR = 65  # input data malformed (--data JSON, FW.json)
EX_NOINPUT = 66  # an input file or directory does not exist or cannot be read
EX_SOFTWARE = 70  # internal error (should not happen)
EX_CANTCREAT = 73  # the journal cannot be created or written (read-only, disk full)
EX_IOERR = 74  # an I/O error on a spool file
EX_TEMPFAIL = 75  # try again later: database unreachable, journal locked by another process
EX_NOPERM = 77  # authentication refused
EX_CONFIG = 78  # configuration unusable: journal on a network filesystem, bad launchpad file


class FwspoolError(Exception):
    """Base of every error fwspool reports to a user."""

    exit_code = EX_SOFTWARE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]).splitlines()[0] if self.args else type(self).__name__


class ConfigError(FwspoolError):
    exit_code = EX_CONFIG


class InputError(FwspoolError):
    """A file or directory given to fwspool is missing or unreadable."""

    exit_code = EX_NOINPUT


class DataError(FwspoolError):
    exit_code = EX_DATAERR


class SpoolError(FwspoolError):
    exit_code = EX_IOERR


class JournalError(FwspoolError):
    """The journal cannot be opened or written; nothing already committed is lost."""

    exit_code = EX_CANTCREAT


class JournalBusy(FwspoolError):
    """Another fwspool process holds the journal's lock for this role."""

    exit_code = EX_TEMPFAIL

    def __init__(self, message: str, holder_pid: int | None = None) -> None:
        super().__init__(message)
        #: The pid the holder wrote in the lock file, when it is a number.
        self.holder_pid = holder_pid


class UplinkUnavailable(FwspoolError):
    """The database cannot be reached now; everything stays in the journal."""

    exit_code = EX_TEMPFAIL


class Interrupted(FwspoolError):
    """SIGINT or SIGTERM ended a one-shot before its push reached the database (which was down):
    nothing is lost, the journal keeps everything; exit 128 + the signal's number, as a shell
    reports a command a signal ended."""

    exit_code = 128 + 2  # SIGINT; SIGTERM: 143


class UplinkAuthError(FwspoolError):
    exit_code = EX_NOPERM


class NotALaunchPad(FwspoolError):
    exit_code = EX_CONFIG


class UplinkTLSError(ConfigError):
    """The TLS settings do not fit the server (it wants TLS, does not speak it, or its certificate
    is not trusted): a configuration error, never "unreachable", never retried by --watch."""

    exit_code = EX_CONFIG


class LogFileError(FwspoolError):
    """The ``--log`` file cannot be created or written."""

    exit_code = EX_CANTCREAT
