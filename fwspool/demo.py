"""``fwspool demo``: the whole path on a throwaway database, explained step by step.

In a temporary directory: start a MongoDB-wire server (SecantusDB), make a three-step FireWorks
workflow, reserve step 1 offline as ``qlaunch -r`` does, run it with ``fwspool rlaunch``, stop the
database, ingest (the events wait in the journal), fail to push (one clear line), restart the
database, push, and show the workflow advancing. Everything is removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable

from fwspool.config import LaunchPadConfig
from fwspool.devserver import DevServer
from fwspool.errors import FwspoolError, UplinkUnavailable
from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.push import Pusher
from fwspool.reserve import reserve_offline
from fwspool.uplink import MongoUplink


def run_demo(say: Callable[[str], None] = print, keep: bool = False) -> dict[str, str]:
    """Run the demo; returns the final Firework states by name (step1 COMPLETED, step2 READY).

    Raises :class:`~fwspool.errors.FwspoolError` if the workflow did not advance so: the demo is
    also a check that this installation works end to end.
    """
    from fireworks import Firework, LaunchPad, ScriptTask, Workflow

    base = tempfile.mkdtemp(prefix="fwspool-demo-")
    server = DevServer(os.path.join(base, "mongo"))
    try:
        say(f"1. Starting a throwaway MongoDB-wire server (SecantusDB) under {base}")
        server.start()
        lp = LaunchPad(host=server.uri, name="fireworks", uri_mode=True, strm_lvl="ERROR")
        lp.reset("", require_password=False)
        say("2. Adding a three-step workflow: step1 -> step2 -> step3")
        s1 = Firework(ScriptTask.from_str('echo "step 1 ran on the compute node"'), name="step1")
        s2 = Firework(ScriptTask.from_str("echo step 2"), name="step2", parents=[s1])
        s3 = Firework(ScriptTask.from_str("echo step 3"), name="step3", parents=[s2])
        lp.add_wf(Workflow([s1, s2, s3], name="demo"))
        launch_dir = os.path.join(base, "launch_step1")
        _, launch_id = reserve_offline(lp, launch_dir)
        say(f"3. Reserved step1 offline as `qlaunch -r` does: FW.json + FW_offline.json in {launch_dir}")
        say("4. The compute node runs it: `fwspool rlaunch` appends events to a spool file, no database")
        res = subprocess.run(
            [sys.executable, "-m", "fwspool.cli", "rlaunch"], cwd=launch_dir, capture_output=True, text=True
        )
        if res.returncode != 0:
            raise FwspoolError(f"fwspool rlaunch failed: {res.stderr.strip().splitlines()[-1:]}")
        spools = [n for n in os.listdir(launch_dir) if n.endswith(".spool")]
        with open(os.path.join(launch_dir, spools[0]), "rb") as f:
            types = [line.split(b'"type":"', 1)[1].split(b'"', 1)[0].decode() for line in f]
        say(f"   spool {spools[0]}: {', '.join(types)}")
        say("5. The database goes down for maintenance")
        server.stop()
        journal_path = os.path.join(base, "journal", "journal.sqlite3")
        config = LaunchPadConfig({"host": server.uri, "uri_mode": True, "name": "fireworks"}, "demo")
        with Journal.open(journal_path) as journal:
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
            server.start()
            uplink = MongoUplink(config)
            try:
                pushed = Pusher(journal, uplink).run_pass()
            finally:
                uplink.close()
            say(f"9. Push: {pushed.line()}")
        lp = LaunchPad(host=server.uri, name="fireworks", uri_mode=True, strm_lvl="ERROR")
        states = {d["name"]: d["state"] for d in lp.fireworks.find({}, {"name": 1, "state": 1})}
        launch = lp.launches.find_one({"launch_id": launch_id})
        history = ", ".join(f"{h['state']} {h['created_on']}" for h in launch["state_history"])
        say(
            f"10. The workflow advanced: step1 {states['step1']}, step2 {states['step2']}, step3 {states['step3']}"
        )
        say(f"    launch {launch_id} history, with the compute node's real times: {history}")
        lp.connection.close()
        if states.get("step1") != "COMPLETED" or states.get("step2") != "READY":
            raise FwspoolError(f"the demo workflow did not advance as expected: {states}")
        return states
    finally:
        server.stop()
        if keep:
            say(f"Kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
            say("Cleaned up.")
