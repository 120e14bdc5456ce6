"""The README's commands are the ones the project really runs, its first screen is the quick start,
and every link between the README and ``docs/`` leads to a file and a heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

from fwspool.testing.docs import (
    REPO,
    anchors,
    code_blocks,
    doc_files,
    doc_line,
    doc_section,
    headings,
    link_problems,
    links,
    slug,
)

#: How many lines a first screen shows.
FIRST_SCREEN = 40

#: Each line of the quick start's code blocks, by how it starts, and the test that runs it word for
#: word: (its file, what that file says to read the line).
QUICK_START_PINS = {
    "python3 -m venv .venv && ": ("tests/test_demo.py", 'doc_line("python3 -m venv .venv && ")'),
    "rocket_launch: rlaunch ": ("tests/test_doctor.py", 'doc_line("rocket_launch: rlaunch ")'),
    "rocket_launch: $HOME/fw/.venv/bin/fwspool": (
        "tests/test_slurm_path.py",
        'doc_line("rocket_launch: $HOME/fw/.venv/bin/fwspool")',
    ),
    "*/5 * * * * ": ("tests/test_slurm_path.py", 'doc_line("*/5 * * * * ")'),
    # What you will see: the lines the demo's `fwspool sync` prints, up to their times.
    "2026-12-07T02:57:12Z ingest: ": (
        "tests/test_demo.py",
        'code_blocks(doc_section("Quick start"), "text")',
    ),
    "2026-12-07T02:57:12Z push: ": ("tests/test_demo.py", 'code_blocks(doc_section("Quick start"), "text")'),
}


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    assert "bash tools/run-tests\n" in code_blocks(doc_section("The two commands"), "sh")
    ci = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ci[-1] == "bash tools/run-tests"


def test_the_test_script_runs_the_linters_and_the_tests() -> None:
    script = (REPO / "tools" / "run-tests").read_text()
    for step in (
        "-m venv",
        "-e '.[test]'",
        "apt-get install -y -qq slurm-wlm munge",
        # Grid Engine, with no system cell and no service started (not even exim4, via bsd-mailx).
        "gridengine-common shared/gridengineconfig boolean false",
        "exit 101",
        "apt-get install -y -qq gridengine-master gridengine-exec gridengine-client",
        "ruff check",
        "mypy fwspool",
        "python -m pytest -q -x --durations=15",
        "--dist loadgroup",
    ):
        assert step in script, step


def test_the_first_screen_is_the_quick_start_and_the_two_commands_follow() -> None:
    """Install, the one-line change, the cron line and what you will see, before anything else;
    then the two commands, the first of them the quick start's install line."""
    top = [(h.level, h.text, h.line) for h in headings(REPO / "README.md")][:4]
    assert [(level, text) for level, text, _ in top] == [
        (1, "fwspool"),
        (2, "Quick start"),
        (2, "The two commands"),
        (2, "Migrating from FireWorks' offline mode"),
    ], top
    first_screen = "\n".join(readme().splitlines()[:FIRST_SCREEN])
    quick_start = doc_section("Quick start")
    assert quick_start.rstrip() in first_screen  # the whole quick start fits on the first screen
    for step in ("**Install**", "**The one-line change**", "**The cron line**", "**What you will see.**"):
        assert step in quick_start, step
    [install] = code_blocks(quick_start, "sh")
    assert code_blocks(quick_start, "cron") == [doc_line("*/5 * * * * ") + "\n"]
    assert doc_line("rocket_launch: $HOME/fw/.venv/bin/fwspool") + "\n" in code_blocks(quick_start, "yaml")[0]
    # "The two commands" names the same install line, then gives the test command.
    two = doc_section("The two commands")
    assert f"`{install.strip()}`" in re.sub(r"\s*\n\s*", " ", two), two
    assert code_blocks(two, "sh") == ["bash tools/run-tests\n"]
    assert top[2][2] <= FIRST_SCREEN + 15  # close to the top


def test_every_line_of_the_quick_start_is_run_word_for_word_by_a_test() -> None:
    quick_start = doc_section("Quick start")
    lines = [
        line
        for block in re.findall(r"```\w*\n(.*?)```", quick_start, re.S)
        for line in (ln.strip() for ln in block.splitlines())
        if line and not line.startswith("# ")  # the yaml block's "# before" and "# after"
    ]
    assert len(lines) == len(QUICK_START_PINS), lines
    for line in lines:
        [prefix] = [prefix for prefix in QUICK_START_PINS if line.startswith(prefix)]
        assert doc_line(prefix) == line  # the one documented line that starts so
        test_file, reads = QUICK_START_PINS[prefix]
        assert reads in (REPO / test_file).read_text(), (line, test_file, reads)


def test_the_module_map_lists_every_module_and_only_modules_that_exist() -> None:
    section = doc_section("How the code is laid out", subsections=False)
    listed = set(re.findall(r"^\| `(fwspool/[a-z_/]+\.py)` \|", section, re.M))
    present = {
        p.relative_to(REPO).as_posix() for p in (REPO / "fwspool").rglob("*.py") if p.name != "__init__.py"
    }
    assert listed == present


def test_the_readme_gives_rlaunch_exit_codes_as_the_code_defines_them() -> None:
    """ "Exit codes" (docs/commands.md) and ``fwspool rlaunch --help`` both say what
    fwspool.rlaunch.EXIT_CODES says."""
    from fwspool.rlaunch import EXIT_CODES

    every_command, rlaunch = doc_section("Exit codes").split("### `fwspool rlaunch`", 1)
    rows = {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.*) \|$", rlaunch, re.M)}
    assert rows == EXIT_CODES
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", every_command, re.M)}
    assert set(EXIT_CODES) <= documented


def test_the_readme_names_every_field_fwspool_adds_to_launchpad_documents() -> None:
    """What a user finds on a workflow or Firework behind a push killed halfway is explained."""
    from fwspool.binding import EPOCH_FIELD
    from fwspool.launchpad.locks import LOCK_FIELD
    from fwspool.launchpad.undo import UNDO_FIELD, UNDOING_FIELD

    section = doc_section("What fwspool writes on the LaunchPad", subsections=False)
    for name in (LOCK_FIELD, UNDO_FIELD, UNDOING_FIELD, EPOCH_FIELD):
        assert f"`{name}`" in section, name


def test_every_link_between_the_readme_and_docs_leads_to_a_file_and_a_heading() -> None:
    problems = [problem for path in doc_files() for problem in link_problems(path)]
    assert not problems, "\n".join(problems)
    # Every docs file can be found from the README.
    linked = {
        (REPO / link.target.partition("#")[0]).resolve() for link in links(REPO / "README.md") if link.target
    }
    unlinked = [path.name for path in doc_files()[1:] if path.resolve() not in linked]
    assert not unlinked, f"the README links to no docs/{unlinked}: add them to 'Where to read more'"


def test_anchors_are_github_s_and_a_broken_link_is_found(tmp_path: Path) -> None:
    assert slug("The journal, with `sqlite3`") == "the-journal-with-sqlite3"
    assert slug("Migrating from FireWorks' offline mode") == "migrating-from-fireworks-offline-mode"
    assert slug("`fwspool status`") == "fwspool-status"
    assert (
        slug("Walltime, cancelled jobs, requeue and lost runs")
        == "walltime-cancelled-jobs-requeue-and-lost-runs"
    )
    assert slug("How to change the exactly-once core") == "how-to-change-the-exactly-once-core"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# A\n\n## Twice\n\n## Twice\n\n```sh\n# not a heading\n```\n\nSee [b](b.md#twice-1) and [me](#a).\n"
    )
    assert anchors(tmp_path / "docs" / "a.md") == {"a", "twice", "twice-1"}
    readme = tmp_path / "README.md"
    readme.write_text(
        "[ok](docs/a.md#twice-1) [no heading](docs/a.md#not-a-heading) [no file](docs/c.md) "
        "`[code](docs/none.md)` [web](https://example.org/x.md)\n"
    )
    assert link_problems(readme) == [
        "README.md:1: (docs/a.md#not-a-heading): no heading of a.md has the anchor #not-a-heading",
        f"README.md:1: (docs/c.md): no file {tmp_path / 'docs' / 'c.md'}",
    ]
    assert link_problems(tmp_path / "docs" / "a.md") == [
        f"a.md:11: (b.md#twice-1): no file {tmp_path / 'docs' / 'b.md'}"
    ]


def test_a_documented_line_is_found_in_docs_once_and_only_once() -> None:
    """doc_line finds a line the README moved to docs/ (the retry line: docs/launchpad.md), and
    fails on a line that is not there or is there twice."""
    assert doc_line("fwspool ingest --retry-quarantined ") == (
        "fwspool ingest --retry-quarantined --max-record 268435456"
    )
    for missing_or_twice in ("fwspool no-such-command", "rocket_launch: "):
        try:
            doc_line(missing_or_twice)
        except AssertionError as exc:
            assert repr(missing_or_twice) in str(exc)
        else:
            raise AssertionError(f"doc_line({missing_or_twice!r}) found one line")


def test_the_jobflow_page_gives_rlaunch_exit_codes_as_the_code_defines_them() -> None:
    """docs/jobflow.md lists what fwspool.jobstore.EXIT_CODES says."""
    from fwspool.jobstore import EXIT_CODES

    section = doc_section("Exit codes of `fwspool rlaunch` for a jobflow Firework")
    rows = {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.*) \|$", section, re.M)}
    assert rows == EXIT_CODES


def test_the_pure_core_command_runs_word_for_word_with_no_server() -> None:
    """docs/code.md's command for the pure core: it passes, and says no server started."""
    import shlex
    import subprocess
    import sys

    from fwspool.testing.docs import doc_line

    words = shlex.split(doc_line("python tools/pure_core_tests.py"), comments=True)
    res = subprocess.run([sys.executable, *words[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "database servers started: 0" in res.stdout, res.stdout[-3000:]
