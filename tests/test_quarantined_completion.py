"""A completion ingest cannot take (too large, too deep) is never turned into a failure.

FireWorks stores any FWAction (a large one through GridFS) nested as deep as MongoDB stores
documents. fwspool's limits are a guard against runaway files: a completion beyond them is
quarantined, its launch waits visibly (a warning every push, the events pending) instead of being
FIZZLED as "exited before completing", and after the user raises the limit,
``fwspool ingest --retry-quarantined`` brings the completion in and the push completes the
Firework exactly as FireWorks' own ``recover_offline`` does.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, ScriptTask, Workflow
from fw_tasks import ResultTask

from fwspool.reserve import reserve_offline
from fwspool.testing.commands import invoke, run_fireworks_offline, run_fwspool
from fwspool.testing.docs import doc_line
from fwspool.testing.journal_file import query
from fwspool.testing.launchpad import recover_offline, snapshot

MIB = 1 << 20


def two_steps(**task: Any) -> Workflow:
    a = Firework(ResultTask(**task), name="result", fw_id=1)
    b = Firework(ScriptTask.from_str("echo next"), name="next", parents=[a], fw_id=2)
    return Workflow([a, b], name="results")


def run_both(twins: Any, tmp_path: Path, wf: Workflow) -> tuple[str, str]:
    """The same workflow reserved on both LaunchPads; FireWorks' reference run recovered."""
    ref, fws = twins
    for lp in twins:
        lp.add_wf(wf)
    ref_dir, fws_dir = str(tmp_path / "ref"), str(tmp_path / "fws")
    reserve_offline(ref, ref_dir)
    reserve_offline(fws, fws_dir)
    assert run_fireworks_offline(ref_dir).returncode == 0
    res = run_fwspool(fws_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    recover_offline(ref)
    return ref_dir, fws_dir


def readme_retry_line() -> list[str]:
    """The documented `fwspool ingest --retry-quarantined ...` line (docs/launchpad.md), split as a shell would."""
    return shlex.split(doc_line("fwspool ingest --retry-quarantined"))


def fwspool(*args: str) -> Any:
    return invoke(*args, catch_exceptions=False)


def states(lp: Any) -> dict[int, str]:
    return {d["fw_id"]: d["state"] for d in lp.fireworks.find({}, {"fw_id": 1, "state": 1})}


@pytest.mark.parametrize("depth", [97, 150])
def test_a_result_nested_as_deep_as_fireworks_stores_it_is_completed(
    twins: Any, tmp_path: Path, journal_path: str, mongo_uri: str, depth: int
) -> None:
    ref, fws = twins
    ref_dir, fws_dir = run_both(twins, tmp_path, two_steps(depth=depth))
    assert fwspool("ingest", "--journal", journal_path, "--root", fws_dir).exit_code == 0
    assert fwspool("push", "--journal", journal_path, "--uri", mongo_uri, "--name", fws.name).exit_code == 0
    assert states(ref) == {1: "COMPLETED", 2: "READY"}
    assert snapshot(fws, (fws_dir,)) == snapshot(ref, (ref_dir,))
    assert query(journal_path, "SELECT count(*) AS n FROM quarantine") == [{"n": 0}]


def test_a_completion_over_the_record_limit_waits_then_completes_after_a_retry(
    twins: Any, tmp_path: Path, journal_path: str, mongo_uri: str
) -> None:
    ref, fws = twins
    ref_dir, fws_dir = run_both(twins, tmp_path, two_steps(size=3 * MIB))
    push = ("push", "--journal", journal_path, "--uri", mongo_uri, "--name", fws.name)

    ingested = fwspool("ingest", "--journal", journal_path, "--root", fws_dir, "--max-record", str(MIB))
    assert ingested.exit_code == 0 and "1 quarantined" in ingested.output
    for _ in range(2):  # every pass says so, and nothing is decided
        pushed = fwspool(*push)
        assert pushed.exit_code == 0
        assert "completion is not in the journal" in pushed.output + pushed.stderr
        assert "--retry-quarantined" in pushed.output + pushed.stderr
        assert states(fws) == {1: "RUNNING", 2: "WAITING"}
    (exit_row,) = query(journal_path, "SELECT pushed_at FROM events WHERE type = 'exited'")
    assert exit_row["pushed_at"] is None

    # The old limit still refuses it: it stays, with the reason.
    again = fwspool("ingest", "--journal", journal_path, "--retry-quarantined", "--max-record", str(MIB))
    assert again.exit_code == 0 and "still quarantined" in again.output + again.stderr
    assert states(fws) == {1: "RUNNING", 2: "WAITING"}

    # The documented line, word for word (the journal from FWSPOOL_JOURNAL).
    retried = invoke(*readme_retry_line()[1:], env={"FWSPOOL_JOURNAL": journal_path}, catch_exceptions=False)
    assert retried.exit_code == 0, retried.output
    assert "1 record recovered from quarantine" in retried.output
    assert query(journal_path, "SELECT count(*) AS n FROM quarantine") == [{"n": 0}]
    assert fwspool(*push).exit_code == 0
    assert states(fws) == states(ref) == {1: "COMPLETED", 2: "READY"}
    assert len(fws.launches.find_one({"launch_id": 1})["action"]["stored_data"]["blob"]) == 3 * MIB
    assert snapshot(fws, (fws_dir,)) == snapshot(ref, (ref_dir,))


def test_sync_takes_the_same_limits_and_the_retry(
    twins: Any, tmp_path: Path, journal_path: str, mongo_uri: str
) -> None:
    ref, fws = twins
    ref_dir, fws_dir = run_both(twins, tmp_path, two_steps(size=2 * MIB))
    sync = ("sync", "--journal", journal_path, "--root", fws_dir, "--uri", mongo_uri, "--name", fws.name)
    first = fwspool(*sync, "--max-record", str(MIB))
    assert first.exit_code == 0 and "completion is not in the journal" in first.output + first.stderr
    assert states(fws) == {1: "RUNNING", 2: "WAITING"}
    second = fwspool(*sync, "--max-record", str(4 * MIB), "--retry-quarantined")
    assert second.exit_code == 0, second.output
    assert states(fws) == states(ref) == {1: "COMPLETED", 2: "READY"}
    assert snapshot(fws, (fws_dir,)) == snapshot(ref, (ref_dir,))
