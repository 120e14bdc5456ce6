"""The database commands a pymongo client sends, counted while asked to, and attributed to the
fwspool or FireWorks code that sent each: what one pass costs the database."""

from __future__ import annotations

import collections
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from pymongo import monitoring

__all__ = ["WRITE_COMMANDS", "CommandCounter"]

WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify"})

_FW_MAP = os.sep + os.path.join("fwspool", "")
#: The harness's own frames (fwspool.testing: `lpad recover_offline`'s loop) are not fwspool's.
_HARNESS = os.sep + os.path.join("fwspool", "testing", "")
_LP_FILE = os.path.join("fireworks", "core", "launchpad.py")
_NOISE = frozenset({"<lambda>", "_call", "run_pass", "fetch", "probe", "<module>", "main"})


class CommandCounter(monitoring.CommandListener):
    """Counts commands while ``active``; optionally attributes each to the code path that sent it.

    The attribution walks the caller's stack (the listener runs synchronously in the thread that
    sends the command) and keeps the names of fwspool and FireWorks LaunchPad functions, outermost
    first: e.g. ``_apply_sequential > complete_launch > _refresh_wf``.
    """

    def __init__(self, attribute: bool = True) -> None:
        self.active = False
        self.attribute = attribute
        self.commands: list[str] = []
        self.paths: collections.Counter[tuple[str, str]] = collections.Counter()

    def reset(self) -> None:
        self.commands = []
        self.paths = collections.Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.active:
            return
        self.commands.append(event.command_name)
        if self.attribute:
            self.paths[(self._where(), event.command_name)] += 1

    @staticmethod
    def _where() -> str:
        names: list[str] = []
        frame = sys._getframe(2)
        while frame is not None:
            fn = frame.f_code.co_filename
            name = frame.f_code.co_name
            ours = _FW_MAP in fn and _HARNESS not in fn
            wanted = (ours or fn.endswith(_LP_FILE)) and name not in _NOISE
            if wanted and (not names or names[-1] != name):
                names.append(name)
            frame = frame.f_back  # type: ignore[assignment]
        names.reverse()
        # No fwspool / LaunchPad frame: lpad recover_offline's own loop (the offline_runs find).
        return " > ".join(names[:4]) or "lpad recover_offline loop"

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass

    def writes(self) -> int:
        return sum(1 for c in self.commands if c in WRITE_COMMANDS)

    @contextlib.contextmanager
    def counting(self) -> Iterator[CommandCounter]:
        """Counts from nothing while the block runs."""
        self.reset()
        self.active = True
        try:
            yield self
        finally:
            self.active = False
