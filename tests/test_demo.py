"""``fwspool demo``: the whole workflow to its end, the outage included, then ``fwspool status``,
a journal query, and the README's two lines for this installation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fwspool.demo import README_FWSPOOL, next_lines
from fwspool.testing.commands import fwspool_cmd

REPO = Path(__file__).resolve().parent.parent


def readme_line(startswith: str) -> str:
    lines = [ln.strip() for ln in (REPO / "README.md").read_text().splitlines()]
    found = [ln for ln in lines if ln.startswith(startswith)]
    assert len(found) == 1, found
    return found[0]


def test_the_demo_runs_the_workflow_to_its_end_and_ends_with_the_two_lines_a_user_needs(
    tmp_path: Path, private_inbox: str
) -> None:
    res = subprocess.run(fwspool_cmd("demo"), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
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

    # The last two lines: the README's, naming this installation's fwspool.
    fwspool = os.path.join(os.path.dirname(sys.executable), "fwspool")
    rocket_launch, cron = out.rstrip("\n").splitlines()[-3::2]
    assert (rocket_launch, cron) == next_lines(fwspool)
    assert rocket_launch == readme_line(f"rocket_launch: {README_FWSPOOL}").replace(README_FWSPOOL, fwspool)
    assert cron == readme_line("*/5 * * * * ").replace(README_FWSPOOL, fwspool)
    assert out.rstrip("\n").splitlines()[-1] == cron
