"""The README's commands are the ones the project really runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert "bash tools/run-tests" in blocks
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
    ):
        assert step in script, step


def test_the_module_map_lists_every_module_and_only_modules_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(fwspool/[a-z_/]+\.py)` \|", section, re.M))
    present = {
        p.relative_to(REPO).as_posix() for p in (REPO / "fwspool").rglob("*.py") if p.name != "__init__.py"
    }
    assert listed == present


def test_the_readme_gives_rlaunch_exit_codes_as_the_code_defines_them() -> None:
    """README "Exit codes" and ``fwspool rlaunch --help`` both say what fwspool.rlaunch.EXIT_CODES says."""
    from fwspool.rlaunch import EXIT_CODES

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    every_command, rlaunch = section.split("### `fwspool rlaunch`", 1)
    rows = {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.*) \|$", rlaunch, re.M)}
    assert rows == EXIT_CODES
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", every_command, re.M)}
    assert set(EXIT_CODES) <= documented


def test_the_readme_names_every_field_fwspool_adds_to_launchpad_documents() -> None:
    """What a user finds on a workflow or Firework behind a push killed halfway is explained."""
    from fwspool.launchpad.locks import LOCK_FIELD
    from fwspool.launchpad.undo import UNDO_FIELD, UNDOING_FIELD

    readme = (REPO / "README.md").read_text()
    section = readme.split("## What fwspool writes on the LaunchPad", 1)[1].split("\n### ", 1)[0]
    from fwspool.binding import EPOCH_FIELD

    for name in (LOCK_FIELD, UNDO_FIELD, UNDOING_FIELD, EPOCH_FIELD):
        assert f"`{name}`" in section, name
