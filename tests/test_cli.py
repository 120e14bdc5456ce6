"""The command line as a whole: every command has its help."""

from __future__ import annotations

from fwspool.cli import main
from fwspool.testing.commands import invoke


def test_every_command_has_help_text() -> None:
    assert main.commands, "no commands registered"
    for name, command in main.commands.items():
        assert command.help and command.help.strip(), name
        res = invoke(name, "--help")
        assert res.exit_code == 0 and f" {name} [OPTIONS]" in res.output, res.output
