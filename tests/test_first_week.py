"""A user's first week (issue 24): each rough edge a new user hit, through the command line, against
the real server, FireWorks and, where it matters, the private Slurm cluster."""

from __future__ import annotations

import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, ScriptTask, Workflow
from test_doctor import BIN, doctor, files, lines_by_check  # noqa: F401 - files: the fixture
from test_slurm_pack import add, jobs_of, qlaunch
from test_slurm_path import fw_state, launchpad_of, sleeper

from fwspool.reserve import reserve_offline
from fwspool.testing.commands import fwspool_cmd, invoke, job_env, reserved_and_run, unstamped
from fwspool.testing.launchpad import make_launchpad, recover_offline
from fwspool.testing.slurm_site import Site
from fwspool.testing.waiting import wait_for


def one_run_launch(lp: Any, tmp_path: Path) -> tuple[int, str]:
    """A Firework reserved as `qlaunch -r` does and run by `fwspool rlaunch`: (fw_id, launch dir)."""
    lp.add_wf(Firework(ScriptTask.from_str("echo hi"), name="one"))
    launch_dir = str(tmp_path / "launch")
    fw, _launch_id = reserved_and_run(lp, launch_dir)
    return int(fw.fw_id), launch_dir


def env_for(journal_path: str, mongo_uri: str, lp: Any) -> dict[str, str]:
    return {
        "FWSPOOL_JOURNAL": journal_path,
        "FWSPOOL_MONGODB_URI": mongo_uri,
        "FWSPOOL_MONGODB_NAME": lp.name,
    }


# -- item 1: `fwspool qlaunch ... rapidfire` with nothing READY -----------------------------------


def rapidfire(s: Site, *args: str) -> subprocess.Popen[str]:
    cmd = [str(s.fw / ".venv" / "bin" / "fwspool"), "qlaunch", "-r", "-l", str(s.launchpad_file)]
    cmd += [
        "-w",
        str(s.fw / "my_fworker.yaml"),
        "-q",
        str(s.qadapter),
        "--pack",
        "2",
        "rapidfire",
        *args,
    ]
    return subprocess.Popen(
        cmd, cwd=s.runs, env=s.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_rapidfire_with_nothing_ready_says_what_it_waits_for_and_when_it_looks_again(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    parent = Firework(ScriptTask.from_str("true"), name="parent")
    lp.add_wf(Workflow([parent, Firework(ScriptTask.from_str("true"), name="child", parents=[parent])]))
    reserve_offline(lp, str(site.home / "parent"))  # its job is queued: the child WAITING on it
    # --nlaunches 0 (the default): it waits while a Firework WAITING may become READY, as qlaunch.
    started = time.monotonic()
    out, _ = rapidfire(site, "--sleep", "1", "--timeout", "3").communicate(timeout=120)
    took = time.monotonic() - started
    lines = unstamped(out).splitlines()
    assert lines[0] == (
        "fwspool qlaunch: nothing READY for this FWorker; Fireworks WAITING on RESERVED or RUNNING ones may "
        "become READY; looking again in 1 s, until --timeout (3 s left)"
    ), out
    assert lines[-2:] == [
        "fwspool qlaunch: --timeout 3 s reached",
        "fwspool qlaunch: 0 jobs, 0 Fireworks submitted",
    ]
    assert 3 <= took < 30, took
    # --nlaunches N: it waits for N jobs; a sleep never goes past the timeout.
    out, _ = rapidfire(site, "--nlaunches", "2", "--sleep", "60", "--timeout", "2").communicate(timeout=120)
    assert unstamped(out).splitlines()[0] == (
        "fwspool qlaunch: nothing READY for this FWorker; 0 of 2 jobs submitted (--nlaunches); looking again in "
        "2 s, until --timeout (2 s left)"
    ), out
    # Ctrl-C while it waits: a line saying so, not `Aborted!`.
    proc = rapidfire(site, "--nlaunches", "infinite", "--sleep", "60")
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "(--nlaunches infinite); looking again in 60 s" in first, first
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    assert unstamped(rest).splitlines() == [
        "fwspool qlaunch: stopped by SIGINT: 0 jobs, 0 Fireworks submitted"
    ]


# -- item 4: forget says what happens to the Firework, and what to run next --------------------


def test_forget_says_what_becomes_of_the_firework_and_what_to_run_next(
    launchpad: Any, tmp_path: Path, journal_path: str, mongo_uri: str
) -> None:
    fw_id, launch_dir = one_run_launch(launchpad, tmp_path)
    env = env_for(journal_path, mongo_uri, launchpad)
    assert invoke("sync", "--root", launch_dir, env=env).exit_code == 0
    res = invoke("forget", str(fw_id), env=env)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        f"1 known launch forgotten: Firework {fw_id} (COMPLETED as last pushed)",
        "its events stay in the journal, unpushed; the next push marks its offline run forgotten (as `lpad "
        "forget_offline`), and the LaunchPad keeps the Firework as it is for good (a RUNNING or RESERVED one "
        f"never ends): `lpad rerun_fws -i {fw_id}` makes it READY to run again, `lpad defuse_fws -i {fw_id}` "
        f"stops it; `fwspool forget --undo {fw_id}` takes this back",
    ]
    res = invoke("forget", "--undo", str(fw_id), env=env)
    assert res.exit_code == 0 and res.output.startswith(f"1 known launch resumed: Firework {fw_id} ("), (
        res.output
    )


# -- item 5: a cron one-shot with nothing to do prints nothing ---------------------------------


def test_an_idle_cron_one_shot_prints_nothing(
    launchpad: Any, tmp_path: Path, journal_path: str, mongo_uri: str
) -> None:
    """The README's promise: a line per pass that changed something (576 idle lines a day, else)."""
    _fw_id, launch_dir = one_run_launch(launchpad, tmp_path)
    env = job_env(**env_for(journal_path, mongo_uri, launchpad))
    log = tmp_path / "sync.log"

    def cron() -> None:
        with open(log, "ab") as out:  # `>> sync.log 2>&1`
            res = subprocess.run(
                fwspool_cmd("sync", "--root", launch_dir),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=120,
            )
        assert res.returncode == 0, log.read_text()

    cron()
    first = unstamped(log.read_text()).splitlines()
    assert [line.split(":")[0] for line in first] == ["ingest", "push"], first
    cron()
    cron()
    assert unstamped(log.read_text()).splitlines() == first  # the idle passes added nothing
    # At a terminal someone waits for an answer: the idle one-shot says its passes.
    leader, follower = pty.openpty()
    try:
        res = subprocess.run(
            fwspool_cmd("sync", "--root", launch_dir), stdout=follower, stderr=follower, env=env, timeout=120
        )
        assert res.returncode == 0
        said = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert "ingest: " in said and "push: 0 launches" in said, said


# -- item 6: Ctrl-C while the database is down ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def holds(pid: int, name: str) -> bool:
    """Whether process ``pid`` has a file whose path ends with ``name`` open."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_ctrl_c_while_the_database_is_down_ends_at_once_and_says_so(
    launchpad: Any, tmp_path: Path, journal_path: str
) -> None:
    _fw_id, launch_dir = one_run_launch(launchpad, tmp_path)
    down = f"mongodb://127.0.0.1:{free_port()}/"
    for watch in ((), ("--watch",)):
        cmd = fwspool_cmd("sync", *watch, "--journal", journal_path, "--root", launch_dir, "--uri", down)
        proc = subprocess.Popen(
            [*cmd, "--name", "fireworks", "--timeout", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=job_env(),
        )
        pid = proc.pid
        wait_for(lambda: holds(pid, ".push.lock"), 60, "the push lock taken")  # noqa: B023 - waited for here
        time.sleep(1.0)  # in the pass's first contact with the database, which waits up to 20 s
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - started
        assert took < 10, (took, out)  # not the --timeout of 20 s (the machine may be loaded)
        lines = unstamped(out).splitlines()
        if watch:
            assert proc.returncode == 0 and lines[-1] == "stopped by SIGINT", out
        else:
            assert proc.returncode == 130, out
            assert lines[-1].startswith(f"fwspool: stopped by SIGINT while waiting for MongoDB at {down} "), (
                out
            )
            assert re.search(
                r": nothing pushed; \d+ events pending in the journal, oldest ingested ", lines[-1]
            ), out
            assert "events pending in the journal" in lines[-1] and "cannot reach MongoDB" not in out, out


# -- item 7: two syncs at once ------------------------------------------------------------------


def test_a_typo_is_reported_before_the_lock_and_a_watch_daemon_holding_it_is_named(
    launchpad: Any, tmp_path: Path, journal_path: str, mongo_uri: str
) -> None:
    where = ["--uri", mongo_uri, "--name", launchpad.name]
    log = tmp_path / "daemon.log"
    with open(log, "ab") as out:
        daemon = subprocess.Popen(
            fwspool_cmd("sync", "--watch", "--journal", journal_path, *where),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "sync --watch started" in log.read_text(), 60, "the daemon's start-up line")
        # The arguments first: a mistyped -l, --root or -q is what the user must fix.
        for args, expected in (
            (["sync", "-l", str(tmp_path / "my_lanchpad.yaml")], "my_lanchpad.yaml does not exist"),
            (["push", "-l", str(tmp_path / "my_lanchpad.yaml")], "my_lanchpad.yaml does not exist"),
            (["sync", *where, "--root", str(tmp_path / "nowhere")], "nowhere is not a directory"),
            (["ingest", "-q", str(tmp_path / "my_qadaptr.yaml")], "my_qadaptr.yaml does not exist"),
        ):
            res = invoke(*args, "--journal", journal_path)
            assert res.exit_code in (66, 78) and expected in res.output, (args, res.output)
            assert "is using journal" not in res.output and "daemon" not in res.output, (args, res.output)
        # The lock: its holder never finishes, and the line says so.
        for args in (["sync", *where], ["push", *where], ["ingest"], ["prune"]):
            res = invoke(*args, "--journal", journal_path)
            assert res.exit_code == 75, (args, res.output)
            line = unstamped(res.output)
            assert line.startswith(
                f"fwspool: a daemon holds journal {journal_path}: `fwspool sync --watch "
            ), line
            assert (
                f"(pid {daemon.pid})" in line
                and "until it is stopped" in line
                and f"`kill {daemon.pid}`" in line
            )
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, log.read_text()


# -- item 8: doctor checks every file of the rocket_launch line; localhost is a warning ----------


def test_doctor_checks_the_fworker_file_of_the_rocket_launch_line(
    tmp_path: Path,
    files: dict[str, str],  # noqa: F811 - test_doctor's fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    (home / "fw").mkdir(parents=True)
    (home / "fw" / "my_fworker.yaml").write_text("name: cluster\ncategory: ''\nquery: '{}'\n")
    (home / "fw" / "bad_fworker.yaml").write_text("category: [unclosed\n")
    monkeypatch.setenv("HOME", str(home))
    line = f"{BIN}/fwspool rlaunch -w $HOME/fw/my_fworker.yaml singleshot --offline"
    res = doctor(tmp_path, files, line)
    assert res.exit_code == 0, res.output
    assert lines_by_check(res.output)["files in rocket_launch"] == (
        "✓ files in rocket_launch: -w $HOME/fw/my_fworker.yaml: exists"
    )
    res = doctor(tmp_path, files, line.replace("$HOME/fw", "$JOB_ONLY_DIR"))  # set in the job alone
    assert lines_by_check(res.output)["files in rocket_launch"] == (
        "✓ files in rocket_launch: -w $JOB_ONLY_DIR/my_fworker.yaml: not checked (a variable not set here)"
    ), res.output
    for written, expected in (
        (
            "$HOME/fw/my_fwroker.yaml",
            f"✗ files in rocket_launch: -w $HOME/fw/my_fwroker.yaml: FWorker file {home}/fw/my_fwroker.yaml does not "
            "exist (every job would exit 66); fix: name an existing FWorker file by its absolute path (-w $HOME/fw/...)",
        ),
        (
            "my_fworker.yaml",
            "✗ files in rocket_launch: -w my_fworker.yaml: a relative path, which the job reads in its launch "
            "directory; fix: name an existing FWorker file by its absolute path (-w $HOME/fw/...)",
        ),
        (
            "$HOME/fw/bad_fworker.yaml",
            f"✗ files in rocket_launch: -w $HOME/fw/bad_fworker.yaml: FWorker file {home}",
        ),
    ):
        res = doctor(tmp_path, files, line.replace("$HOME/fw/my_fworker.yaml", written))
        assert res.exit_code == 1, res.output
        assert lines_by_check(res.output)["files in rocket_launch"].startswith(expected), res.output
        assert res.output.count("✗ ") == 1, res.output


def test_doctor_warns_when_no_launchpad_file_means_localhost(tmp_path: Path) -> None:
    env = job_env(HOME=str(tmp_path), FW_CONFIG_FILE=str(tmp_path / "none.yaml"))
    env.pop("FWSPOOL_MONGODB_URI", None)
    res = subprocess.run(
        fwspool_cmd("doctor", "--timeout", "0.5"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = lines_by_check(res.stdout)["LaunchPad settings"]
    assert line == (
        "! LaunchPad settings: no launchpad file (-l, my_launchpad.yaml here, LAUNCHPAD_LOC): FireWorks' default, "
        "mongodb://localhost:27017 (database fireworks); fix: give -l FILE, the launchpad file lpad uses, unless your LaunchPad really "
        "is on this node's port 27017"
    ), res.stdout


# -- item 12: the old `lpad recover_offline` left in cron ----------------------------------------


def test_doctor_spots_fireworks_own_recovery_still_running_beside_fwspool(
    launchpad: Any, tmp_path: Path, journal_path: str, mongo_uri: str
) -> None:
    launchpad.add_wf(Firework(ScriptTask.from_str("sleep 1"), name="one"))
    reserve_offline(launchpad, str(tmp_path / "launch"))  # its job is queued, or runs
    time.sleep(2.5)
    where = ["--uri", mongo_uri, "--name", launchpad.name, "--journal", journal_path]
    assert invoke("sync", *where).exit_code == 0  # the registry: the journal knows the launch

    def recovery_line(**kwargs: Any) -> str:
        return lines_by_check(invoke("doctor", *where, **kwargs).output)["lpad recover_offline"]

    assert recovery_line().startswith("✓ lpad recover_offline: not in your crontab, and no offline run"), (
        recovery_line()
    )
    recover_offline(launchpad)  # `lpad recover_offline`, from the old cron line
    line = recovery_line()
    assert line.startswith(
        "✗ lpad recover_offline: the offline run of launch 1 (Firework 1), which fwspool pushes, was updated on "
        "the LaunchPad at "
    ), line
    assert line.endswith(
        "by something else; fix: remove the old `lpad recover_offline` line from your crontab (`crontab -e`): "
        "`fwspool sync` replaces it (README, Migrating from FireWorks' offline mode)"
    ), line
    # The crontab itself, as `crontab -l` prints it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cron_line = "*/5 * * * * cd $HOME/fw && lpad -l my_launchpad.yaml recover_offline >> recover.log 2>&1"
    (bin_dir / "crontab").write_text(f"#!/bin/sh\necho '# m h dom mon dow command'\necho '{cron_line}'\n")
    (bin_dir / "crontab").chmod(0o755)
    other = tmp_path / "other.sqlite3"  # a journal with no launches: only the crontab tells
    res = invoke(
        "doctor", "--uri", mongo_uri, "--name", launchpad.name, "--journal", str(other),
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert lines_by_check(res.output)["lpad recover_offline"] == (
        f"✗ lpad recover_offline: your crontab still runs it: {cron_line!r}; fix: remove the old `lpad "
        "recover_offline` line from your crontab (`crontab -e`): `fwspool sync` replaces it (README, Migrating "
        "from FireWorks' offline mode)"
    ), res.output


# -- item 9: packing polish ---------------------------------------------------------------------


def test_packed_jobs_are_named_counted_and_a_line_without_offline_is_refused(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    ids = add(lp, sleeper("pack_1", 0), sleeper("pack_2", 0), sleeper("pack_3", 0))
    # A rocket_launch line without --offline: doctor fails it, and fwspool qlaunch refuses it with the same fix.
    good = site.qadapter.read_text()
    site.qadapter.write_text(good.replace(" --offline", ""))
    refused = qlaunch(site, "--pack", "2", "singleshot", check=False)
    assert refused.returncode == 78, refused.stdout + refused.stderr
    doctor_line = site.fwspool("doctor", "-q", str(site.qadapter), check=False).stdout
    fix = doctor_line.split("✗ rocket_launch: ", 1)[1].split("\n", 1)[0]
    assert "lacks --offline" in fix and unstamped(refused.stderr) == f"fwspool: {site.qadapter}: {fix}\n"
    assert [fw_state(lp, i) for i in ids] == ["READY"] * 3  # nothing reserved
    site.qadapter.write_text(good)
    # Three Fireworks, two per job: a job of two and a job of one, named for what they run.
    jobs = jobs_of(qlaunch(site, "--pack", "2", "rapidfire", "--nlaunches", "2").stdout)
    assert len(jobs) == 2
    names = sorted(
        re.search(r"--job-name=(\S+)", script.read_text()).group(1)  # type: ignore[union-attr]
        for script in site.runs.glob("block_*/FW_submit.script")
    )
    assert names == ["fws2_pack_1", "pack_3"], names
    # Both are fwspool qlaunch's jobs, the one of one Firework too.
    site.fwspool("sync", "-l", str(site.launchpad_file), "--journal", str(site.journal))
    table = site.fwspool("status", "--no-check", "--journal", str(site.journal)).stdout
    assert re.search(r"packed jobs: 2, \d with launches running or not started", table), table


# -- item 10: small things ------------------------------------------------------------------------


def test_one_of_a_thing_is_singular(
    launchpad: Any, tmp_path: Path, journal_path: str, mongo_uri: str
) -> None:
    _fw_id, launch_dir = one_run_launch(launchpad, tmp_path)
    env = env_for(journal_path, mongo_uri, launchpad)
    res = invoke("sync", "--root", launch_dir, env=env)
    assert res.exit_code == 0, res.output
    assert "push: 1 launch, " in res.output and "1 launches" not in res.output, res.output
    res = invoke("status", "--all", "--no-check", env=env)
    assert "all 1 launch:" in res.output and "1 launches" not in res.output, res.output


def test_status_into_a_pipe_whose_reader_left_ends_quietly(tmp_path: Path, journal_path: str) -> None:
    """`fwspool status | head`: no `fwspool: Broken pipe` on the terminal, as Unix tools do."""
    assert invoke("ingest", "--journal", journal_path, "--root", str(tmp_path)).exit_code == 0
    proc = subprocess.Popen(
        fwspool_cmd("status", "--no-check", "--journal", journal_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 1
    assert unstamped(err) == "", err


# -- items 2 and 3: a launch directory deleted, or moved, before ingest read its end ---------------


def test_a_deleted_launch_directory_ends_its_launch_as_lost_saying_why_and_a_moved_one_gets_a_hint(
    site: Site,
) -> None:
    uri, name = launchpad_of(site)
    lp = make_launchpad(uri, name)
    d = site.runs / "deleted"
    d.mkdir()
    # It runs until the test has seen it RUNNING (a fixed sleep ended first on a loaded machine).
    go = d / "go"
    lp.add_wf(Workflow([Firework(ScriptTask.from_str(f"while [ ! -e {go} ]; do sleep 0.2; done"), fw_id=1)]))
    site.qlaunch("singleshot", cwd=d)
    job = str(wait_for(lambda: lp.get_reservation_id_from_fw_id(1), 30, "the reservation"))
    site.slurm.wait_for_state(job, {"RUNNING"}, 60)
    sync = ("sync", "-l", str(site.launchpad_file), "--journal", str(site.journal), "--lost-after", "0")
    wait_for(lambda: any(d.glob("fwspool-*.spool")), 30, "the spool file")
    first = site.fwspool(*sync)  # the run's start is in the journal
    assert fw_state(lp, 1) == "RUNNING", first.stdout + first.stderr
    go.touch()
    site.slurm.wait_for_state(job, {"COMPLETED", "GONE"}, 60)
    shutil.rmtree(d)  # deleted before ingest read the end
    said = ""
    for _ in range(3):
        res = site.fwspool(*sync)
        said += unstamped(res.stdout + res.stderr)
    lines = [ln for ln in said.splitlines() if "launch dir vanished" in ln]
    assert 1 <= len(lines) <= 2, said  # once per run until the launch ends, then never again
    assert "if it was moved, `fwspool sync --root DIR`" in lines[0], lines[0]
    assert fw_state(lp, 1) == "FIZZLED"
    message = lp.get_fw_by_id(1).launches[-1].action.stored_data["_message"]
    assert f"its launch directory {d} is gone: deleted, or moved" in message, message
    assert "killed with SIGKILL" not in message
    last = site.fwspool(*sync)
    assert "launch dir vanished" not in last.stdout + last.stderr
    # The same with the directory moved, and a --root over where it went: read there, no line.
    lp.add_wf(Workflow([sleeper("moved", 4, fw_id=2)]))
    m = site.runs / "moved"
    m.mkdir()
    site.qlaunch("singleshot", cwd=m)
    job = str(wait_for(lambda: lp.get_reservation_id_from_fw_id(2), 30, "the reservation"))
    site.slurm.wait_for_state(job, {"RUNNING"}, 60)
    wait_for(lambda: any(m.glob("fwspool-*.spool")), 30, "the spool file")
    site.fwspool(*sync)
    site.slurm.wait_for_state(job, {"COMPLETED", "GONE"}, 60)
    elsewhere = site.home / "archive"
    elsewhere.mkdir()
    shutil.move(str(m), str(elsewhere / "moved"))
    for _ in range(2):  # the first may only learn that the batch job is gone
        res = site.fwspool(*sync, "--root", str(elsewhere))
        assert "launch dir vanished" not in res.stdout + res.stderr, res.stdout + res.stderr
    assert fw_state(lp, 2) == "COMPLETED"
