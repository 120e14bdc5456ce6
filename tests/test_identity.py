"""A launch is its LaunchPad, its launch id and its directory (fwspool.identity, fwspool.binding).

Everything here shares what users share: the home directory, so the default inbox
(``~/.fwspool/inbox``) and the default journal, with leftovers of earlier runs in the inbox.
Through the CLI, against the real server, real FireWorks (its own offline rocket and
``recover_offline`` on twins, its ``lpad``) and real jobs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from dyn_tasks import FailTask
from fireworks import Firework, PyTask, ScriptTask, Workflow
from freezegun import freeze_time

from fwspool import inbox
from fwspool.events import Exited, Started, utcnow
from fwspool.identity import dir_tag
from fwspool.reserve import reserve_offline
from fwspool.spool import SpoolWriter
from fwspool.testing.commands import (
    fireworks_command,
    fwspool_cmd,
    invoke,
    job_env,
    run_fireworks_offline,
    run_fwspool,
    unstamped,
)
from fwspool.testing.launchpad import make_launchpad, recover_offline, snapshot
from fwspool.testing.slurm_site import launchpad_file_text
from fwspool.testing.waiting import wait_for

LEFTOVER_AGE_DAYS = 40


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's home, as every command and job finds it: the default inbox and journal, shared
    by everything, already holding pointers of an earlier run of another LaunchPad (launch ids
    1, 2 and 3): one whose directory was deleted, one whose launch ended 40 days ago, one whose
    job was killed and never ended."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("FWSPOOL_INBOX", "FWSPOOL_JOURNAL", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    default = inbox.default_inbox()
    assert default == str(home / ".fwspool" / "inbox")
    old = tmp_path / "old-campaign"
    long_ago = utcnow().replace(year=utcnow().year - 1)
    for launch_id, fate in ((1, "deleted"), (2, "ended"), (3, "killed")):
        d = old / f"launcher_{launch_id}"
        d.mkdir(parents=True)
        with SpoolWriter(str(d), launch_id, launch_id, clock=lambda: long_ago) as w:
            w.append(Started(started_on=long_ago, launch_dir=str(d)))
            if fate != "killed":
                w.append(Exited(returncode=0))
        inbox.write_pointer(default, launch_id, launch_id, str(d))
        if fate == "deleted":
            shutil.rmtree(d)
    return home


def lpad(launchpad_file: str, *args: str) -> None:
    """FireWorks' own ``lpad -l FILE ARGS``, which must succeed."""
    res = subprocess.run(
        [fireworks_command("lpad"), "-l", launchpad_file, *args],
        capture_output=True,
        text=True,
        env=job_env(),
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]


def write_launchpad_file(tmp_path: Path, uri: str, db: str) -> str:
    path = tmp_path / f"{db}_launchpad.yaml"
    path.write_text(launchpad_file_text(uri, db))
    return str(path)


def sync(*args: str, code: int = 0) -> str:
    """``fwspool sync ARGS`` (the default journal unless ARGS name one); its output."""
    res = invoke("sync", *args)
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return unstamped(res.output)


def pointers() -> set[str]:
    return {os.path.basename(x.path) for x in inbox.list_inbox(inbox.default_inbox())}


def leftover_names(tmp_path: Path) -> set[str]:
    return {f"launch-{i}-{dir_tag(str(tmp_path / 'old-campaign' / f'launcher_{i}'))}.json" for i in (1, 2, 3)}


def chain(n: int, name: str) -> Workflow:
    fws = [Firework(ScriptTask.from_str(f"echo {name}{i}"), name=f"{name}{i}") for i in range(1, n + 1)]
    links = {fws[i]: [fws[i + 1]] for i in range(n - 1)}
    return Workflow(fws, links, name=name)


def step(lp: Any, launch_dir: Path, *, legacy: bool = False) -> int:
    """Reserve the next READY Firework into ``launch_dir`` (as ``qlaunch -r``) and run its job:
    ``fwspool rlaunch`` or, ``legacy``, FireWorks' own ``rlaunch singleshot --offline``."""
    _, launch_id = reserve_offline(lp, str(launch_dir))
    res = run_fireworks_offline(str(launch_dir)) if legacy else run_fwspool(str(launch_dir))
    assert res.returncode == 0, res.stderr[-2000:]
    return launch_id


def reference(mongo_uri: str, db: str, tmp_path: Path, wf: Workflow, legacy: tuple[bool, ...]) -> Any:
    """The same workflow run by FireWorks' own offline rocket and ``recover_offline``."""
    ref = make_launchpad(mongo_uri, db)
    ref.add_wf(wf)
    for k, _ in enumerate(legacy):
        d = tmp_path / "ref" / f"l{k}"
        _, launch_id = reserve_offline(ref, str(d))
        res = run_fireworks_offline(str(d))
        assert res.returncode == 0, res.stderr[-2000:]
        recover_offline(ref)
    return ref


@pytest.mark.parametrize("order", ["at_once", "in_turn"])
def test_two_launchpads_on_one_default_inbox_reach_what_recover_offline_reaches(
    home: Path, tmp_path: Path, mongo_uri: str, db_name: str, order: str
) -> None:
    """LaunchPads A and B, each with its own journal, on one default inbox: the same launch ids in
    other directories. Step 1 of each chain runs under ``fwspool rlaunch``, step 2 under FireWorks'
    own ``rlaunch --offline``; at once (both jobs of a step before either sync) and in turn."""
    legacy = (False, True)
    ref = reference(mongo_uri, db_name + "_ref", tmp_path, chain(2, "c"), legacy)
    lps = {x: make_launchpad(mongo_uri, f"{db_name}_{x}") for x in "ab"}
    files = {x: write_launchpad_file(tmp_path, mongo_uri, f"{db_name}_{x}") for x in "ab"}
    journals = {"a": [], "b": ["--journal", str(tmp_path / "b.sqlite3")]}  # A: the default journal
    outputs = []
    try:
        for lp in lps.values():
            lp.add_wf(chain(2, "c"))
        steps = (
            [(k, x) for k in range(2) for x in "ab"]
            if order == "at_once"
            else [(k, x) for x in "ab" for k in range(2)]
        )
        for i, (k, x) in enumerate(steps):
            launch_id = step(lps[x], tmp_path / x / f"l{k}", legacy=legacy[k])
            assert launch_id == k + 1  # the same ids on both LaunchPads
            if order == "in_turn" or i % 2 == 1:
                for y in "ab" if order == "at_once" else x:
                    outputs.append(sync("-l", files[y], *journals[y]))
        for x, lp in lps.items():
            dirs = tuple(str(tmp_path / x / f"l{k}") for k in range(2))
            assert snapshot(lp, dirs) == snapshot(
                ref, tuple(str(tmp_path / "ref" / f"l{k}") for k in range(2))
            )
            assert {fw.state for fw in (lp.get_fw_by_id(1), lp.get_fw_by_id(2))} == {"COMPLETED"}
        text = "\n".join(outputs)
        # The other LaunchPad's pointer: set aside with one line, once per journal; never applied.
        assert text.count(f"{tmp_path / 'b' / 'l0'}, not in") <= 1 or "set aside" in text
        for args in journals.values():
            res = invoke("status", "--json", "--no-check", *args)
            report = json.loads(res.output)
            assert report["totals"]["need_attention"] == 0, report
            assert report["by_state"] == {"COMPLETED": 2}, report
            rows = json.loads(invoke("status", "--json", "--no-check", "--all", *args).output)["launches"]
            assert sorted((r["launch_id"], r["state"]) for r in rows if not r["elsewhere"]) == [
                (1, "COMPLETED"),
                (2, "COMPLETED"),
            ]
            # The earlier run's killed launch 3: announced, held, not this LaunchPad's (yet).
            assert [(r["launch_id"], r["attention"]) for r in rows if r["elsewhere"]] == [(3, False)]
        # Every pointer of these campaigns is gone. Of the earlier run's, the one whose directory
        # was deleted and the one whose launch ended 40 days ago went; the killed job's stays for
        # a journal that may still need it.
        assert pointers() == {f"launch-3-{dir_tag(str(tmp_path / 'old-campaign' / 'launcher_3'))}.json"}
    finally:
        for lp in (*lps.values(), ref):
            lp.connection.drop_database(lp.db.name)


def test_a_new_campaign_after_lpad_reset_completes_past_the_old_campaigns_pointers(
    home: Path, tmp_path: Path, mongo_uri: str, db_name: str
) -> None:
    """Campaign 1: one job killed, one FIZZLED, one forgotten, its journal then deleted (as the
    refusal after a reset tells the user). ``lpad reset``, then campaign 2 in the same parent
    directory with launch ids 1, 2, 3 again: it completes, as FireWorks' own path does on a twin,
    and the old pointers go only when no journal can need them any more."""
    lp_file = write_launchpad_file(tmp_path, mongo_uri, db_name)
    lp = make_launchpad(mongo_uri, db_name)
    base = tmp_path / "runs"
    try:
        lp.add_wf(Firework(ScriptTask.from_str("sleep 300"), name="killed"))
        lp.add_wf(Firework(FailTask(), name="fizzled"))
        lp.add_wf(Firework(ScriptTask.from_str("echo forgotten"), name="forgotten"))
        killed_dir = base / "c1" / "l1"
        reserve_offline(lp, str(killed_dir), fw_id=1)
        job = subprocess.Popen(
            fwspool_cmd("rlaunch", "singleshot", "--offline"),
            cwd=killed_dir,
            env=job_env(),
            start_new_session=True,
        )
        try:
            wait_for(lambda: any(p.name.startswith("fwspool-") for p in killed_dir.iterdir()), timeout=60)
            time.sleep(1.0)
        finally:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        for fw_id, name in ((2, "l2"), (3, "l3")):
            reserve_offline(lp, str(base / "c1" / name), fw_id=fw_id)
            assert run_fwspool(str(base / "c1" / name)).returncode == 0
        first = tmp_path / "campaign1.sqlite3"
        sync("-l", lp_file, "--journal", str(first))
        assert [lp.get_fw_by_id(i).state for i in (1, 2, 3)] == ["RUNNING", "FIZZLED", "COMPLETED"]
        assert invoke("forget", "--journal", str(first), "--launch-id", "1").exit_code == 0
        first.unlink()  # a new journal for the new campaign, as the refusal after a reset says
        campaign1 = {f"launch-{i}-{dir_tag(str(base / 'c1' / f'l{i}'))}.json" for i in (1, 2, 3)}
        killed = f"launch-1-{dir_tag(str(base / 'c1' / 'l1'))}.json"
        assert killed in pointers()

        lpad(lp_file, "reset", "--password", time.strftime("%Y-%m-%d"))
        lp.add_wf(chain(3, "s"))
        ref = reference(mongo_uri, db_name + "_ref", tmp_path, chain(3, "s"), (False, False, False))
        try:
            said = []
            for k in range(3):
                assert step(lp, base / "c2" / f"l{k}") == k + 1
                said.append(sync("-l", lp_file))
            dirs = tuple(str(base / "c2" / f"l{k}") for k in range(3))
            ref_dirs = tuple(str(tmp_path / "ref" / f"l{k}") for k in range(3))
            assert snapshot(lp, dirs) == snapshot(ref, ref_dirs)
            assert all(fw.state == "COMPLETED" for fw in map(lp.get_fw_by_id, (1, 2, 3)))
            # Each old pointer said once, in all three syncs; never applied, never a stall.
            text = "\n".join(said)
            for i in (1, 2, 3):
                assert text.count(f"announces launch {i} in {base / 'c1' / f'l{i}'}") <= 1, text
            report = json.loads(invoke("status", "--json", "--no-check").output)
            assert report["totals"]["need_attention"] == 0 and report["by_state"] == {"COMPLETED": 3}
            assert killed in pointers()  # still wanted, for all this journal knows
        finally:
            ref.connection.drop_database(ref.db.name)

        # Forty days on, the ended launches' pointers go (their own spool says so); the killed
        # one's stays until its directory is gone.
        later = utcnow().replace(tzinfo=None) + __import__("datetime").timedelta(days=LEFTOVER_AGE_DAYS)
        with freeze_time(later):
            sync("-l", lp_file)
        left = pointers()
        assert f"launch-1-{dir_tag(str(base / 'c1' / 'l1'))}.json" in left
        assert not {f"launch-{i}-{dir_tag(str(base / 'c1' / f'l{i}'))}.json" for i in (2, 3)} & left
        shutil.rmtree(base / "c1" / "l1")
        sync("-l", lp_file)
        assert not campaign1 & pointers()
        shutil.rmtree(tmp_path / "old-campaign")
        sync("-l", lp_file)
        assert not pointers()  # the earlier run's too, once no journal can need them
    finally:
        lp.connection.drop_database(lp.db.name)


def test_a_push_to_another_launchpad_or_to_a_reset_one_applies_nothing(
    home: Path, tmp_path: Path, mongo_uri: str, db_name: str
) -> None:
    files = {x: write_launchpad_file(tmp_path, mongo_uri, f"{db_name}_{x}") for x in "ab"}
    lps = {x: make_launchpad(mongo_uri, f"{db_name}_{x}") for x in "ab"}
    try:
        for x, lp in lps.items():
            lp.add_wf(Firework(ScriptTask.from_str("echo hi"), name=x))
        step(lps["a"], tmp_path / "a")
        sync("-l", files["a"])  # binds the default journal to A
        assert lps["a"].get_fw_by_id(1).state == "COMPLETED"
        # B, given its own inbox as docs/batch-systems.md advises, synced by mistake with the default journal.
        reserve_offline(lps["b"], str(tmp_path / "b"))
        b_inbox = str(tmp_path / "b-inbox")
        assert run_fwspool(str(tmp_path / "b"), env=job_env(FWSPOOL_INBOX=b_inbox)).returncode == 0
        before = snapshot(lps["b"])
        assignerb = lps["b"].db.fw_id_assigner.find_one({})
        res = invoke("sync", "-l", files["b"], "--inbox", b_inbox)
        assert res.exit_code == 78, res.output
        line = unstamped(res.output).strip().splitlines()[-1]
        assert f"belongs to LaunchPad {mongo_uri}" in line and "start a new journal" in line, line
        assert snapshot(lps["b"]) == before and lps["b"].db.fw_id_assigner.find_one({}) == assignerb
        assert len(inbox.list_inbox(b_inbox)) == 1  # B's pointer is not deleted unread
        # Its own journal pushes it.
        sync("-l", files["b"], "--inbox", b_inbox, "--journal", str(tmp_path / "b.sqlite3"))
        assert lps["b"].get_fw_by_id(1).state == "COMPLETED" and not inbox.list_inbox(b_inbox)

        # status and doctor use the journal's own LaunchPad; a launchpad file that is not there is
        # an error for every command.
        report = json.loads(invoke("status", "--json").output)
        assert f"database {db_name}_a" in report["database"]["where"] and report["database"]["reachable"]
        for command in (["status"], ["sync"], ["push"], ["doctor"]):
            res = invoke(*command, "-l", str(tmp_path / "my_launchpd.yaml"))
            assert res.exit_code in (78, 1) and "my_launchpd.yaml" in res.output, (command, res.output)
            if command != ["doctor"]:
                assert res.exit_code == 78 and len(unstamped(res.output).strip().splitlines()) == 1

        # lpad reset: the same database, launch ids from 1 again. Nothing is pushed.
        lpad(files["a"], "reset", "--password", time.strftime("%Y-%m-%d"))
        lps["a"].add_wf(Firework(ScriptTask.from_str("echo again"), name="again"))
        step(lps["a"], tmp_path / "a2")
        res = invoke("sync", "-l", files["a"])
        assert res.exit_code == 78, res.output
        assert "was reset (lpad reset)" in res.output and "start a new journal" in res.output
        assert lps["a"].get_fw_by_id(1).state == "RESERVED"
    finally:
        for lp in lps.values():
            lp.connection.drop_database(lp.db.name)


def test_status_shows_a_held_launch_in_words_and_history_after_a_rerun(
    home: Path, tmp_path: Path, mongo_uri: str, db_name: str
) -> None:
    files = {x: write_launchpad_file(tmp_path, mongo_uri, f"{db_name}_{x}") for x in "ab"}
    lps = {x: make_launchpad(mongo_uri, f"{db_name}_{x}") for x in "ab"}
    try:
        # A completion held by a problem: its record is over --max-record, so quarantined.
        lps["a"].add_wf(
            Firework(PyTask(func="builtins.str", args=["x" * 20_000], stored_data_varname="big"), name="big")
        )
        step(lps["a"], tmp_path / "a" / "l1")
        sync("-l", files["a"], "--max-record", "8192")
        assert lps["a"].get_fw_by_id(1).state == "RUNNING"
        res = invoke("status", "--no-check")
        assert "1 launch needs attention" in res.output, res.output
        assert "held: launch 1 (Firework 1): its job exited cleanly but its completion" in " ".join(
            res.output.split()
        ), res.output
        assert invoke("ingest", "--retry-quarantined", "--max-record", "1000000").exit_code == 0
        sync("-l", files["a"])
        assert lps["a"].get_fw_by_id(1).state == "COMPLETED"
        assert json.loads(invoke("status", "--json", "--no-check").output)["totals"]["need_attention"] == 0

        # B's launch 2 runs, announced in the shared inbox; A has handed out no launch 2 yet: it
        # waits, said in the summary, not counted as A's Firework, not attention.
        for name in ("b1", "b2"):
            lps["b"].add_wf(Firework(ScriptTask.from_str("echo b"), name=name))
        for k in (1, 2):
            step(lps["b"], tmp_path / "b" / f"l{k}")
        sync("-l", files["a"])
        res = invoke("status", "--no-check")
        assert "not on this LaunchPad (yet)" in " ".join(res.output.split()), res.output
        report = json.loads(invoke("status", "--json", "--no-check").output)
        assert report["totals"]["need_attention"] == 0 and report["by_state"] == {"COMPLETED": 1}
        assert report["totals"]["elsewhere_launches"] >= 1
        # A's own launch 2 comes: what B's job wrote is set aside (kept, never applied), A's applied.
        lps["a"].add_wf(Firework(ScriptTask.from_str("echo a"), name="a2"))
        step(lps["a"], tmp_path / "a" / "l2")
        sync("-l", files["a"])
        assert lps["a"].get_fw_by_id(2).state == "COMPLETED" and lps["b"].get_fw_by_id(2).state == "RESERVED"
        report = json.loads(invoke("status", "--json", "--no-check").output)
        assert report["totals"]["need_attention"] == 0 and report["by_state"] == {"COMPLETED": 2}

        # A Firework that fails once, is rerun by the user, then completes: its first launch is
        # history, not attention, and no longer counted.
        flag = tmp_path / "second-time"
        lps["a"].add_wf(
            Firework(ScriptTask.from_str(f"test -e {flag} || (touch {flag}; exit 3)"), name="flaky")
        )
        step(lps["a"], tmp_path / "a" / "l3")
        sync("-l", files["a"])
        assert lps["a"].get_fw_by_id(3).state == "FIZZLED"
        assert json.loads(invoke("status", "--json", "--no-check").output)["totals"]["need_attention"] == 1
        lpad(files["a"], "rerun_fws", "-i", "3")
        step(lps["a"], tmp_path / "a" / "l4")
        sync("-l", files["a"])
        assert lps["a"].get_fw_by_id(3).state == "COMPLETED"
        report = json.loads(invoke("status", "--json", "--no-check", "--all").output)
        assert report["totals"]["need_attention"] == 0, report
        assert report["by_state"] == {"COMPLETED": 3}, report
        old = next(x for x in report["launches"] if x["launch_id"] == 3)
        assert old["history"] and not old["attention"]
    finally:
        for lp in lps.values():
            lp.connection.drop_database(lp.db.name)


def test_another_launchpads_completion_set_aside_does_not_swallow_this_launchs_walltime_exit(
    launchpad: Any, tmp_path: Path, mongo_uri: str, private_inbox: str
) -> None:
    """Found by chaos scenario 13: a journal that first read another LaunchPad's launch 1 (its
    pointer in the shared inbox: started, completed, exited) set those events aside once the push
    learned that its LaunchPad's launch 1 runs elsewhere; then this launch's own job was killed at
    its walltime. Its exit was marked applied and changed nothing: the set-aside completion
    counted as the launch's ("a later exit adds nothing"), and the Firework stayed RUNNING for
    good instead of FIZZLED."""
    from fwspool.events import Completed, Ping
    from fwspool.ingest import Ingester
    from fwspool.journal import Journal
    from fwspool.push import Pusher
    from fwspool.testing.launchpad import uplink_for

    launchpad.add_wf(Firework(ScriptTask.from_str("sleep 1000"), name="walltime"))
    own = tmp_path / "own" / "l1"
    _, launch_id = reserve_offline(launchpad, str(own))
    at = utcnow()
    other = tmp_path / "other-launchpad" / "l1"  # its launch 1, announced in the same inbox
    other.mkdir(parents=True)
    with SpoolWriter(str(other), launch_id, 7, clock=lambda: at) as w:
        w.append(Started(started_on=at, host="elsewhere"))
        w.append(Completed(state="COMPLETED", action={}, completed_on=at))
        w.append(Exited(returncode=0))
    inbox.write_pointer(private_inbox, launch_id, 7, str(other))
    uplink = uplink_for(mongo_uri, launchpad.name)
    try:
        with Journal.open(str(tmp_path / "journal.sqlite3")) as journal:
            Ingester(journal, inbox_dir=private_inbox).run_pass()
            Pusher(journal, uplink).run_pass()  # launch 1 is the LaunchPad's in `own`: set aside
            assert launchpad.get_fw_by_id(1).state == "RESERVED"
            # This launch's job: started, pinged, killed at its walltime (the signal handler's
            # exit is a writer of its own, naming the run it ends).
            with SpoolWriter(str(own), launch_id, 1, clock=lambda: at) as run:
                run.append(Started(started_on=at, host="here"))
                run.append(Ping(ping_time=at))
            with SpoolWriter(str(own), launch_id, 1, clock=lambda: at) as handler:
                handler.append(Exited(signal=15, signal_name="SIGTERM", run=run.writer_id))
            for _ in range(2):
                Ingester(journal, inbox_dir=private_inbox).run_pass()
                Pusher(journal, uplink).run_pass()
            outcomes = journal.query("SELECT type, push_outcome FROM events ORDER BY type, push_outcome")
    finally:
        uplink.close()
    assert sorted((r["type"], r["push_outcome"]) for r in outcomes) == [
        ("completed", "stray"),
        ("exited", "applied"),
        ("exited", "stray"),
        ("ping", "applied"),
        ("started", "applied"),
        ("started", "stray"),
    ]
    fw = launchpad.get_fw_by_id(1)
    assert fw.state == "FIZZLED", fw.state
    assert "killed by SIGTERM" in fw.launches[-1].action.stored_data["_message"]


def test_another_launchpads_start_set_aside_does_not_hide_this_launchs_legacy_offline_file(
    launchpad: Any, tmp_path: Path, mongo_uri: str, private_inbox: str
) -> None:
    """A journal that first read another LaunchPad's launch 1 from the shared inbox (a spool file
    with a start) sets it aside at the push; this LaunchPad's launch 1 is an unmodified FireWorks
    offline job (``rlaunch singleshot --offline``: FW_offline.json, no spool file). Its offline
    file, read once before the job ran, must be read again when the job has run: the set-aside
    start must not make it "driven by a spool file"."""
    from fwspool.ingest import Ingester
    from fwspool.journal import Journal
    from fwspool.push import Pusher
    from fwspool.testing.launchpad import uplink_for

    launchpad.add_wf(Firework(ScriptTask.from_str("echo legacy"), name="legacy"))
    own = tmp_path / "own" / "l1"
    _, launch_id = reserve_offline(launchpad, str(own))
    at = utcnow()
    other = tmp_path / "other-launchpad" / "l1"
    other.mkdir(parents=True)
    with SpoolWriter(str(other), launch_id, 7, clock=lambda: at) as w:
        w.append(Started(started_on=at, host="elsewhere"))
    inbox.write_pointer(private_inbox, launch_id, 7, str(other))
    uplink = uplink_for(mongo_uri, launchpad.name)
    try:
        with Journal.open(str(tmp_path / "journal.sqlite3")) as journal:
            Ingester(journal, inbox_dir=private_inbox).run_pass()
            Pusher(journal, uplink).run_pass()  # launch 1 is the LaunchPad's in `own`: set aside
            Ingester(journal, inbox_dir=private_inbox).run_pass()  # FW_offline.json as reserved
            res = run_fireworks_offline(str(own))
            assert res.returncode == 0, res.stderr[-2000:]
            for _ in range(2):
                Ingester(journal, inbox_dir=private_inbox).run_pass()
                Pusher(journal, uplink).run_pass()
    finally:
        uplink.close()
    assert launchpad.get_fw_by_id(1).state == "COMPLETED"


def test_another_launchpads_run_set_aside_is_not_what_the_batch_check_judges(
    tmp_path: Path, private_inbox: str
) -> None:
    """The batch-system check decides a launch's fate from its last run event: lost (it started),
    released (it never did), nothing (it ended). Another LaunchPad's run of the same launch id,
    set aside at the push, must not count: here it ended, and this launch's batch job, which never
    started it, would never have been judged (its reservation held for good)."""
    from fwspool.ingest import Ingester
    from fwspool.journal import Journal

    at = utcnow()
    other = tmp_path / "other-launchpad" / "l1"
    other.mkdir(parents=True)
    with SpoolWriter(str(other), 1, 7, clock=lambda: at) as w:
        w.append(Started(started_on=at, host="elsewhere"))
        w.append(Exited(signal=9, signal_name="SIGKILL"))
    inbox.write_pointer(private_inbox, 1, 7, str(other))
    own = tmp_path / "own" / "l1"
    own.mkdir(parents=True)
    with Journal.open(str(tmp_path / "journal.sqlite3")) as journal:
        Ingester(journal, inbox_dir=private_inbox).run_pass()
        # The push: the LaunchPad's launch 1 runs in `own`, reserved for batch job 123.
        assert journal.settle_identities([1], {1: {"launch_id": 1, "fw_id": 1, "launch_dir": str(own)}}, 2)
        journal.register_offline_runs(
            [{"launch_id": 1, "fw_id": 1, "launch_dir": str(own), "batch_job_id": "123", "fw_name": "x"}]
        )
        [launch] = journal.scheduled_launches()
    assert (launch.launch_id, launch.batch_job_id, launch.last_run_event) == (1, "123", None)
