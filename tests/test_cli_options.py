"""The options of the ``fwspool`` commands: each declared once (fwspool/cli/options.py, or the one
command that has it), and each default the one its module's constant gives. No server, no files."""

from __future__ import annotations

import ast
import collections
import re
from collections.abc import Iterator
from pathlib import Path

import click

from fwspool.block import DEFAULT_MARGIN
from fwspool.cli import main
from fwspool.config import DEFAULT_INTERVAL, DEFAULT_LOST_AFTER, DEFAULT_TIMEOUT, HEARTBEAT
from fwspool.inbox import DEFAULT_INBOX
from fwspool.journal import default_journal_path
from fwspool.spool import DEFAULT_MAX_RECORD

CLI = Path(__file__).resolve().parent.parent / "fwspool" / "cli"


def _calls_click_option(node: ast.AST) -> bool:
    """Whether ``node`` holds a ``click.option(...)`` call, or names ``click.option`` (a partial)."""
    return any(
        isinstance(n, ast.Attribute)
        and n.attr == "option"
        and isinstance(n.value, ast.Name)
        and n.value.id == "click"
        for n in ast.walk(node)
    )


def _declarations(source: str) -> Iterator[ast.AST]:
    """The places a module can declare options: each decorator of a function on its own (a
    command's ``@click.option``), a function's body as one (a factory in options.py), and each
    other top-level statement (``log_option = click.option(...)``)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            yield from node.decorator_list
            yield ast.Module(body=node.body, type_ignores=[])
        else:
            yield node


def declared_option_names(sources: dict[str, str]) -> dict[str, list[str]]:
    """Each long option name (``--x``) in ``sources`` and where it is declared: ``file:line`` of
    every declaration whose code calls ``click.option`` and holds the name as a string."""
    where: dict[str, list[str]] = collections.defaultdict(list)
    for name, source in sources.items():
        for decl in _declarations(source):
            if not _calls_click_option(decl):
                continue
            names = {
                n.value
                for n in ast.walk(decl)
                if isinstance(n, ast.Constant)
                and isinstance(n.value, str)
                and re.fullmatch(r"--[a-z][a-z_-]*", n.value)
            }
            line = getattr(decl, "lineno", None) or decl.body[0].lineno  # type: ignore[attr-defined]
            for option in names:
                where[option].append(f"{name}:{line}")
    return where


def test_no_option_is_declared_twice_in_fwspool_cli() -> None:
    sources = {p.name: p.read_text() for p in sorted(CLI.glob("*.py"))}
    where = declared_option_names(sources)
    assert {"--journal", "--inbox", "--watch", "--launch-dir", "--fw-id", "--margin", "--parallel"} <= set(
        where
    )
    twice = {option: places for option, places in where.items() if len(places) > 1}
    assert not twice, twice


def test_the_declaration_check_finds_a_second_declaration() -> None:
    """The check above can fail: the same option in two commands, or twice in one file."""
    one = '@click.command()\n@click.option("--inbox", default=None)\ndef a(inbox): ...\n'
    other = '@click.command()\n@click.option("-i", "--inbox", help="x")\ndef b(inbox): ...\n'
    assert declared_option_names({"a.py": one, "b.py": other})["--inbox"] == ["a.py:2", "b.py:2"]
    assert len(declared_option_names({"a.py": one + one.replace("def a", "def c")})["--inbox"]) == 2
    # A factory declares once however many commands call it; a use of the name is no declaration.
    factory = 'def inbox_option(help):\n    return click.option("--inbox", help=help)\n'
    use = 'def c(x):\n    parse(x, "--inbox")\n'
    assert declared_option_names({"options.py": factory, "c.py": use})["--inbox"] == ["options.py:2"]


def _params() -> Iterator[tuple[str, click.Parameter]]:
    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Parameter]]:
        for param in command.params:
            yield path, param
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{path} {name}".strip())

    return walk(main, "")


def _help_of(option: str) -> dict[str, str]:
    """The help text of ``option`` in each command that takes it, white space folded."""
    return {
        path: " ".join((param.help or "").split())
        for path, param in _params()
        if isinstance(param, click.Option) and option in param.opts
    }


def test_each_shared_default_is_its_modules_constant() -> None:
    defaults = collections.defaultdict(set)
    for path, param in _params():
        defaults[param.name].add((path, param.default))
    assert defaults["lost_after"] == {("ingest", DEFAULT_LOST_AFTER), ("sync", DEFAULT_LOST_AFTER)}
    assert {d for _, d in defaults["timeout"] if d is not None} == {DEFAULT_TIMEOUT}
    assert {p for p, _ in defaults["timeout"]} >= {"push", "sync", "status", "doctor"}
    checks = {
        "--interval": f"[default: {DEFAULT_INTERVAL:g}]",
        "--heartbeat": f"[default {HEARTBEAT:g}]",
        "--max-record": f"[default {DEFAULT_MAX_RECORD // 2**20} MiB]",
        "--inbox": f"default {DEFAULT_INBOX}]",
        "--margin": f"{DEFAULT_MARGIN:g}].",
        "--journal": f"default {default_journal_path()}]",
    }
    for option, says in checks.items():
        helps = _help_of(option)
        assert helps, option
        for path, text in helps.items():
            assert says in text, (option, path, text)
