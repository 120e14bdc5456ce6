"""The quick start's install line, word for word, in a copy of the project; then ``fwspool demo``:
the whole workflow to its end, the outage included, ``fwspool status``, a journal query, and the
README's two lines for this installation."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from fwspool.demo import README_FWSPOOL, next_lines
from fwspool.testing.commands import unstamped
from fwspool.testing.docs import REPO, code_blocks, doc_line, doc_section


def test_the_quick_start_install_line_sets_up_a_venv_and_its_demo_runs_the_workflow_to_its_end(
    tmp_path: Path, private_inbox: str
) -> None:
    """The quick start's first line, word for word, in a copy of the project (what a clone holds
    that ``pip install`` reads): a new venv with the ``demo`` extra, then the demo, which ends with
    the two lines a user needs, naming that venv's fwspool."""
    clone = tmp_path / "fw"
    clone.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, clone / name)
    shutil.copytree(REPO / "fwspool", clone / "fwspool", ignore=shutil.ignore_patterns("__pycache__"))
    line = doc_line("python3 -m venv .venv && ")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run(
        ["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True, timeout=1200
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "1. Starting a throwaway MongoDB-wire server" in res.stdout, res.stdout[-3000:]
    out = "1. Starting" + res.stdout.split("1. Starting", 1)[1]  # pip's lines come first
    for step in (
        "5. The database goes down for maintenance",
        "7. A push now only waits, nothing is lost: cannot reach MongoDB",
        "10. The workflow advanced: step1 COMPLETED, step2 READY, step3 WAITING",
        "12. The workflow is done: step1 COMPLETED, step2 COMPLETED, step3 COMPLETED",
        "13. `fwspool status`:",
        "14. The journal is SQLite: ",
    ):
        assert step in out, (step, out)
    status = out.split("13. `fwspool status`:\n", 1)[1].split("14. ", 1)[0]
    assert status.strip() and "Traceback" not in status, out  # whatever `fwspool status` prints
    assert len(re.findall(r"^ +1 \| (started|completed|exited) \| ", out, re.M)) == 3, out
    base = re.search(r"under (/\S+)", out)
    assert base is not None and not os.path.exists(base.group(1))  # cleaned up
    assert not os.path.exists(private_inbox) or not os.listdir(private_inbox)  # the demo's own inbox

    # The last two lines: the README's, naming the fwspool the line installed in the clone's venv.
    fwspool = str(clone / ".venv" / "bin" / "fwspool")
    rocket_launch, cron = out.rstrip("\n").splitlines()[-3::2]
    assert (rocket_launch, cron) == next_lines(fwspool)
    assert rocket_launch == doc_line(f"rocket_launch: {README_FWSPOOL}").replace(README_FWSPOOL, fwspool)
    assert cron == doc_line("*/5 * * * * ").replace(README_FWSPOOL, fwspool)
    assert out.rstrip("\n").splitlines()[-1] == cron

    # The quick start's "What you will see": the lines of a `fwspool sync` that did something, but
    # for the counts (how many pings a run writes depends on the machine's speed).
    [seen] = code_blocks(doc_section("Quick start"), "text")
    step2 = out.split("    step2: `fwspool rlaunch`, then `fwspool sync`:\n", 1)[1].split("    step3: ", 1)[0]
    printed = "".join(line.strip() + "\n" for line in step2.splitlines())
    assert re.sub(r"\d+", "N", unstamped(seen)) == re.sub(r"\d+", "N", unstamped(printed)), out
