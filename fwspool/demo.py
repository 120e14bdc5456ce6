"""``fwspool demo``: the whole path on a throwaway database, explained step by step.

In a temporary directory: start a MongoDB-wire server (SecantusDB), make a three-step FireWorks
workflow, reserve step 1 offline as ``qlaunch -r`` does, run it with ``fwspool rlaunch``, stop the
database, ingest (the events wait in the journal), fail to push (one clear line), restart the
database, push, and show the workflow advancing; run steps 2 and 3 the same way, each followed
by ``fwspool sync`` as cron runs it, to the end of the workflow; show ``fwspool status`` and one
query of the journal. Everything is removed, and the demo ends with the two lines a user needs
next: the queue adapter's ``rocket_launch`` line and the cron line (README, "Quick start",
steps 2 and 3).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from fwspool.config import LaunchPadConfig
from fwspool.devserver import DevServer
from fwspool.errors import FwspoolError, UplinkUnavailable
from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.push import Pusher
from fwspool.reserve import reserve_offline
from fwspool.uplink import MongoUplink

#: The journal query the demo shows: one launch's events, when they happened and when pushed.
QUERY = (
    "SELECT launch_id, type, occurred_at, pushed_at FROM events WHERE launch_id = {launch_id} "
    "ORDER BY occurred_at, event_id"
)
#: Where the README's lines expect the fwspool of the first command's venv.
README_FWSPOOL = "$HOME/fw/.venv/bin/fwspool"


def next_lines(fwspool: str | None = None) -> tuple[str, str]:
    """The queue adapter's ``rocket_launch`` line and the cron line of the README, naming this
    installation's ``fwspool`` (the files stay in ``$HOME/fw``, as the README has them)."""
    if fwspool is None:
        beside = os.path.join(os.path.dirname(sys.executable), "fwspool")
        fwspool = beside if os.path.exists(beside) else shutil.which("fwspool") or "fwspool"
    return (
        f"rocket_launch: {fwspool} rlaunch -w $HOME/fw/my_fworker.yaml singleshot --offline",
        f"*/5 * * * * cd $HOME/fw && {fwspool} sync -l my_launchpad.yaml >> $HOME/fw/sync.log 2>&1",
    )


class _Demo:
    """The demo's directory, server, LaunchPad and commands."""

    def __init__(self, base: str, say: Callable[[str], None]) -> None:
        self.base = base
        self.say = say
        self.server = DevServer(os.path.join(base, "mongo"))
        self.journal_path = os.path.join(base, "journal", "journal.sqlite3")
        # The demo's own inbox and journal: nothing of it reaches the user's.
        self.env = dict(
            os.environ,
            FWSPOOL_INBOX=os.path.join(base, "inbox"),
            FWSPOOL_JOURNAL=self.journal_path,
        )
        self.lp: Any = None

    def launchpad(self) -> Any:
        from fireworks import LaunchPad

        self.lp = LaunchPad(host=self.server.uri, name="fireworks", uri_mode=True, strm_lvl="ERROR")
        return self.lp

    def fwspool(self, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        """``fwspool ARGS`` as a user runs it; its failure is the demo's."""
        res = subprocess.run(
            [sys.executable, "-m", "fwspool.cli", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise FwspoolError(f"fwspool {args[0]} failed in the demo: {last}")
        return res

    def run_offline(self, name: str) -> tuple[str, int]:
        """Reserve the next READY Firework as ``qlaunch -r`` does and run it with ``fwspool
        rlaunch`` in its own directory; (launch dir, launch id)."""
        launch_dir = os.path.join(self.base, f"launch_{name}")
        _, launch_id = reserve_offline(self.lp, launch_dir)
        self.fwspool("rlaunch", cwd=launch_dir)
        return launch_dir, launch_id

    def states(self) -> dict[str, str]:
        return {d["name"]: d["state"] for d in self.lp.fireworks.find({}, {"name": 1, "state": 1})}

    def states_line(self) -> str:
        s = self.states()
        return f"step1 {s['step1']}, step2 {s['step2']}, step3 {s['step3']}"


def run_demo(say: Callable[[str], None] = print, keep: bool = False) -> dict[str, str]:
    """Run the demo; returns the final Firework states by name (all three COMPLETED).

    Raises :class:`~fwspool.errors.FwspoolError` if the workflow did not run to its end: the demo
    is also a check that this installation works end to end.
    """
    base = tempfile.mkdtemp(prefix="fwspool-demo-")
    demo = _Demo(base, say)
    try:
        say(f"1. Starting a throwaway MongoDB-wire server (SecantusDB) under {base}")
        demo.server.start()
        _add_workflow(demo)
        launch_id = _first_step_through_an_outage(demo)
        _the_other_steps(demo)
        _status_and_query(demo, launch_id)
        states = demo.states()
        demo.lp.connection.close()
        if set(states.values()) != {"COMPLETED"}:
            raise FwspoolError(f"the demo workflow did not run to its end: {states}")
    finally:
        demo.server.stop()
        if keep:
            say(f"Kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
            say("Cleaned up.")
    rocket_launch, cron = next_lines()
    say("Next, on your cluster (README, 'Quick start', steps 2 and 3): in my_qadapter.yaml,")
    say(rocket_launch)
    say("and on the login node, in `crontab -e` (or the systemd service of the README):")
    say(cron)
    return states


def _add_workflow(demo: _Demo) -> None:
    from fireworks import Firework, ScriptTask, Workflow

    lp = demo.launchpad()
    lp.reset("", require_password=False)
    demo.say("2. Adding a three-step workflow: step1 -> step2 -> step3")
    s1 = Firework(ScriptTask.from_str('echo "step 1 ran on the compute node"'), name="step1")
    s2 = Firework(ScriptTask.from_str("echo step 2"), name="step2", parents=[s1])
    s3 = Firework(ScriptTask.from_str("echo step 3"), name="step3", parents=[s2])
    lp.add_wf(Workflow([s1, s2, s3], name="demo"))


def _first_step_through_an_outage(demo: _Demo) -> int:
    """Step 1 runs offline and its events wait in the journal while the database is down."""
    say = demo.say
    launch_dir, launch_id = demo.run_offline("step1")
    say(f"3. Reserved step1 offline as `qlaunch -r` does, and ran it there: {launch_dir}")
    spools = [n for n in os.listdir(launch_dir) if n.endswith(".spool")]
    with open(os.path.join(launch_dir, spools[0]), "rb") as f:
        types = [line.split(b'"type":"', 1)[1].split(b'"', 1)[0].decode() for line in f]
    say("4. The compute node ran it: `fwspool rlaunch` appended events to a spool file, no database")
    say(f"   spool {spools[0]}: {', '.join(types)}")
    say("5. The database goes down for maintenance")
    demo.server.stop()
    config = LaunchPadConfig({"host": demo.server.uri, "uri_mode": True, "name": "fireworks"}, "demo")
    with Journal.open(demo.journal_path) as journal:
        summary = Ingester(journal, roots=[launch_dir]).run_pass()
        say(f"6. The login node ingests into its journal anyway: {summary.line()}")
        uplink = MongoUplink(config, timeout=1.0)
        try:
            Pusher(journal, uplink).run_pass()
        except UplinkUnavailable as exc:
            say(f"7. A push now only waits, nothing is lost: {exc.message}")
        finally:
            uplink.close()
        say("8. The database is back")
        demo.server.start()
        uplink = MongoUplink(config)
        try:
            pushed = Pusher(journal, uplink).run_pass()
        finally:
            uplink.close()
        say(f"9. Push: {pushed.line()}")
    lp = demo.launchpad()
    launch = lp.launches.find_one({"launch_id": launch_id})
    history = ", ".join(f"{h['state']} {h['created_on']}" for h in launch["state_history"])
    say(f"10. The workflow advanced: {demo.states_line()}")
    say(f"    launch {launch_id} history, with the compute node's real times: {history}")
    if demo.states().get("step2") != "READY":
        raise FwspoolError(f"the demo workflow did not advance as expected: {demo.states()}")
    return launch_id


def _the_other_steps(demo: _Demo) -> None:
    """Steps 2 and 3: run offline, then ``fwspool sync`` (what cron runs every 5 minutes)."""
    demo.say(
        "11. Steps 2 and 3 the same way, each followed by `fwspool sync` (ingest + push, what cron runs):"
    )
    for step in ("step2", "step3"):
        launch_dir, _ = demo.run_offline(step)
        synced = demo.fwspool("sync", "--uri", demo.server.uri, "--name", "fireworks", "--root", launch_dir)
        demo.say(f"    {step}: `fwspool rlaunch`, then `fwspool sync`:")
        for line in synced.stdout.splitlines():
            demo.say(f"      {line}")
    demo.say(f"12. The workflow is done: {demo.states_line()}")


def _status_and_query(demo: _Demo, launch_id: int) -> None:
    status = demo.fwspool("status", "--uri", demo.server.uri, "--name", "fireworks")
    demo.say("13. `fwspool status`:")
    for line in status.stdout.splitlines():
        demo.say(f"      {line}")
    demo.say(f"14. The journal is SQLite: `sqlite3 {demo.journal_path}`, then")
    sql = QUERY.format(launch_id=int(launch_id))
    demo.say(f"      {sql};")
    with Journal.open(demo.journal_path) as journal:
        rows = journal.query(sql)
    for row in rows:
        demo.say(
            "      " + " | ".join(str(row[k]) for k in ("launch_id", "type", "occurred_at", "pushed_at"))
        )
    demo.say(
        "    (occurred_at: the compute node's clock; pushed_at: when the LaunchPad took them, after the outage)"
    )
