"""``fwspool rlaunch`` and ``fwspool emit`` against real FireWorks and a real MongoDB-wire server.

The reference is FireWorks' own offline rocket: the same Firework spec is reserved twice exactly
as ``qlaunch -r`` does (``checkout_fw(..., state="RESERVED")`` + ``setup_offline_job``), one
launch directory is run by ``rlaunch singleshot --offline``, its twin by ``fwspool rlaunch``, and
the spool must say what FireWorks wrote to ``FW_offline.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fw_tasks
import msgspec
import pytest
from fireworks import Firework, FWAction, FWorker, PyTask, ScriptTask
from fireworks.utilities.fw_utilities import get_my_host, get_my_ip

from fwspool.devserver import free_port
from fwspool.events import Exited, Record
from fwspool.reserve import reserve_offline
from fwspool.spool import SPOOL_GLOB, OsSourceFile, SpoolReader
from fwspool.testing.commands import fireworks_command, fwspool_cmd, job_env
from fwspool.testing.journal_file import ingest_and_push
from fwspool.testing.launchpad import throwaway_launchpad
from fwspool.testing.waiting import wait_for

BIN_DIR = Path(sys.executable).parent
TIMEOUT = 60


# ---------------------------------------------------------------------------------------------
# Helpers

#: FireWorks' own offline rocket, the reference.
REFERENCE_CMD = [fireworks_command("rlaunch"), "singleshot", "--offline"]


def run_all(
    *jobs: tuple[list[str], Path], env: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Run commands concurrently, each in its directory; wait for all."""
    procs = [
        (
            subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env or job_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            cmd,
        )
        for cmd, cwd in jobs
    ]
    results = []
    for proc, cmd in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


def spool_files(launch_dir: Path) -> list[Path]:
    return sorted(launch_dir.glob(SPOOL_GLOB))


def read_records(path: Path) -> list[Record]:
    """Every record of one spool file, decoded with the project's own reader and types."""
    source = OsSourceFile(str(path))
    try:
        reader = SpoolReader(source, 0)
        records = []
        for result in reader:
            assert not result.damage, f"damaged bytes in {path}: {result.damage}"
            records += [msgspec.json.decode(fr.payload, type=Record) for fr in result.frames]
        assert not reader.torn, f"torn tail in {path}"
    finally:
        source.close()
    return records


def the_spool(launch_dir: Path) -> list[Record]:
    """The records of the one spool file a normal run writes."""
    files = spool_files(launch_dir)
    assert len(files) == 1, f"expected one spool file in {launch_dir}, got {files}"
    records = read_records(files[0])
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert len({r.writer for r in records}) == 1
    assert files[0].name == f"fwspool-{records[0].writer}.spool"
    return records


def etype(record: Record) -> str:
    return type(record.event).__struct_config__.tag  # type: ignore[no-any-return]


def of_type(records: list[Record], name: str) -> list[Any]:
    return [r.event for r in records if etype(r) == name]


def is_utc(value: dt.datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)


TIMESTAMP_KEYS = {"created_on", "updated_on"}


def normalise(value: Any, launch_dir: Path) -> Any:
    """What may legitimately differ between twin runs: creation timestamps of new Fireworks, and
    this run's own launch directory (in ``_job_info``)."""
    if isinstance(value, dict):
        return {k: "<time>" if k in TIMESTAMP_KEYS else normalise(v, launch_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, launch_dir) for v in value]
    if value == str(launch_dir):
        return "<launch_dir>"
    return value


def job_info(action: dict[str, Any]) -> list[dict[str, Any]]:
    return [info for mod in action["mod_spec"] for info in mod.get("_push_all", {}).get("_job_info", [])]


def assert_same_action(ours: dict[str, Any], ref: dict[str, Any], our_dir: Path, ref_dir: Path) -> None:
    """The FWAction dicts are equal field by field, up to timestamps, launch dirs and the text of
    a stack trace (whose last line, the exception, must still match)."""
    ours, ref = json.loads(json.dumps(ours)), json.loads(json.dumps(ref))
    assert set(ours) == set(ref)
    ours_exc = ours["stored_data"].get("_exception")
    ref_exc = ref["stored_data"].get("_exception")
    if ref_exc is not None:
        assert ours_exc is not None and set(ours_exc) == set(ref_exc) == {"_stacktrace", "_details"}
        last = [e["_stacktrace"].strip().splitlines()[-1] for e in (ours_exc, ref_exc)]
        assert last[0] == last[1]
        ours_exc["_stacktrace"] = ref_exc["_stacktrace"] = "<stacktrace>"
    for key in sorted(ref):
        assert normalise(ours[key], our_dir) == normalise(ref[key], ref_dir), (
            f"FWAction field {key!r} differs"
        )


@pytest.fixture
def twin_launchpads(launchpad: Any, mongo_uri: str, db_name: str) -> Iterator[tuple[Any, Any]]:
    """Two LaunchPads on two fresh databases: the same workflow gets the same fw_id and launch_id
    in both, so twin runs differ only in what legitimately differs."""
    with throwaway_launchpad(mongo_uri, db_name + "_twin") as other:
        yield launchpad, other


# ---------------------------------------------------------------------------------------------
# 1. Twin runs: FireWorks' offline rocket vs fwspool rlaunch

FWACTION_FILE = {
    "stored_data": {"from_file": 7, "text": "ünïcode"},
    "exit": False,
    "update_spec": {"f": 2},
    "mod_spec": [{"_push": {"files": "x"}}],
    "additions": [],
    "detours": [],
    "defuse_children": False,
}


def scenario(name: str) -> tuple[Firework, str, int]:
    """(Firework, expected final state, number of tasks that run)."""
    if name == "chain":
        # Stored data from PyTasks, update_spec feeding the next task's inputs, then an FWAction
        # with mod_spec, additions and detours (which skips any later task); _pass_job_info.
        tasks = [
            PyTask(func="fw_tasks.add", args=[1, 2], stored_data_varname="sum", outputs=["a"]),
            PyTask(func="fw_tasks.add", args=[10], inputs=["a"], stored_data_varname="sum2"),
            fw_tasks.ActionTask(),
            PyTask(func="fw_tasks.plain_boom", args=["never runs: additions skip the rest"]),
        ]
        spec = {"_pass_job_info": True, "a": 5, "counter": 1, "_job_info": [{"fw_id": 99, "name": "parent"}]}
        return Firework(tasks, spec=spec, name="chain"), "COMPLETED", 3
    if name == "fwaction_file":
        # A shell task leaves FWAction.json; FireWorks then reads it after *every* later task too.
        command = f"echo '{json.dumps(FWACTION_FILE)}' > FWAction.json"
        tasks = [
            PyTask(func="fw_tasks.add", args=[2, 3], stored_data_varname="early"),
            ScriptTask.from_str(command),
            PyTask(func="fw_tasks.add", args=[4, 5], stored_data_varname="late"),
        ]
        spec = {"_preserve_fworker": True, "_pass_job_info": True}
        return Firework(tasks, spec=spec, name="fwaction_file"), "COMPLETED", 3
    if name == "exit_defuse":
        tasks = [
            fw_tasks.ActionTask(
                dynamic=False, exit=True, defuse_children=True, defuse_workflow=True, propagate=True
            ),
            PyTask(func="fw_tasks.plain_boom", args=["never runs: exit=True"]),
        ]
        return Firework(tasks, name="exit_defuse"), "COMPLETED", 1
    if name == "fizzle_python":
        tasks = [
            PyTask(func="fw_tasks.add", args=[1, 1], stored_data_varname="before", outputs=["b"]),
            PyTask(func="fw_tasks.boom", args=["kaput"]),
            PyTask(func="fw_tasks.add", args=[0, 0], stored_data_varname="after"),
        ]
        return Firework(tasks, spec={"_pass_job_info": True}, name="fizzle_python"), "FIZZLED", 2
    if name == "fizzle_script":
        tasks = [ScriptTask({"script": ["echo out; exit 3"], "use_shell": True, "fizzle_bad_rc": True})]
        return Firework(tasks, name="fizzle_script"), "FIZZLED", 1
    raise ValueError(name)


SCENARIOS = ["chain", "fwaction_file", "exit_defuse", "fizzle_python", "fizzle_script"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_spool_matches_fireworks_offline_rocket(
    name: str, twin_launchpads: tuple[Any, Any], tmp_path: Path
) -> None:
    lp_ref, lp_ours = twin_launchpads
    fw_spec, state, n_tasks = scenario(name)
    for lp in twin_launchpads:
        lp.add_wf(Firework.from_dict(fw_spec.to_dict()))
    ref_dir, our_dir = tmp_path / "reference", tmp_path / "fwspool"
    ref_fw, ref_launch = reserve_offline(lp_ref, str(ref_dir))
    our_fw, our_launch = reserve_offline(lp_ours, str(our_dir))
    assert (ref_fw.fw_id, ref_launch) == (our_fw.fw_id, our_launch)
    if name == "chain":
        # rlaunch finds my_fworker.yaml in its config dir (the current one); fwspool must too.
        for d in (ref_dir, our_dir):
            (d / "my_fworker.yaml").write_text(
                "name: gpu-node\ncategory: gpu\nquery: '{}'\nenv: {scratch: /tmp/s}\n"
            )

    ref, ours = run_all((REFERENCE_CMD, ref_dir), (fwspool_cmd("rlaunch"), our_dir))
    assert ref.returncode == 0, ref.stderr
    # rlaunch exits 0 even when the Firework fizzled; fwspool says so (docs/commands.md, "Exit codes").
    assert ours.returncode == 0, ours.stderr  # as FireWorks' rlaunch, FIZZLED or not
    assert "Traceback" not in ours.stderr or state == "FIZZLED"
    assert "Exception in thread" not in ours.stderr

    offline = json.loads((ref_dir / "FW_offline.json").read_text())
    assert offline["state"] == state, offline
    # fwspool never rewrites FireWorks' files: FW_offline.json still holds only the launch id.
    assert json.loads((our_dir / "FW_offline.json").read_text()) == {"launch_id": our_launch}
    assert not (our_dir / "FW_ping.json").exists()

    records = the_spool(our_dir)
    assert all(r.launch_id == our_launch and r.fw_id == our_fw.fw_id for r in records)
    types = [etype(r) for r in records]
    assert types[0] == "started" and types[-2:] == ["completed", "exited"]
    assert set(types) <= {"started", "checkpoint", "ping", "completed", "exited"}

    started = records[0].event
    assert started.host == get_my_host() and started.ip == get_my_ip()
    expected_worker = FWorker.from_file(str(our_dir / "my_fworker.yaml")) if name == "chain" else FWorker()
    assert started.fworker == json.loads(json.dumps(expected_worker.to_dict()))
    assert is_utc(started.started_on)

    checkpoints = of_type(records, "checkpoint")
    assert [c.checkpoint["_task_n"] for c in checkpoints] == list(range(n_tasks))
    assert checkpoints[-1].checkpoint == offline["checkpoint"]
    assert all(is_utc(c.ping_time) for c in checkpoints)

    (completed,) = of_type(records, "completed")
    assert completed.state == offline["state"]
    assert is_utc(completed.completed_on) and completed.completed_on >= started.started_on
    assert_same_action(completed.action, offline["fwaction"], our_dir, ref_dir)
    (exited,) = of_type(records, "exited")
    assert (exited.returncode, exited.signal) == (ours.returncode, None)

    action = completed.action
    if state == "FIZZLED":
        stored = action["stored_data"]
        assert set(stored) == {"_message", "_task", "_exception"}
        assert (
            stored["_message"]
            == offline["fwaction"]["stored_data"]["_message"]
            == "runtime error during task"
        )
        assert stored["_task"] == offline["fwaction"]["stored_data"]["_task"]
        assert action["exit"] is True
    if name == "chain":
        assert action["stored_data"]["sum"] == 3 and action["stored_data"]["sum2"] == 13
        assert action["stored_data"]["seen_a"] == 3  # the first task's update_spec reached the third
        assert action["stored_data"]["seen_fw_env"] == {"scratch": "/tmp/s"}
        assert [w["name"] for w in action["additions"]] == ["added"]
        assert [w["name"] for w in action["detours"]] == ["detour"]
    if name == "fwaction_file":
        assert action["stored_data"] == {"early": 5, **FWACTION_FILE["stored_data"]}
        assert action["update_spec"] == {"f": 2, "_fworker": "Automatically generated Worker"}
    if name == "exit_defuse":
        assert (
            action["exit"] and action["defuse_children"] and action["defuse_workflow"] and action["propagate"]
        )
    if name in ("chain", "fwaction_file", "fizzle_python"):
        # _job_info records this run's own directory and the state FW.json holds: RESERVED, as in
        # FireWorks' offline rocket (its online rocket would say RUNNING).
        (ours_info, ref_info) = (job_info(action)[-1], job_info(offline["fwaction"])[-1])
        assert ours_info == {
            "fw_id": our_fw.fw_id,
            "name": name,
            "launch_dir": str(our_dir),
            "state": "RESERVED",
        }
        assert ref_info == {**ours_info, "launch_dir": str(ref_dir)}


# ---------------------------------------------------------------------------------------------
# 2. Pings


def test_pings_while_a_task_runs(launchpad: Any, tmp_path: Path) -> None:
    launchpad.add_wf(Firework([PyTask(func="time.sleep", args=[1.0])], name="sleepy"))
    launch_dir = tmp_path / "launch"
    reserve_offline(launchpad, str(launch_dir))
    (result,) = run_all((fwspool_cmd("rlaunch", "--ping-seconds", "0.2"), launch_dir))
    assert result.returncode == 0, result.stderr

    records = the_spool(launch_dir)
    types = [etype(r) for r in records]
    pings = [r.event.ping_time for r in records if etype(r) == "ping"]
    assert len(pings) >= 4, types  # ~5 from the ping thread during the 1 s task, one at the end
    assert pings == sorted(pings) and len(set(pings)) == len(pings)
    assert all(is_utc(p) for p in pings)
    assert types.index("checkpoint") < types.index("ping")
    assert max(i for i, t in enumerate(types) if t == "ping") < types.index("completed")
    assert records[0].event.started_on < pings[0] < of_type(records, "completed")[0].completed_on


# ---------------------------------------------------------------------------------------------
# 3. _launch_dir


def test_launch_dir_in_spec_moves_the_run_but_not_the_spool(
    twin_launchpads: tuple[Any, Any], tmp_path: Path
) -> None:
    elsewhere = {"reference": tmp_path / "scratch-ref", "fwspool": tmp_path / "scratch"}
    for lp, key in zip(twin_launchpads, elsewhere, strict=True):
        tasks = [
            ScriptTask.from_str("pwd > where.txt"),
            PyTask(func="fw_tasks.add", args=[1, 1], stored_data_varname="x"),
        ]
        lp.add_wf(
            Firework(tasks, spec={"_launch_dir": str(elsewhere[key]), "_pass_job_info": True}, name="moved")
        )
    ref_dir, our_dir = tmp_path / "reference", tmp_path / "fwspool"
    reserve_offline(twin_launchpads[0], str(ref_dir))
    reserve_offline(twin_launchpads[1], str(our_dir))
    ref, ours = run_all((REFERENCE_CMD, ref_dir), (fwspool_cmd("rlaunch"), our_dir))
    assert ref.returncode == 0 and ours.returncode == 0, (ref.stderr, ours.stderr)

    target = elsewhere["fwspool"]
    records = the_spool(our_dir)  # the spool stays where the job started, nothing in the new dir
    assert not spool_files(target)
    types = [etype(r) for r in records]
    assert types[:2] == ["started", "launch_dir_changed"]
    assert records[1].event.launch_dir == str(target)
    assert (target / "where.txt").read_text().strip() == str(target)
    assert (target / "FW.json").exists()  # the Rocket writes FW.json where it runs
    assert not (our_dir / "where.txt").exists()
    (completed,) = of_type(records, "completed")
    assert completed.state == "COMPLETED"
    assert job_info(completed.action)[-1]["launch_dir"] == str(target)

    # FireWorks' offline rocket ignores _launch_dir (`if "_launch_dir" in spec and lp`): it runs
    # in place. fwspool follows the online rocket, which the LaunchPad would have used.
    assert (ref_dir / "where.txt").read_text().strip() == str(ref_dir)
    assert not elsewhere["reference"].exists()


# ---------------------------------------------------------------------------------------------
# 4. Walltime: SIGTERM


def test_sigterm_records_exited_with_the_signal_and_dies_of_it(launchpad: Any, tmp_path: Path) -> None:
    launchpad.add_wf(Firework([PyTask(func="time.sleep", args=[60])], name="long"))
    launch_dir = tmp_path / "launch"
    fw, launch_id = reserve_offline(launchpad, str(launch_dir))
    proc = subprocess.Popen(
        fwspool_cmd("rlaunch"),
        cwd=launch_dir,
        env=job_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def task_running() -> bool:
            files = spool_files(launch_dir)
            try:
                return bool(files) and "checkpoint" in [etype(r) for r in read_records(files[0])]
            except AssertionError:  # a record caught half-written: look again
                return False

        wait_for(task_running, 15, "the task to start", every=0.02)
        started_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
        assert time.monotonic() - started_at < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM, err
    assert "Traceback" not in err

    files = spool_files(launch_dir)
    assert len(files) == 2, files  # the handler writes with a writer (and file) of its own
    by_file = {f: read_records(f) for f in files}
    main = next(rs for rs in by_file.values() if etype(rs[0]) == "started")
    (handler,) = (rs for rs in by_file.values() if rs is not main)
    assert [etype(r) for r in main] == ["started", "checkpoint"]
    assert len(handler) == 1 and handler[0].seq == 1 and handler[0].writer != main[0].writer
    exited = handler[0].event
    assert etype(handler[0]) == "exited"
    assert (exited.signal, exited.signal_name, exited.returncode) == (15, "SIGTERM", None)
    assert (handler[0].launch_id, handler[0].fw_id) == (launch_id, fw.fw_id)
    assert not any(etype(r) == "completed" for rs in by_file.values() for r in rs)


# ---------------------------------------------------------------------------------------------
# 5. No database, drop-in command line, bad input

NO_NETWORK = """
import os, socket, sys
_connect = socket.socket.connect
def guard(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        # Not an exception: pymongo connects from threads, where one would pass unnoticed.
        sys.stderr.write(f"network connection attempted to {address}\\n")
        sys.stderr.flush()
        os._exit(97)
    return _connect(self, address)
socket.socket.connect = guard
socket.socket.connect_ex = guard
sys.argv[0] = "fwspool"
from fwspool.cli import main
main()
"""


def test_rlaunch_never_opens_a_database_connection(launchpad: Any, tmp_path: Path) -> None:
    launchpad.add_wf(
        Firework([PyTask(func="fw_tasks.add", args=[1, 2], stored_data_varname="s")], name="offline")
    )
    launch_dir = tmp_path / "launch"
    fw, launch_id = reserve_offline(launchpad, str(launch_dir))
    # A launchpad file (as in an old rocket_launch line) pointing at a port nobody listens on,
    # an empty HOME (no ~/.fireworks config), and any TCP/IP connection is a hard failure.
    dead = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    (tmp_path / "my_launchpad.yaml").write_text(f"host: '{dead}'\nname: nowhere\nuri_mode: true\n")
    (tmp_path / "my_fworker.yaml").write_text("name: cfgdir-worker\ncategory: ''\nquery: '{}'\n")
    (tmp_path / "home").mkdir()
    env = job_env(HOME=str(tmp_path / "home"))
    cmd = [
        sys.executable,
        "-c",
        NO_NETWORK,
        "rlaunch",
        "-l",
        str(tmp_path / "my_launchpad.yaml"),
        "-c",
        str(tmp_path),
        "--loglvl",
        "CRITICAL",
        "-s",
        "singleshot",
        "--offline",
    ]
    began = time.monotonic()
    (result,) = run_all((cmd, launch_dir), env=env)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - began < 15
    records = the_spool(launch_dir)
    assert [etype(r) for r in records][-2:] == ["completed", "exited"]
    assert records[0].event.fworker["name"] == "cfgdir-worker"  # found in -c, as rlaunch does
    assert of_type(records, "completed")[0].action["stored_data"] == {"s": 3}

    # And with no launchpad file anywhere, from another directory via --launch-dir.
    launchpad.add_wf(
        Firework([PyTask(func="fw_tasks.add", args=[2, 2], stored_data_varname="s")], name="again")
    )
    second = tmp_path / "second"
    reserve_offline(launchpad, str(second))
    (result,) = run_all(
        ([sys.executable, "-c", NO_NETWORK, "rlaunch", "--launch-dir", str(second)], tmp_path / "home"),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert of_type(the_spool(second), "completed")[0].action["stored_data"] == {"s": 4}


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fwspool: "), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_rlaunch_bad_input_is_one_line_and_an_exit_code(tmp_path: Path) -> None:
    good_fw = Firework([PyTask(func="fw_tasks.add", args=[1, 2])], fw_id=1)
    cases: dict[str, tuple[dict[str, str], int, str]] = {
        "no_fw_json": ({"FW_offline.json": '{"launch_id": 1}'}, 66, "no FW.json"),
        "no_offline": ({"FW.json": good_fw.to_format("json")}, 66, "no FW_offline.json"),
        "torn_offline": (
            {"FW.json": good_fw.to_format("json"), "FW_offline.json": '{"launch_id": '},
            65,
            "launch_id",
        ),
        "offline_no_id": ({"FW.json": good_fw.to_format("json"), "FW_offline.json": "{}"}, 65, "launch_id"),
        "bad_fw_json": ({"FW.json": '{"spec": ', "FW_offline.json": '{"launch_id": 1}'}, 65, "FW.json"),
        "unknown_task": (
            {
                "FW.json": json.dumps(
                    {"spec": {"_tasks": [{"_fw_name": "{{no_such_module.Task}}"}]}, "fw_id": 1}
                ),
                "FW_offline.json": '{"launch_id": 1}',
            },
            65,
            "PYTHONPATH",
        ),
    }
    jobs = []
    for name, (files, _, _) in cases.items():
        d = tmp_path / name
        d.mkdir()
        for fname, text in files.items():
            (d / fname).write_text(text)
        jobs.append((fwspool_cmd("rlaunch"), d))
    good = tmp_path / "good"
    good.mkdir()
    (good / "FW.json").write_text(good_fw.to_format("json"))
    (good / "FW_offline.json").write_text('{"launch_id": 1}')
    (good / "bad_worker.yaml").write_text("name: w\ncategory: ''\n")
    jobs.append((fwspool_cmd("rlaunch", "--launch-dir", str(tmp_path / "missing")), tmp_path))
    jobs.append((fwspool_cmd("rlaunch", "-w", str(tmp_path / "nope.yaml")), good))
    jobs.append((fwspool_cmd("rlaunch", "-w", "bad_worker.yaml"), good))
    results = run_all(*jobs)
    for (name, (_, code, needle)), result in zip(cases.items(), results, strict=False):
        assert_one_line_error(result, code, needle)
        if name in ("no_fw_json", "bad_fw_json", "unknown_task"):
            # The launch id is known: the failed start is recorded, so the login node can say why
            # the Firework never ran instead of leaving it RESERVED.
            [record] = the_spool(tmp_path / name)
            assert isinstance(record.event, Exited), name
            assert (record.event.returncode, record.event.error) == (
                code,
                result.stderr.strip()[len("fwspool: ") :],
            )
        else:
            assert not spool_files(tmp_path / name), name  # no launch id: nothing can be recorded
    assert_one_line_error(results[-3], 66, "does not exist")
    assert_one_line_error(results[-2], 66, "nope.yaml does not exist")
    assert_one_line_error(results[-1], 78, "lacks the key 'query'")
    assert sorted(r.event.returncode for f in spool_files(good) for r in read_records(f)) == [66, 78]


def test_rlaunch_rejects_unknown_words_and_bad_ping_seconds(tmp_path: Path) -> None:
    a, b = run_all(
        (fwspool_cmd("rlaunch", "singleshot", "--bogus"), tmp_path),
        (fwspool_cmd("rlaunch", "--ping-seconds", "0"), tmp_path),
    )
    assert a.returncode == 2 and "unexpected arguments: --bogus" in a.stderr
    assert b.returncode == 2 and "--ping-seconds" in b.stderr
    assert not spool_files(tmp_path)


# ---------------------------------------------------------------------------------------------
# 6. fwspool emit from a shell


def test_emit_from_a_shell_round_trips(tmp_path: Path) -> None:
    launch_dir = tmp_path / "launch"
    launch_dir.mkdir()
    (launch_dir / "FW_offline.json").write_text('{"launch_id": 17}')
    fwspool = BIN_DIR / "fwspool"
    script = f"""
set -e
cd '{launch_dir}'
{fwspool} emit started --data '{{"host": "nid0001", "ip": "10.1.2.3"}}'
{fwspool} emit ping
{fwspool} emit checkpoint --data '{{"checkpoint": {{"_task_n": 0, "_all_stored_data": {{}}}}}}'
{fwspool} emit note --data '["relaxed", 3]'
{fwspool} emit completed --fw-id 5 --data '{{"state": "FIZZLED", "action": {{"stored_data": {{"e": -1.5}}}}}}'
{fwspool} emit exited --data '{{"returncode": 3}}'
{fwspool} emit --launch-dir '{tmp_path}' --launch-id 99 started
"""
    before = dt.datetime.now(dt.UTC)
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=TIMEOUT, env=job_env()
    )
    after = dt.datetime.now(dt.UTC)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" written to ") == 7

    files = spool_files(launch_dir)
    assert len(files) == 6  # one writer per process
    records = sorted((r for f in files for r in read_records(f)), key=lambda r: r.at)
    assert all(r.seq == 1 and r.launch_id == 17 for r in records)
    assert len({r.writer for r in records}) == 6
    assert [etype(r) for r in records] == ["started", "ping", "checkpoint", "note", "completed", "exited"]
    started, ping, checkpoint, note, completed, exited = (r.event for r in records)
    assert (started.host, started.ip) == ("nid0001", "10.1.2.3")
    assert before <= started.started_on <= after and is_utc(started.started_on)
    assert before <= ping.ping_time <= after
    assert checkpoint.checkpoint == {"_task_n": 0, "_all_stored_data": {}}
    assert checkpoint.ping_time is not None
    assert note.data == ["relaxed", 3]
    # A partial action is completed with FWAction's defaults: the pusher can load it as is.
    assert completed.state == "FIZZLED"
    assert completed.action == {**json.loads(json.dumps(FWAction().to_dict())), "stored_data": {"e": -1.5}}
    assert FWAction.from_dict(completed.action).stored_data == {"e": -1.5}
    assert records[4].fw_id == 5
    assert (exited.returncode, exited.signal) == (3, None)
    (other,) = [r for f in spool_files(tmp_path) for r in read_records(f)]
    assert (other.launch_id, etype(other)) == (99, "started")
    assert (other.event.host, other.event.ip) == (get_my_host(), get_my_ip())  # as rlaunch records


def test_emit_bad_input(tmp_path: Path) -> None:
    (tmp_path / "FW_offline.json").write_text('{"launch_id": 3}')
    (tmp_path / "empty").mkdir()
    results = run_all(
        (fwspool_cmd("emit", "ping", "--data", "{not json"), tmp_path),
        (fwspool_cmd("emit", "started", "--data", "[1, 2]"), tmp_path),
        (fwspool_cmd("emit", "completed", "--data", '{"state": "DONE"}'), tmp_path),
        (
            fwspool_cmd(
                "emit", "completed", "--data", '{"state": "COMPLETED", "action": {"additions": [{}]}}'
            ),
            tmp_path,
        ),
        (fwspool_cmd("emit", "--launch-dir", str(tmp_path / "nowhere"), "ping"), tmp_path),
        (fwspool_cmd("emit", "--launch-dir", str(tmp_path / "empty"), "ping"), tmp_path),
    )
    assert_one_line_error(results[0], 65, "--data is not valid JSON")
    assert_one_line_error(results[1], 65, "JSON object")
    assert_one_line_error(results[2], 65, "completed")
    assert_one_line_error(results[3], 65, "not a valid FWAction")
    assert_one_line_error(results[4], 66, "does not exist")
    assert_one_line_error(results[5], 66, "no FW_offline.json")
    assert not spool_files(tmp_path) and not spool_files(tmp_path / "empty")


def test_a_fw_id_that_is_not_the_reserved_one_is_refused_recorded_and_reported(
    launchpad: Any, mongo_uri: str, tmp_path: Path, journal_path: str
) -> None:
    """`qlaunch -r` appends `--fw_id N`; a line that reaches the wrong directory must not run."""
    launchpad.add_wf(Firework(ScriptTask.from_str("echo hi"), name="one"))
    d = tmp_path / "launch"
    fw, _launch_id = reserve_offline(launchpad, str(d))
    [result] = run_all((fwspool_cmd("rlaunch", "singleshot", "--offline", "--fw_id", "999"), d))
    assert_one_line_error(result, 65, "--fw_id 999 is not the Firework reserved")
    [record] = the_spool(d)
    assert isinstance(record.event, Exited) and record.event.returncode == 65
    ingest_and_push(journal_path, mongo_uri, launchpad.db.name, roots=(str(tmp_path),))
    launch = launchpad.launches.find_one({"fw_id": fw.fw_id})
    assert launchpad.get_fw_by_id(fw.fw_id).state == "FIZZLED"
    message = launch["action"]["stored_data"]["_message"]
    assert message.startswith(
        "fwspool: the job exited with return code 65 before the Firework completed: --fw_id 999"
    )
