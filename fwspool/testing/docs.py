"""The user documentation as the tests read it: README.md and every ``docs/*.md``.

Tests run documented lines word for word. They find them here, wherever the documentation keeps
them, so that a line moved from the README into ``docs/`` is still found and still run, and a
line that disappears (or appears twice) fails the test that ran it. The link checks of
``tests/test_readme.py`` use the same reading of headings (code blocks skipped) and GitHub's
heading anchors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REPO",
    "Heading",
    "Link",
    "anchors",
    "code_blocks",
    "doc_files",
    "doc_line",
    "doc_section",
    "headings",
    "link_problems",
    "links",
    "slug",
]

#: The repository: the documentation lives beside the package (an editable install, as the tests use).
REPO = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^\s*```")
_HEADING = re.compile(r"^(#{1,6}) +(.+?) *#* *$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_BLOCK = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)


@dataclass(frozen=True)
class Heading:
    """One Markdown heading: its file, its line (1-based), its level (1 for ``#``) and its text."""

    path: Path
    line: int
    level: int
    text: str


@dataclass(frozen=True)
class Link:
    """One relative Markdown link: its file, its line, and its target (``docs/f.md#anchor``)."""

    path: Path
    line: int
    target: str


def doc_files() -> list[Path]:
    """README.md, then every ``docs/*.md`` by name."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


def doc_line(startswith: str) -> str:
    """The one documentation line (stripped) that starts with ``startswith``, across README.md
    and ``docs/*.md``; fails when there is none, or more than one."""
    found = [
        (line.strip(), _where(path, number))
        for path in doc_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip().startswith(startswith)
    ]
    if len(found) != 1:
        raise AssertionError(f"not exactly one documentation line starts with {startswith!r}: {found}")
    return found[0][0]


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of a Markdown file outside its fenced code blocks, numbered from 1."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def headings(path: Path) -> list[Heading]:
    """The headings of one Markdown file, in order (``#`` lines inside code blocks are not)."""
    found = []
    for number, line in _prose_lines(path):
        match = _HEADING.match(line)
        if match:
            found.append(Heading(path, number, len(match.group(1)), match.group(2)))
    return found


def doc_section(title: str, subsections: bool = True) -> str:
    """The text under the one heading titled ``title`` (any level, in any documentation file):
    up to the next heading of the same or a higher level, or, with ``subsections=False``, up to
    the next heading of any level."""
    found = [heading for path in doc_files() for heading in headings(path) if heading.text == title]
    if len(found) != 1:
        where = [_where(h.path, h.line) for h in found]
        raise AssertionError(f"not exactly one documentation heading is {title!r}: {where}")
    [start] = found
    end = None
    for heading in headings(start.path):
        if heading.line > start.line and (heading.level <= start.level or not subsections):
            end = heading.line
            break
    lines = start.path.read_text().splitlines()
    return "\n".join(lines[start.line : None if end is None else end - 1]) + "\n"


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced ``language`` code blocks of ``text``, each dedented by its fence's indent."""
    blocks = []
    for indent, lang, body in _BLOCK.findall(text):
        if lang == language:
            blocks.append("".join(line[len(indent) :] + "\n" for line in body.splitlines()))
    return blocks


def slug(text: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped but for ``-`` and ``_``,
    each space a ``-`` (``The journal, with `sqlite3` `` → ``the-journal-with-sqlite3``)."""
    return "".join(ch for ch in text.lower() if ch.isalnum() or ch in " -_").replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives the headings of ``path`` (a repeated one gets ``-1``, ``-2``...)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in headings(path):
        base = slug(heading.text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[Link]:
    """The relative links of a Markdown file outside code (web addresses are left out)."""
    found = []
    for number, line in _prose_lines(path):
        prose = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        for target in _LINK.findall(prose):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                found.append(Link(path, number, target))
    return found


def link_problems(path: Path) -> list[str]:
    """What is wrong with the relative links of ``path``, one line each: a file that does not
    exist, or an anchor that is no heading of its Markdown file (``#anchor`` alone: ``path``'s own)."""
    problems = []
    for link in links(path):
        target, _, anchor = link.target.partition("#")
        dest = (path.parent / target).resolve() if target else path
        where = f"{path.name}:{link.line}: ({link.target})"
        if not dest.exists():
            problems.append(f"{where}: no file {dest}")
        elif anchor and dest.suffix != ".md":
            problems.append(f"{where}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(dest):
            problems.append(f"{where}: no heading of {dest.name} has the anchor #{anchor}")
    return problems
