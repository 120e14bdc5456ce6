"""The command line as a whole: every command has its help, and rlaunch's lists its exit codes."""

from __future__ import annotations

import re

from fwspool.cli import main
from fwspool.rlaunch import EXIT_CODES
from fwspool.testing.commands import invoke


def test_every_command_has_help_text() -> None:
    assert main.commands, "no commands registered"
    for name, command in main.commands.items():
        assert command.help and command.help.strip(), name
        res = invoke(name, "--help")
        assert res.exit_code == 0 and f" {name} [OPTIONS]" in res.output, res.output


def test_rlaunch_help_lists_every_exit_code_from_the_code() -> None:
    text = " ".join(invoke("rlaunch", "--help").output.split())
    for code, meaning in EXIT_CODES.items():
        assert re.search(rf"\b{code} {re.escape(meaning)}", text), (code, meaning)
