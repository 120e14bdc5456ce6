"""Packed jobs without a batch system: blocks reserved as ``fwspool qlaunch`` reserves them, run
by ``fwspool rlaunch --block`` as a job runs it, then ingested and pushed to a real LaunchPad."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, FWorker, PyTask, ScriptTask

from fwspool import block, qlaunch
from fwspool.errors import DataError
from fwspool.events import utcnow
from fwspool.journal import Journal
from fwspool.qlaunch import Block
from fwspool.testing.commands import fwspool_cmd, job_env
from fwspool.testing.journal_file import ingest_and_push, query
from fwspool.testing.waiting import wait_for


def sleeper(name: str, seconds: float, **spec: Any) -> Firework:
    return Firework(PyTask(func="time.sleep", args=[seconds]), name=name, spec=spec)


def fizzler(name: str) -> Firework:
    return Firework(ScriptTask.from_str("exit 3"), name=name)


def add_all(lp: Any, *fws: Firework) -> list[int]:
    """Each Firework its own workflow; their ids in order."""
    ids = []
    for fw in fws:
        ids.append(list(lp.add_wf(fw).values())[0])
    return ids


def make_block(
    lp: Any, root: Path, pack: int, *, walltime: float | None = None, parallel: int = 1, margin: float = 0
) -> Block:
    b = qlaunch.reserve_block(lp, FWorker(), str(root), pack)
    assert b is not None
    block.write_manifest(b.block_dir, b.manifest(walltime_seconds=walltime, parallel=parallel, margin=margin))
    return b


def run_block(b: Block, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        fwspool_cmd("rlaunch", "singleshot", "--offline", "--block", b.block_dir, *args),
        cwd=b.block_dir,
        env=env or job_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def state(lp: Any, fw_id: int) -> str:
    return str(lp.fireworks.find_one({"fw_id": fw_id})["state"])


def launch_of(lp: Any, fw_id: int) -> dict[str, Any]:
    fw = lp.fireworks.find_one({"fw_id": fw_id})
    return dict(lp.launches.find_one({"launch_id": (fw["launches"] or fw["archived_launches"])[-1]}))


def push(journal_path: str, mongo_uri: str, db_name: str, b: Block) -> Any:
    return ingest_and_push(journal_path, mongo_uri, db_name, [b.block_dir])


def test_a_block_runs_its_launches_in_order_and_a_fizzle_does_not_stop_the_others(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    ids = add_all(launchpad, sleeper("a", 0.2), fizzler("b"), sleeper("c", 0.2))
    b = make_block(launchpad, tmp_path, 5)
    assert [fw.fw_id for fw, _l, _d in b.reserved] == ids
    assert all(os.path.basename(d).startswith("launcher_") for _fw, _l, d in b.reserved)
    assert os.path.basename(b.block_dir).startswith("block_")
    code, out = finished(run_block(b))
    assert code == 0, out
    push(journal_path, mongo_uri, db_name, b)
    assert [state(launchpad, i) for i in ids] == ["COMPLETED", "FIZZLED", "COMPLETED"]
    starts = [launch_of(launchpad, i)["time_start"] for i in ids]
    ends = [launch_of(launchpad, i)["time_end"] for i in ids]
    assert starts[0] < ends[0] <= starts[1] < ends[1] <= starts[2], (starts, ends)
    # Each launch has its own launch directory, as FireWorks' rapidfire makes them.
    dirs = {launch_of(launchpad, i)["launch_dir"] for i in ids}
    assert len(dirs) == 3 and all(os.path.dirname(d) == b.block_dir for d in dirs)


def test_a_parallel_block_runs_its_launches_at_once(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    ids = add_all(launchpad, *(sleeper(f"p{i}", 3) for i in range(4)))
    b = make_block(launchpad, tmp_path, 4, parallel=4)
    code, out = finished(run_block(b))
    assert code == 0, out
    push(journal_path, mongo_uri, db_name, b)
    assert {state(launchpad, i) for i in ids} == {"COMPLETED"}
    launches = [launch_of(launchpad, i) for i in ids]
    assert max(la["time_start"] for la in launches) < min(la["time_end"] for la in launches)


FORKED_LAUNCH_KNOWS = """
import os, sys
from fireworks.utilities.fw_serializers import SAVED_FW_MODULES
from fwspool.block import BlockLaunch, forked_launch

# The child exits 0 when FireWorks already knows where PyTask is: it then skips its walk of
# USER_PACKAGES (seconds when a pilot's launches all start at once).
start = forked_launch(lambda launch_dir, fw_id: 0 if "PyTask" in SAVED_FW_MODULES else 3, set())
for launch_dir in sys.argv[1:]:
    _pid, status = os.waitpid(start(BlockLaunch(launch_dir, 1, 1), launch_dir), 0)
    print("exit", os.waitstatus_to_exitcode(status))
"""


def test_a_forked_launch_finds_its_task_classes_already_looked_up(tmp_path: Path) -> None:
    damaged, good = tmp_path / "damaged", tmp_path / "good"
    damaged.mkdir()
    good.mkdir()
    (damaged / "FW.json").write_text('{"spec": ')
    (good / "FW.json").write_text(sleeper("s", 0).to_format("json"))
    # A fresh interpreter: this one may have met PyTask already. A damaged FW.json is the
    # launch's to report: its child starts all the same (and, here, finds nothing looked up).
    out = subprocess.run(
        [sys.executable, "-c", FORKED_LAUNCH_KNOWS, str(damaged), str(good)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    exits = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("exit ")]
    assert exits == ["3", "0"], out.stdout + out.stderr


def started_in(b: Block, index: int) -> bool:
    return any(
        '"type":"started"' in p.read_text(errors="replace")
        for p in Path(b.reserved[index][2]).glob("fwspool-*.spool")
    )


def test_sigterm_fizzles_the_running_launch_and_releases_those_not_started(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    ids = add_all(launchpad, sleeper("done", 0.1), sleeper("running", 6), sleeper("r1", 0), sleeper("r2", 0))
    b = make_block(launchpad, tmp_path, 4)
    proc = run_block(b)
    wait_for(lambda: started_in(b, 1), 60, "the second launch started")
    proc.send_signal(signal.SIGTERM)
    code, out = finished(proc)
    assert code == -signal.SIGTERM, out
    summary = push(journal_path, mongo_uri, db_name, b)
    assert summary.released == 2
    assert [state(launchpad, i) for i in ids] == ["COMPLETED", "FIZZLED", "READY", "READY"]
    assert launch_of(launchpad, ids[1])["action"]["stored_data"]["_fwspool_exit"]["signal_name"] == "SIGTERM"
    forgotten = {d["launch_id"]: d["deprecated"] for d in launchpad.offline_runs.find()}
    assert [forgotten[lid] for lid in b.launch_ids[2:]] == [True, True]
    # Released launches are over for the login node: their pointers and files are not read again.
    rows = query(journal_path, "SELECT launch_id FROM launches WHERE terminal_at IS NOT NULL")
    assert set(b.launch_ids[2:]) <= {r["launch_id"] for r in rows}
    # What `fwspool status` shows of the block (fwspool.journal.views.OperatorViews.blocks).
    with Journal.open(journal_path) as journal:
        [shown] = journal.blocks()
    assert shown["block_dir"] == b.block_dir and shown["launches"] == 4
    assert (shown["completed"], shown["ended"], shown["released"], shown["running"]) == (1, 1, 2, 0)
    # And a requeued run of the block runs again only the interrupted launch.
    code, out = finished(run_block(b))
    assert code == 0, out
    assert "was completed by an earlier run" in out and out.count("was released by an earlier run") == 2
    push(journal_path, mongo_uri, db_name, b)
    assert [state(launchpad, i) for i in ids] == ["COMPLETED", "COMPLETED", "READY", "READY"]
    running = launch_of(launchpad, ids[1])["state_history"][1]
    assert running["interrupted_runs"][0]["exit"]["signal_name"] == "SIGTERM"


def test_sigterm_in_a_parallel_block_ends_every_running_launch(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    ids = add_all(launchpad, sleeper("a", 60), sleeper("b", 60), sleeper("c", 0), sleeper("d", 0))
    b = make_block(launchpad, tmp_path, 4, parallel=2)
    proc = run_block(b)
    wait_for(lambda: started_in(b, 0) and started_in(b, 1), 60, "both slots busy")
    proc.send_signal(signal.SIGTERM)
    code, out = finished(proc)
    assert code == -signal.SIGTERM, out
    push(journal_path, mongo_uri, db_name, b)
    assert [state(launchpad, i) for i in ids] == ["FIZZLED", "FIZZLED", "READY", "READY"]


def test_no_launch_starts_within_the_margin_of_the_deadline(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    ids = add_all(
        launchpad,
        sleeper("first", 8),
        sleeper("too-late", 0),
        sleeper("fits", 0),
        sleeper("long", 0, _fwspool_estimate=1000),
    )
    b = make_block(launchpad, tmp_path, 4, walltime=100, margin=93)
    # The first starts with ~100 s left (within 7 s of the block's start, even on a loaded
    # machine: a margin of 98.5 s left 1.5 s, and the first was released under load); the
    # second, 8 s later, has < 93 s: released, and the same for the others; with a margin of 0
    # only the one whose estimate does not fit.
    code, out = finished(run_block(b))
    assert code == 0, out
    assert "less than the margin (93 s)" in out
    push(journal_path, mongo_uri, db_name, b)
    assert [state(launchpad, i) for i in ids] == ["COMPLETED", "READY", "READY", "READY"]
    b2 = make_block(launchpad, tmp_path, 4, walltime=100, margin=0)
    code, out = finished(run_block(b2))
    assert code == 0, out
    assert "+ its estimate (1000 s)" in out
    push(journal_path, mongo_uri, db_name, b2)
    assert [state(launchpad, i) for i in ids] == ["COMPLETED", "COMPLETED", "COMPLETED", "READY"]


def test_fireworks_with_different_queueadapter_settings_are_not_packed_together(
    launchpad: Any, tmp_path: Path
) -> None:
    big = {"nodes": 2, "walltime": "00:30:00"}
    ids = add_all(
        launchpad,
        sleeper("plain1", 0),
        sleeper("big1", 0, _queueadapter=big),
        sleeper("plain2", 0),
        sleeper("big2", 0, _queueadapter=dict(reversed(list(big.items())))),
    )
    first = qlaunch.reserve_block(launchpad, FWorker(), str(tmp_path), 10)
    second = qlaunch.reserve_block(launchpad, FWorker(), str(tmp_path), 10)
    assert first is not None and second is not None
    assert [fw.fw_id for fw, _l, _d in first.reserved] == [ids[0], ids[2]]
    assert [fw.fw_id for fw, _l, _d in second.reserved] == [ids[1], ids[3]]
    assert second.queueadapter == big and first.queueadapter == {}
    assert qlaunch.reserve_block(launchpad, FWorker(), str(tmp_path), 10) is None


def test_the_fworker_query_and_category_decide_what_is_packed(launchpad: Any, tmp_path: Path) -> None:
    ids = add_all(
        launchpad,
        sleeper("gpu", 0, _category="gpu"),
        sleeper("cpu", 0, _category="cpu"),
        sleeper("gpu-small", 0, _category="gpu", size=1),
        sleeper("gpu-large", 0, _category="gpu", size=9),
    )
    b = qlaunch.reserve_block(
        launchpad, FWorker(category="gpu", query={"spec.size": {"$ne": 9}}), str(tmp_path), 10
    )
    assert b is not None
    assert [fw.fw_id for fw, _l, _d in b.reserved] == [ids[0], ids[2]]
    doc = launchpad.launches.find_one({"launch_id": b.launch_ids[1]})
    assert doc["fworker"]["category"] == "gpu" and doc["state"] == "RESERVED"


def test_a_failed_submission_hands_every_reservation_back(launchpad: Any, tmp_path: Path) -> None:
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    ids = add_all(launchpad, sleeper("a", 0), sleeper("b", 0))
    qa = CommonAdapter(
        "SLURM",
        rocket_launch="fwspool rlaunch singleshot --offline",
        walltime="00:01:00",
        _q_commands_override={"submit_cmd": "false"},
    )
    said: list[str] = []
    with pytest.raises(qlaunch.SubmissionError, match="handed back"):
        qlaunch.submit_pack(launchpad, FWorker(), qa, str(tmp_path), pack=5, say=said.append)
    assert [state(launchpad, i) for i in ids] == ["READY", "READY"]
    # The adapter is as it was (rapidfire submits the next job through it).
    assert qa["rocket_launch"] == "fwspool rlaunch singleshot --offline" and "job_name" not in qa
    # The default margin (60 s) leaves nothing of a one-minute job: said before submitting.
    assert any("warning: the margin (60 s) is not shorter than the walltime (60 s)" in line for line in said)
    assert {d["deprecated"] for d in launchpad.offline_runs.find()} == {True}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:10:00", 600),
        ("1-02:00:00", 93600),
        ("5:30", 330),
        ("90", 5400),
        (30, 1800),
        ("2-4", 187200),
        ("x", None),
    ],
)
def test_walltime_as_slurm_writes_it(text: Any, seconds: float | None) -> None:
    assert qlaunch.walltime_seconds(text) == seconds


def test_the_manifest_round_trips_and_a_damaged_one_is_one_line(tmp_path: Path) -> None:
    m = block.BlockManifest("fwspool-block", 1, utcnow(), [block.BlockLaunch("launcher_x", 3, 4)])
    block.write_manifest(str(tmp_path), m)
    assert block.read_manifest(str(tmp_path)) == m
    (tmp_path / block.MANIFEST_NAME).write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError):
        block.read_manifest(str(tmp_path))
