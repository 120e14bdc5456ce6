"""The daemon's log (fwspool.log), through the command line, with real processes and real signals:
the start-up line, stamps, one line per pass that changed something, the heartbeat, SIGUSR1,
SIGHUP reopening the log, SIGTERM, one --interval default, --lock-wait, FireWorks' import-time
warnings."""

from __future__ import annotations

import importlib.util
import os
import pty
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, ScriptTask

from fwspool import __version__
from fwspool.config import DEFAULT_INTERVAL
from fwspool.journal import Journal
from fwspool.reserve import reserve_offline
from fwspool.testing.commands import fwspool_cmd, invoke, reserved_and_run, unstamped
from fwspool.testing.docs import code_blocks, doc_section
from fwspool.testing.waiting import wait_for


@pytest.fixture
def journal_path(tmp_path: Path) -> str:
    """A journal as `fwspool ingest` or `sync` leaves it: `push` (like every command but those
    two) refuses a journal that does not exist."""
    path = str(tmp_path / "journal" / "journal.sqlite3")
    Journal.open(path, create=True).close()
    return path


STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S")
NEWT = "install the fireworks[newt] extra"


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def logged(path: Path, text: str) -> list[str]:
    """The lines of ``path`` that contain ``text``."""
    return [line for line in lines_of(path) if text in line]


def finished_launch(launchpad: Any, root: Path) -> int:
    """A one-step workflow reserved offline and run by ``fwspool rlaunch`` under ``root``; its fw_id."""
    launchpad.add_wf(Firework(ScriptTask.from_str("echo hi"), name="one"))
    fw, _ = reserved_and_run(launchpad, str(root / "launch"))
    return int(fw.fw_id)


def stop(proc: subprocess.Popen[Any]) -> str:
    """SIGTERM, then what the process printed outside its log; fails unless it exits 0."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out or ""


def test_sync_watch_logs_its_start_its_changes_its_silence_and_answers_its_signals(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str, private_inbox: str
) -> None:
    root = tmp_path / "runs"
    fw_id = finished_launch(launchpad, root)
    log = tmp_path / "sync.log"
    # fmt: off
    cmd = fwspool_cmd(
        "sync", "--watch", "--interval", "0.3", "--heartbeat", "1.5", "--log", str(log),
        "--journal", journal_path, "--uri", mongo_uri, "--name", db_name, "--root", str(root),
    )
    # fmt: on
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: launchpad.get_fw_by_id(fw_id).state == "COMPLETED", 60, "the Firework COMPLETED")
        # Idle from now on: passes every 0.3 s say nothing; after 1.5 s of silence, one line says so.
        first_idle = wait_for(lambda: logged(log, "idle: nothing new for"), 30, "a heartbeat line")
        wait_for(lambda: len(logged(log, "idle: nothing new for")) >= 2, 30, "a second heartbeat line")
        text = log.read_text()
        between = text.split(first_idle[0], 1)[1].split("idle: nothing new for", 1)[0]
        assert "ingest:" not in between and "push:" not in between, text
        assert "1 launch (0 open, 1 final, 0 forgotten)" in first_idle[0] and "0 pending" in first_idle[0]

        proc.send_signal(signal.SIGUSR1)
        status = wait_for(lambda: logged(log, "status (SIGUSR1): "), 30, "the status line")
        assert re.search(
            r"status \(SIGUSR1\): 1 launch \(0 open, 1 final, 0 forgotten\), \d+ events, 0 pending, "
            r"last push \d+s ago, 0 quarantined ranges$",
            status[0],
        ), status

        # What logrotate does: move the file away, then SIGHUP. The daemon writes a new one.
        rotated = tmp_path / "sync.log.1"
        log.rename(rotated)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: logged(log, f"log reopened on SIGHUP: {log}"), 30, "the reopened log")
        before = rotated.read_text()
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: logged(log, "status (SIGUSR1): "), 30, "the status line in the new file")
        assert rotated.read_text() == before  # the old file gets nothing more
    finally:
        outside = stop(proc)
    assert outside == ""  # everything went to the log file
    assert lines_of(log)[-1].endswith(" stopped by SIGTERM")

    every = lines_of(rotated) + lines_of(log)
    assert all(STAMPED.match(line) for line in every), [ln for ln in every if not STAMPED.match(ln)]
    start = every[0]
    for part in (
        f"fwspool {__version__} sync --watch started (pid {proc.pid})",
        f"journal {journal_path}",
        f"LaunchPad {mongo_uri}",
        f"(database {db_name}) from --uri (no credentials given)",
        "every 0.3s",
        f"inbox {private_inbox}",
        f"roots {root}",
        "queue adapter none",
        "lost after 300s",
        "retain 30d",
    ):
        assert part in start, (part, start)
    pass_lines = [unstamped(line) for line in every if re.search(r"Z (ingest|push|prune): ", line)]
    # (how many events: the job pings as often as its run takes)
    assert any(re.match(r"ingest: \d+ files?, [1-9]\d* new events?", line) for line in pass_lines), pass_lines
    assert any(re.match(r"push: 1 launch, [1-9]\d* events? applied", line) for line in pass_lines), pass_lines
    assert len(pass_lines) <= 5, pass_lines  # the passes that changed something, not every pass
    assert NEWT not in rotated.read_text() + log.read_text() and "Traceback" not in log.read_text()


def test_sync_watch_logs_a_registry_pull_and_an_applied_forget(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    """Passes that change only what the journal knows (the registry of offline runs) or the
    LaunchPad's offline_runs (a forget) get their line too."""
    launchpad.add_wf(Firework(ScriptTask.from_str("echo hi"), name="one"))
    fw, launch_id = reserve_offline(launchpad, str(tmp_path / "launch"))  # reserved, not run yet
    log = tmp_path / "sync.log"
    # fmt: off
    cmd = fwspool_cmd(
        "sync", "--watch", "--interval", "0.3", "--log", str(log),
        "--journal", journal_path, "--uri", mongo_uri, "--name", db_name,
    )
    # fmt: on
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        registered = wait_for(lambda: logged(log, "1 offline run registered"), 60, "the registry pull")
        assert " push: 0 launches, 0 events applied" in registered[0]
        forgot = invoke("forget", "--journal", journal_path, str(fw.fw_id))
        assert forgot.exit_code == 0, forgot.output
        applied = wait_for(lambda: logged(log, "1 forget request applied"), 60, "the forget applied")
        assert STAMPED.match(applied[0])
        assert launchpad.offline_runs.find_one({"launch_id": launch_id})["deprecated"] is True
    finally:
        stop(proc)


def test_the_newt_warning_that_fireworks_logs_on_import_is_what_the_daemon_silences(tmp_path: Path) -> None:
    """The control of the test above: FireWorks' own lookup of a class logs it (without requests)."""
    if importlib.util.find_spec("requests") is not None:
        pytest.skip("requests is installed: FireWorks has nothing to warn about")
    lookup = (
        "from fireworks.utilities.fw_serializers import load_object\n"
        "load_object({'_fw_name': 'ScriptTask', 'script': ['echo']})\n"
    )
    bare = subprocess.run([sys.executable, "-c", lookup], capture_output=True, text=True, timeout=120)
    assert NEWT in bare.stdout + bare.stderr
    silenced = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fwspool.log import silence_fireworks_import_warnings as s; s()\n" + lookup,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert silenced.returncode == 0, silenced.stderr
    assert NEWT not in silenced.stdout + silenced.stderr


def test_a_stdout_redirected_to_a_file_is_reopened_by_its_name_on_sighup(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    """`>> push.log 2>&1` (or systemd's StandardOutput=append:): no --log, the same reopening."""
    log = tmp_path / "push.log"
    cmd = fwspool_cmd(
        "push",
        "--watch",
        "--interval",
        "0.3",
        "--journal",
        journal_path,
        "--uri",
        mongo_uri,
        "--name",
        db_name,
    )
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: logged(log, "push --watch started"), 30, "the start-up line")
        log.rename(tmp_path / "push.log.1")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: logged(log, f"log reopened on SIGHUP: {log}"), 30, "the reopened log")
    finally:
        stop(proc)
    assert lines_of(log)[-1].endswith(" stopped by SIGTERM")
    assert all(STAMPED.match(line) for line in lines_of(log) + lines_of(tmp_path / "push.log.1"))


def test_lines_are_stamped_except_on_a_terminal_and_in_the_systemd_journal(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    # (ingest: its total is a line even when nothing changed; an idle push or sync says nothing)
    cmd = fwspool_cmd("ingest", "--journal", journal_path, "--root", str(tmp_path))
    # A pipe (and a file, under cron): stamped.
    piped = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and STAMPED.match(piped.stdout), piped.stdout
    assert unstamped(piped.stdout).startswith("ingest: 0 files, 0 new events")
    # A terminal: as before.
    leader, follower = pty.openpty()
    try:
        on_tty = subprocess.run(cmd, stdout=follower, stderr=follower, timeout=120)
        assert on_tty.returncode == 0
        assert os.read(leader, 4096).decode().startswith("ingest: 0 files")
    finally:
        os.close(leader)
        os.close(follower)
    # systemd's journal stamps lines itself; systemd names it in JOURNAL_STREAM (device:inode).
    journal_file = tmp_path / "journald-stand-in"
    with open(journal_file, "wb") as out:
        st = os.fstat(out.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        assert subprocess.run(cmd, stdout=out, stderr=out, env=env, timeout=120).returncode == 0
    assert journal_file.read_text().startswith("ingest: 0 files")


def test_sighup_with_no_log_file_says_so_and_the_daemon_goes_on(
    launchpad: Any, mongo_uri: str, db_name: str, journal_path: str
) -> None:
    cmd = fwspool_cmd(
        "push",
        "--watch",
        "--interval",
        "0.3",
        "--journal",
        journal_path,
        "--uri",
        mongo_uri,
        "--name",
        db_name,
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("started" in line for line in seen), 30, "the start-up line")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("nothing to reopen" in line for line in seen), 30, "the SIGHUP line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    assert unstamped(seen[-1]).strip() == "stopped by SIGTERM"


def test_an_unwritable_log_file_is_one_line_and_exit_73(tmp_path: Path, journal_path: str) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        res = subprocess.run(
            fwspool_cmd("ingest", "--journal", journal_path, "--log", str(locked / "x" / "sync.log")),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        locked.chmod(0o700)
    assert res.returncode == 73, res.stderr
    assert unstamped(res.stderr).startswith(
        f"fwspool: cannot write the log file {locked / 'x' / 'sync.log'}: "
    )
    assert res.stderr.count("\n") == 1


def test_every_watch_command_has_one_default_interval() -> None:
    assert DEFAULT_INTERVAL == 30.0
    for command in ("ingest", "push", "sync"):
        text = " ".join(invoke(command, "--help").output.split())
        assert re.search(
            r"--interval SECONDS Seconds between [a-z ]+ passes with --watch \[default: 30\]\.", text
        ), (
            command,
            text,
        )


def test_sync_waits_for_the_journal_with_lock_wait(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    fw_id = finished_launch(launchpad, tmp_path / "runs")
    sync = ("sync", "--journal", journal_path, "--uri", mongo_uri, "--name", db_name, "--root", str(tmp_path))
    journal = Journal.open(journal_path)
    try:
        with journal.lock("push"):
            busy = invoke(*sync)
            assert busy.exit_code == 75, busy.output
            assert "another fwspool push" in busy.output and "is using journal" in busy.output
        held = journal.lock("ingest")
        held.__enter__()
        threading.Timer(0.5, lambda: held.__exit__(None, None, None)).start()
        waited = invoke(*sync, "--lock-wait", "30")
    finally:
        journal.close()
    assert waited.exit_code == 0, waited.output
    assert launchpad.get_fw_by_id(fw_id).state == "COMPLETED"


def running_the_daemon_lines() -> list[str]:
    """The ```sh lines of "Running the daemon" (docs/daemon.md)."""
    section = doc_section("Running the daemon")
    return [line for block in code_blocks(section, "sh") for line in block.splitlines()]


def test_the_readme_daemon_and_prune_lines_run_verbatim(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path
) -> None:
    from fwspool.testing.slurm_site import launchpad_file_text

    watch, prune = running_the_daemon_lines()
    home = tmp_path / "home"
    (home / "fw" / ".venv" / "bin").mkdir(parents=True)
    (home / "fw" / ".venv" / "bin" / "fwspool").symlink_to(Path(sys.executable).parent / "fwspool")
    (home / "fw" / "my_launchpad.yaml").write_text(launchpad_file_text(mongo_uri, db_name))
    env = {k: v for k, v in os.environ.items() if k not in ("FWSPOOL_JOURNAL", "XDG_STATE_HOME")}
    env["HOME"] = str(home)
    log = home / "fw" / "sync.log"
    # exec: the shell becomes fwspool, and the signals below reach it.
    daemon = subprocess.Popen(["bash", "-c", f"exec {watch}"], env=env, cwd=home)
    try:
        wait_for(lambda: logged(log, "sync --watch started"), 60, "the start-up line")
        daemon.send_signal(signal.SIGUSR1)
        wait_for(lambda: logged(log, "status (SIGUSR1): 0 launches"), 30, "the status line")
        log.rename(home / "fw" / "sync.log.1")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: logged(log, "log reopened on SIGHUP"), 30, "the reopened log")
    finally:
        stop(daemon)
    assert lines_of(log)[-1].endswith(" stopped by SIGTERM")
    journal = home / ".local" / "state" / "fwspool" / "journal.sqlite3"
    assert f"journal {journal};" in lines_of(home / "fw" / "sync.log.1")[0]
    pruned = subprocess.run(
        ["bash", "-c", prune], env=env, cwd=home, capture_output=True, text=True, timeout=120
    )
    assert pruned.returncode == 0, pruned.stderr
    assert unstamped(pruned.stdout).startswith(
        "prune: 0 pings and checkpoints of 0 finished launches dropped"
    )
