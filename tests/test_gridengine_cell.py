"""The private Grid Engine cell (fwspool.testing.gridengine) is the one the issue asks for: jobs
run in the submit directory (``-cwd`` from ``sge_request``), ``-notify`` warns with SIGTERM
before the kill, the accounting record is written as the job ends, and nothing survives stop()."""

from __future__ import annotations

import os
from pathlib import Path

from fwspool.scheduler import parse_qacct
from fwspool.testing.gridengine import DevGridEngine
from fwspool.testing.waiting import wait_for


def test_a_job_runs_in_its_submit_directory_and_is_accounted(
    gridengine_cell: DevGridEngine, tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    script.write_text('#!/bin/bash\necho "job $JOB_ID in $PWD restarted=$RESTARTED"\nexit 3\n')
    job_id = gridengine_cell.qsub(str(script), cwd=str(tmp_path))
    gridengine_cell.wait_for_state(job_id, {"GONE"}, 30)
    (record,) = gridengine_cell.wait_for_accounting(job_id)
    assert (record["failed"], record["exit_status"]) == ("0", "3")
    # FireWorks' relative "-o FW_job.out" relies on -cwd: the output is in the submit directory.
    assert (tmp_path / f"job.sh.o{job_id}").read_text() == f"job {job_id} in {tmp_path} restarted=0\n"


def test_notify_warns_with_sigterm_before_qdel_kills(gridengine_cell: DevGridEngine, tmp_path: Path) -> None:
    script = tmp_path / "trap.sh"
    script.write_text(
        "#!/bin/bash\ntrap 'echo TERM >> signals; exit 0' TERM\ntrap 'echo USR2 >> signals' USR2\n"
        "touch started\nwhile true; do sleep 0.2; done\n"
    )
    job_id = gridengine_cell.qsub(str(script), "-notify", cwd=str(tmp_path))
    wait_for(lambda: (tmp_path / "started").exists(), 30, "the job's start")
    gridengine_cell.qdel(job_id)
    gridengine_cell.wait_for_state(job_id, {"GONE"}, 30)
    assert (tmp_path / "signals").read_text() == "TERM\n"


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    cell = DevGridEngine(str(tmp_path / "cell")).start()
    try:
        script = tmp_path / "sleeper.sh"
        script.write_text("#!/bin/bash\nsleep 300 &\nsleep 300\n")
        job_id = cell.qsub(str(script), cwd=str(tmp_path))
        cell.wait_for_state(job_id, {"r"}, 30)
        daemons = [int(Path(cell.base_dir, f"{d}.pid").read_text()) for d in ("qmaster", "execd")]
    finally:
        cell.stop()
    assert not cell.running
    for pid in daemons:
        assert not os.path.exists(f"/proc/{pid}")
    marker = str(tmp_path).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        assert not (b"sleep" in cmdline and marker in environ), f"process {pid} survived: {cmdline!r}"


def test_qacct_records_are_read_one_per_run() -> None:
    text = (
        "==============================================================\n"
        "qname        all.q\njobnumber    7\nfailed       25  : rescheduling\nexit_status  0\n"
        "==============================================================\n"
        "qname        all.q\njobnumber    7\nfailed       0\nexit_status  0\n"
    )
    first, second = parse_qacct(text)
    assert first["failed"] == "25  : rescheduling" and second["failed"] == "0"
