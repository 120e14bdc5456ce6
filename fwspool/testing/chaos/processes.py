"""The processes the harness starts: their environment, their command lines, their output.

Every process gets its output in files (pipes could fill up and block it), no ``FWSPOOL_*``
setting of the caller's shell, and an inbox of its own.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fwspool.testing.commands import unstamped

#: The harness's own child processes (spool writers, a push that strikes at its N-th write...).
CHILDREN_MODULE = "fwspool.testing.chaos.children"

_INBOX: list[str] = []


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every process the harness starts: no FWSPOOL_* settings leaking in from
    the caller's shell, and an inbox of its own (instances pass theirs: one trial must never learn
    another's launches). The FireTasks of the real rlaunch runs are found as part of the installed
    fwspool (``fwspool.testing.chaos.tasks``), with no ``PYTHONPATH`` of our own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FWSPOOL_")}
    if not _INBOX:
        _INBOX.append(tempfile.mkdtemp(prefix="fwspool-chaos-inbox-"))
    # A new one per process started: pointers one process leaves are never read by another.
    _INBOX.append(os.path.join(_INBOX[0], str(len(_INBOX))))
    env["FWSPOOL_INBOX"] = _INBOX[-1]
    env.update(extra)
    return env


def fwspool_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fwspool.cli", *args]


def child_cmd(*args: str) -> list[str]:
    """One of the harness's own child processes (``_writer PLAN``, ``_killer ...``, ``_fake_fstype ...``,
    ``_watched ...``)."""
    return [sys.executable, "-m", CHILDREN_MODULE, *args]


def killer_cmd(after_writes: int, when: str, *args: str, target: str = "self") -> list[str]:
    """`fwspool ARGS` in a process that, at its N-th database write command — before sending it
    (``started``) or once the database acknowledged it (``succeeded``) — kills itself with SIGKILL
    (``target`` "self"), or the database server: "kill:PID" (SIGKILL) or "term:PID" (SIGTERM)."""
    return child_cmd("_killer", str(after_writes), when, target, *args)


def watched_cmd(record: str, *args: str) -> list[str]:
    """`fwspool ARGS` in a process that writes every database command it sends, and how each
    ended, to ``record`` (JSON) when it exits."""
    return child_cmd("_watched", record, *args)


@dataclass
class Proc:
    """A started process, its output captured in files (pipes could fill up and block it)."""

    popen: subprocess.Popen[bytes]
    out_path: str
    err_path: str
    name: str

    def wait(self, timeout: float = 180.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise RuntimeError(f"{self.name} did not finish within {timeout:.0f}s") from None

    def kill(self) -> bool:
        """SIGKILL; True if the process was still running (the kill landed)."""
        if self.popen.poll() is not None:
            return False
        try:
            os.kill(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.popen.wait()
        return True

    @property
    def stderr(self) -> str:
        """What it wrote on stderr, without the UTC times a login-node command's lines start
        with in a file (fwspool.log): the checks read what the lines say."""
        with open(self.err_path, "rb") as f:
            return unstamped(f.read().decode(errors="replace"))

    @property
    def stdout(self) -> str:
        with open(self.out_path, "rb") as f:
            return unstamped(f.read().decode(errors="replace"))


def start(
    cmd: Sequence[str],
    logdir: str,
    name: str,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    preexec: Callable[[], None] | None = None,
) -> Proc:
    os.makedirs(logdir, exist_ok=True)
    stem = os.path.join(logdir, f"{name}-{time.monotonic_ns()}")
    with open(stem + ".out", "wb") as out, open(stem + ".err", "wb") as err:
        p = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env or child_env(),
            cwd=cwd,
            preexec_fn=preexec,
        )
    return Proc(p, stem + ".out", stem + ".err", name)


def run(cmd: Sequence[str], logdir: str, name: str, timeout: float = 180.0, **kw: Any) -> Proc:
    p = start(cmd, logdir, name, **kw)
    p.wait(timeout)
    return p


def without_dac_override() -> None:
    """For a child of root: drop the capabilities that let root read and write any file, so that
    file modes apply to it (no other user can run this venv's python)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def succeeds(cmd: list[str]) -> bool:
    """Whether a system command (mount, umount) exits 0."""
    return subprocess.run(cmd, capture_output=True).returncode == 0


def can_mount(workdir: str) -> bool:
    d = tempfile.mkdtemp(dir=workdir)
    try:
        if succeeds(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d]):
            succeeds(["umount", d])
            return True
        return False
    except FileNotFoundError:
        return False
    finally:
        os.rmdir(d)
