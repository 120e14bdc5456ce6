"""Two login nodes pushing the same launch directories (two journals), one killed mid-push.

Journal A's ``fwspool push`` is SIGKILLed inside its bulk completion; journal B pushes the same
launches. B must not wait on A's workflow lock (FireWorks' WFLock would wait 300 s), must not
mark its events applied while A's half-written workflow is still locked, and, once the lock is
broken (``lpad admin unlock``), A's redo must not replay over what B wrote: no duplicated
additions, no Firework outside a workflow. Whatever the order, the LaunchPad ends as a clean run
leaves it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dyn_tasks import GrowTask
from fireworks import Firework, ScriptTask, Workflow

from fwspool.reserve import reserve_offline
from fwspool.testing.commands import job_env, run_fwspool
from fwspool.testing.launchpad import make_launchpad, snapshot


def grow_wf() -> Workflow:
    a = Firework(GrowTask(label="g"), name="grow")
    b = Firework(ScriptTask.from_str("echo two"), name="two", parents=[a])
    return Workflow([a, b], name="grow")


class Login:
    """One login node: its own journal, pushing with the real command line."""

    def __init__(self, journal: str, uri: str, name: str, root: str) -> None:
        self.env = job_env()
        self.env.update(FWSPOOL_JOURNAL=journal, FWSPOOL_MONGODB_URI=uri, FWSPOOL_MONGODB_NAME=name)
        # Launch ids are per LaunchPad: each LaunchPad's jobs announce themselves in its own inbox.
        self.env["FWSPOOL_INBOX"] = str(Path(root) / "inbox")
        self.root = root

    def cli(self, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, FWSPOOL_FAILPOINTS=f"{failpoint}=kill") if failpoint else self.env
        return subprocess.run(
            [sys.executable, "-m", "fwspool.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )

    def sync(self, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
        self.cli("ingest", "--root", self.root)
        return self.cli("push", failpoint=failpoint)


def orphans(lp: Any) -> list[int]:
    """Fireworks that no workflow holds (a rocket that takes one fizzles: no workflow)."""
    held = {n for wf in lp.workflows.find({}, {"nodes": 1}) for n in wf["nodes"]}
    return sorted(d["fw_id"] for d in lp.fireworks.find({}, {"fw_id": 1}) if d["fw_id"] not in held)


def admin_unlock(lp: Any) -> None:
    """What `lpad admin unlock` does to a workflow: FireWorks' WFLock, forced, then released."""
    from fireworks.core.launchpad import WFLock

    for wf in lp.workflows.find({"locked": True}, {"nodes": 1}):
        with WFLock(lp, wf["nodes"][0], expire_secs=0, kill=True):
            pass


@pytest.fixture
def site(mongo_uri: str, db_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    clean = make_launchpad(mongo_uri, db_name + "_c")
    shared = make_launchpad(mongo_uri, db_name + "_s")
    dirs: dict[str, str] = {}
    for lp, sub in ((clean, "c"), (shared, "s")):
        lp.add_wf(grow_wf())
        dirs[sub] = str(tmp_path / sub / "l0")
        monkeypatch.setenv("FWSPOOL_INBOX", str(tmp_path / sub / "inbox"))
        reserve_offline(lp, dirs[sub])
        assert run_fwspool(dirs[sub]).returncode == 0
    ref = Login(str(tmp_path / "c.sqlite3"), mongo_uri, clean.name, str(tmp_path / "c"))
    assert ref.sync().returncode == 0
    a = Login(str(tmp_path / "a.sqlite3"), mongo_uri, shared.name, str(tmp_path / "s"))
    b = Login(str(tmp_path / "b.sqlite3"), mongo_uri, shared.name, str(tmp_path / "s"))
    yield clean, shared, a, b, dirs
    for lp in (clean, shared):
        lp.connection.drop_database(lp.name)


def same_as_clean(clean: Any, shared: Any, dirs: dict[str, str]) -> None:
    assert orphans(shared) == []
    assert shared.workflows.count_documents({"locked": {"$exists": True}}) == 0
    assert snapshot(shared, (dirs["s"],)) == snapshot(clean, (dirs["c"],))


@pytest.mark.parametrize("point", ["bulk.after_launches", "bulk.after_fireworks"])
def test_the_other_login_node_skips_a_dead_pushs_lock_at_once_and_the_redo_finishes(site, point: str) -> None:
    clean, shared, a, b, dirs = site
    assert a.sync(failpoint=point).returncode == -signal.SIGKILL
    started = time.monotonic()
    blocked = b.sync()
    assert time.monotonic() - started < 60, "waited on the dead push's workflow lock"
    assert blocked.returncode == 0, blocked.stderr
    assert "locked" in blocked.stderr
    assert "0 events applied" in blocked.stdout or "0 events applied" in blocked.stderr
    assert a.sync().returncode == 0  # A's redo finishes its own write
    assert b.sync().returncode == 0
    same_as_clean(clean, shared, dirs)


def test_a_broken_lock_then_the_dead_pushs_redo_adds_nothing_twice(site) -> None:
    clean, shared, a, b, dirs = site
    assert a.sync(failpoint="bulk.after_launches").returncode == -signal.SIGKILL
    admin_unlock(shared)
    done = b.sync()
    assert done.returncode == 0, done.stderr
    replay = a.sync()
    assert replay.returncode == 0, replay.stderr
    assert orphans(shared) == []
    assert shared.fireworks.count_documents({}) == 4  # two + one addition + one detour, not more
    # B's refresh gave the new Fireworks the next free ids (A had taken 3 and 4): same workflow.
    assert by_name(shared) == by_name(clean)
    assert shared.workflows.count_documents({"locked": {"$exists": True}}) == 0


def by_name(lp: Any) -> dict[str, Any]:
    """The workflow by Firework name: states, links and the stored launch's state."""
    names = {d["fw_id"]: d["name"] for d in lp.fireworks.find({}, {"fw_id": 1, "name": 1})}
    wf = lp.workflows.find_one({})
    return {
        "states": {d["name"]: d["state"] for d in lp.fireworks.find({}, {"name": 1, "state": 1})},
        # update_spec and mod_spec's _push applied once: twice would push the label twice
        "specs": {d["name"]: d["spec"] for d in lp.fireworks.find({}, {"name": 1, "spec": 1})},
        "fw_states": {names[int(k)]: v for k, v in wf["fw_states"].items()},
        "links": {names[int(k)]: sorted(names[c] for c in v) for k, v in wf["links"].items()},
        "state": wf["state"],
        "launches": sorted((d["state"], names[d["fw_id"]]) for d in lp.launches.find({})),
    }


def taken_back_as_clean(clean: Any, shared: Any) -> None:
    """A half taken back is completed afresh by FireWorks' refresh: the additions get the next
    free ids (the dead push's stay unused), so the workflow is compared by Firework name."""
    assert orphans(shared) == []
    assert shared.fireworks.count_documents({}) == 4  # two + one addition + one detour, not more
    assert by_name(shared) == by_name(clean)
    assert shared.workflows.count_documents({"locked": {"$exists": True}}) == 0
    assert shared.workflows.count_documents({"_fwspool_lock": {"$exists": True}}) == 0


def test_new_fireworks_are_promoted_when_their_workflow_was_written_again_before_the_redo(site) -> None:
    """Killed after writing the workflow and before promoting its new Fireworks; FireWorks itself
    (or the other login node) then writes that workflow again. The redo is abandoned, and used to
    leave the new Fireworks WAITING for good while their workflow said READY: nobody ran them."""
    clean, shared, a, b, dirs = site
    assert a.sync(failpoint="bulk.before_promote").returncode == -signal.SIGKILL
    assert {d["state"] for d in shared.fireworks.find({"name": {"$in": ["g-addition", "g-detour"]}})} == {
        "WAITING"
    }
    shared._refresh_wf(shared.fireworks.find_one({"name": "grow"})["fw_id"])  # as a rocket's refresh
    done = a.sync()
    assert done.returncode == 0, done.stderr
    assert b.sync().returncode == 0
    same_as_clean(clean, shared, dirs)


def test_a_broken_lock_after_the_fireworks_were_written_loses_no_addition(site) -> None:
    """Killed after writing the Fireworks (the completed one COMPLETED, its child's spec updated,
    the new ones inserted WAITING) and before the workflow; the lock broken; the other login node
    pushes: its FireWorks refresh finds the Firework COMPLETED already and applies no FWAction,
    and the dead push's redo, seeing its workflow rewritten, drops its new Fireworks."""
    clean, shared, a, b, dirs = site
    assert a.sync(failpoint="bulk.after_fireworks").returncode == -signal.SIGKILL
    admin_unlock(shared)
    assert b.sync().returncode == 0
    assert a.sync().returncode == 0
    taken_back_as_clean(clean, shared)


@pytest.mark.parametrize("point", ["undo.after_claim", "undo.after_restore"])
@pytest.mark.parametrize("resumed_by", ["b", "a"])
def test_taking_back_a_broken_half_is_itself_resumed_after_a_kill(site, point: str, resumed_by: str) -> None:
    """B, taking back A's half-written completion, is killed too. A's redo must not write over
    nor drop that take-back (its marks are what it restores); B's next push resumes it, or,
    with B's lock broken as well, A's push does. Either way the FWAction is applied once."""
    clean, shared, a, b, dirs = site
    assert a.sync(failpoint="bulk.after_fireworks").returncode == -signal.SIGKILL
    admin_unlock(shared)
    assert b.sync(failpoint=point).returncode == -signal.SIGKILL
    waiting = a.sync()  # A's redo finds its workflow held by B's take-back
    assert waiting.returncode == 0, waiting.stderr
    assert "locked by another process" in waiting.stderr
    assert shared.workflows.count_documents({"_fwspool_undoing": {"$exists": True}}) == 1
    if resumed_by == "a":
        admin_unlock(shared)
    for login in (b, a) if resumed_by == "b" else (a, b):
        done = login.sync()
        assert done.returncode == 0, done.stderr
    for login in (a, b):
        assert login.sync().returncode == 0
    taken_back_as_clean(clean, shared)
    assert shared.fireworks.count_documents({"_fwspool_undo": {"$exists": True}}) == 0


def test_a_half_written_workflow_is_never_locked_by_another_journals_bulk_completion(site) -> None:
    """The lock broken after A wrote its Fireworks: B's push takes A's half back before it reads
    a single Firework, and says so; the marks are gone and the workflow unlocked after it."""
    clean, shared, a, b, dirs = site
    assert a.sync(failpoint="bulk.after_fireworks").returncode == -signal.SIGKILL
    marked = shared.fireworks.count_documents({"_fwspool_undo": {"$exists": True}})
    assert marked == 4  # the completed one, its child, the addition and the detour
    admin_unlock(shared)
    done = b.sync()
    assert done.returncode == 0, done.stderr
    assert "its writes are taken back" in done.stderr
    assert shared.fireworks.count_documents({"_fwspool_undo": {"$exists": True}}) == 0
    assert a.sync().returncode == 0
    taken_back_as_clean(clean, shared)
