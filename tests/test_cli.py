"""The command line as a whole: every command has its help, and rlaunch's lists its exit codes."""

from __future__ import annotations

import re

from fwspool.cli import main
from fwspool.rlaunch import EXIT_CODES
from fwspool.testing.commands import invoke, unstamped


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


def test_a_journal_that_does_not_exist_is_an_error_but_for_the_commands_that_fill_it(tmp_path) -> None:
    """A typo in --journal must not look like an empty journal (`total: 0 launches`, exit 0)."""
    typo = tmp_path / "typo" / "journal.sqlite3"
    for args in (["status", "--no-check"], ["status", "--json", "--no-check"], ["push"], ["forget", "1"]):
        res = invoke(*args, "--journal", str(typo))
        assert res.exit_code == 66, (args, res.output)
        assert unstamped(res.output) == (
            f"fwspool: no journal at {typo}: `fwspool ingest` or `fwspool sync` creates it "
            "(give theirs with --journal or FWSPOOL_JOURNAL)\n"
        )
        assert not typo.parent.exists(), args  # nothing created on the way
    res = invoke("status", "--no-check", env={"FWSPOOL_JOURNAL": str(typo)})
    assert res.exit_code == 66 and "no journal at" in res.output
    res = invoke("ingest", "--journal", str(typo), "--root", str(tmp_path))
    assert res.exit_code == 0 and typo.exists(), res.output
    assert invoke("status", "--no-check", "--journal", str(typo)).exit_code == 0
