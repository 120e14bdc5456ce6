"""`fwspool doctor` through the command line: a site set up as the README says passes every check
(the real server, the real Slurm); each mistake a new user makes is one ✗ line with its fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fwspool.journal import Journal
from fwspool.testing.commands import invoke
from fwspool.testing.devslurm import DevSlurm
from fwspool.testing.docs import doc_line
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import Site, launchpad_file_text, qadapter_file_text

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


README_LINE = doc_line("rocket_launch: $HOME/fw/.venv/bin/fwspool")


def lines_by_check(output: str) -> dict[str, str]:
    """Each check's line by its name (``journal``, ``rocket_launch``...), the mark first."""
    found = {}
    for line in output.splitlines():
        if line[:2] in ("✓ ", "✗ ", "! ", "- "):
            found[line[2:].split(":", 1)[0].split(" /", 1)[0]] = line
    return found


def test_a_site_set_up_as_the_readme_says_passes_every_check(
    tmp_path: Path, mongo_uri: str, db_name: str, slurm_cluster: DevSlurm
) -> None:
    make_launchpad(mongo_uri, db_name).connection.close()
    site = Site(tmp_path, mongo_uri, db_name, slurm_cluster, README_LINE)
    doctor = doc_line("$HOME/fw/.venv/bin/fwspool doctor")
    res = subprocess.run(
        ["bash", "-c", doctor], cwd=site.fw, env=site.env(), capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and not res.stderr, res.stdout + res.stderr
    checks = lines_by_check(res.stdout)
    assert list(checks) == [
        "LaunchPad settings",
        "database",
        "journal",
        "lpad recover_offline",
        "queue adapter file",
        "rocket_launch",
        "fwspool in the job",
        "files in rocket_launch",
        "batch system (slurm)",
        "inbox",
        "launch roots",
        "jobflow JobStore",
    ], res.stdout
    assert all(
        line.startswith("✓ ")
        for name, line in checks.items()
        if name not in ("launch roots", "jobflow JobStore")
    ), res.stdout
    # No ~/.jobflow.yaml in this home: jobflow's default store is in memory, which only jobflow
    # workflows that name no store of their own would mind.
    assert checks["jobflow JobStore"].startswith("! jobflow JobStore: JOB_STORE is an in-memory store"), (
        res.stdout
    )
    assert checks["database"].endswith("answers and holds a LaunchPad")
    assert f"✓ fwspool in the job: {site.fw}/.venv/bin/fwspool exists and is executable" in res.stdout
    assert checks["journal"] == (
        f"✓ journal {site.home}/.local/state/fwspool/journal.sqlite3: not created yet (`fwspool ingest` or "
        "`sync` creates it, mode 600), on local disk (" + checks["journal"].rsplit("(", 1)[1]
    )
    assert checks["batch system (slurm)"].startswith(
        "✓ batch system (slurm): squeue lists 0 of your jobs; sinfo: "
    )
    assert checks["launch roots"].startswith("- launch roots: not checked")
    assert not (site.home / ".local").exists()  # nothing created
    # The README's other way for the job to find fwspool: the venv activated in pre_rocket.
    (site.fw / ".venv" / "bin" / "activate").symlink_to(BIN / "activate")
    pre_rocket = doc_line("pre_rocket: source $HOME/fw/.venv/bin/activate")
    qadapter = site.fw / "activating_qadapter.yaml"
    qadapter.write_text(
        site.qadapter.read_text()
        .replace(README_LINE, doc_line("rocket_launch: fwspool rlaunch"))
        .replace("pre_rocket: null", pre_rocket)
    )
    res = site.fwspool("doctor", "-l", "my_launchpad.yaml", "-q", str(qadapter))
    assert (
        f"✓ fwspool in the job: pre_rocket activates {site.fw}/.venv/bin/activate, which holds "
        f"{site.fw}/.venv/bin/fwspool" in res.stdout
    ), res.stdout


@pytest.fixture
def files(tmp_path: Path, mongo_uri: str, launchpad: Any) -> dict[str, str]:
    """A launchpad file for a real LaunchPad and a journal and an inbox that pass."""
    lpad = tmp_path / "my_launchpad.yaml"
    lpad.write_text(launchpad_file_text(mongo_uri, launchpad.name))
    journal = tmp_path / "journal" / "journal.sqlite3"
    Journal.open(str(journal)).close()
    (tmp_path / "inbox").mkdir()
    return {"lpad": str(lpad), "journal": str(journal), "inbox": str(tmp_path / "inbox")}


def doctor(
    tmp_path: Path,
    files: dict[str, str],
    rocket_launch: str,
    *extra: str,
    q_type: str = "PBS",
    pre_rocket: str | None = None,
) -> Any:
    """`fwspool doctor` with a queue adapter file of this rocket_launch line, for a batch system
    (PBS: not asked, so that only the Slurm tests depend on Slurm) and a pre_rocket."""
    qadapter = tmp_path / "q.yaml"
    text = qadapter_file_text(f"rocket_launch: {rocket_launch}", pre_rocket)
    qadapter.write_text(text.replace("_fw_q_type: SLURM", f"_fw_q_type: {q_type}"))
    args = ["-l", files["lpad"], "--journal", files["journal"], "--inbox", files["inbox"], *extra]
    return invoke("doctor", "-q", str(qadapter), *args)


#: An FWorker file, named by its absolute path as the job needs it.
FWORKER = REPO / "tests" / "data" / "my_fworker.yaml"
GOOD = f"{BIN}/fwspool rlaunch -w {FWORKER} singleshot --offline"
#: The line the quick start changes: FireWorks' own offline rocket, which doctor fails with the fix.
BEFORE = doc_line("rocket_launch: rlaunch ")


def test_each_mistake_is_one_line_with_its_fix_and_the_exit_code_says_so(
    tmp_path: Path, files: dict[str, str], mongo_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = doctor(tmp_path, files, GOOD)
    assert res.exit_code == 0, res.output  # PBS cannot be asked: not a failure, said so
    assert "- batch system (pbs): not checked: fwspool asks only Slurm and Grid Engine" in res.output
    cases: list[tuple[str, tuple[str, ...], dict[str, Any], str, str]] = [
        (
            BEFORE.removeprefix("rocket_launch: "),
            (),
            {},
            "rocket_launch",
            f"✗ rocket_launch: {BEFORE!r} runs 'rlaunch', not `fwspool rlaunch`; fix: make it rocket_launch: "
            f"{BIN}/fwspool rlaunch -w /path/to/my_fworker.yaml singleshot --offline",
        ),
        (
            f"{BIN}/fwspool rlaunch singleshot",
            (),
            {},
            "rocket_launch",
            f"✗ rocket_launch: 'rocket_launch: {BIN}/fwspool rlaunch singleshot' lacks --offline (qlaunch -r refuses",
        ),
        (
            "fwspool rlaunch singleshot --offline",
            (),
            {},
            "fwspool in the job",
            "✗ fwspool in the job: `fwspool` by name alone, and pre_rocket activates no venv: a login shell's PATH "
            f"may not have it; fix: name it by its absolute path (rocket_launch: {BIN}/fwspool rlaunch ...), or "
            f"activate its venv first (pre_rocket: source {BIN}/activate)",
        ),
        (
            "fwspool rlaunch singleshot --offline",
            (),
            {"pre_rocket": "module load python; source $HOME/nowhere/bin/activate"},
            "fwspool in the job",
            f"✗ fwspool in the job: pre_rocket activates {os.environ['HOME']}/nowhere/bin/activate, but "
            f"{os.environ['HOME']}/nowhere/bin/fwspool does not exist or is not executable; fix: name it",
        ),
        (
            "/opt/nowhere/fwspool rlaunch singleshot --offline",
            (),
            {},
            "fwspool in the job",
            "✗ fwspool in the job: /opt/nowhere/fwspool does not exist or is not executable; fix: ",
        ),
        (
            GOOD,
            (),
            {"q_type": "Torque"},
            "queue adapter file",
            "is not a batch system FireWorks knows; fix: set",
        ),
        (GOOD, ("--root", str(tmp_path / "gone")), {}, "launch root", "is not a directory; fix: give --root"),
        (GOOD, ("--inbox", files["lpad"]), {}, "inbox", "is not a directory; fix: set FWSPOOL_INBOX"),
        (
            GOOD,
            ("-l", str(tmp_path / "nope.yaml")),
            {},
            "LaunchPad settings",
            "does not exist; fix: fix the file",
        ),
        (
            GOOD,
            ("--uri", "mongodb://127.0.0.1:1/", "-l", ""),
            {},
            "database",
            "Connection refused; fix: start it",
        ),
        (
            GOOD,
            ("--uri", mongo_uri, "--name", "empty", "-l", ""),
            {},
            "database",
            "is not a FireWorks LaunchPad",
        ),
    ]
    for rocket_launch, extra, adapter, check, expected in cases:
        res = doctor(tmp_path, files, rocket_launch, *extra, **adapter)
        assert res.exit_code == 1, (check, res.output)
        line = lines_by_check(res.output)[check]
        assert line.startswith("✗ ") and expected in line, (check, res.output)
        assert res.output.count("✗ ") == 1, res.output  # the others pass
        assert res.output.endswith(" checks failed\n")
    # The database is skipped when the settings are unusable, the job's checks when the adapter is.
    res = doctor(tmp_path, files, GOOD, "-l", str(tmp_path / "nope.yaml"))
    assert "- database: not checked: no usable LaunchPad settings" in res.output
    res = doctor(tmp_path, files, GOOD, q_type="Torque")
    assert "- rocket_launch: not checked: no usable queue adapter file" in res.output


def test_the_journal_must_be_private_and_on_local_disk(
    tmp_path: Path, files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    os.chmod(files["journal"], 0o644)
    line = lines_by_check(doctor(tmp_path, files, GOOD).output)["journal"]
    assert (
        line
        == f"✗ journal {files['journal']}: other users can read {files['journal']} (mode 644); fix: chmod 600 {files['journal']}"
    )
    os.chmod(files["journal"], 0o600)
    import fwspool.doctor

    monkeypatch.setattr(fwspool.doctor, "filesystem_type", lambda path: "nfs4")
    res = doctor(tmp_path, files, GOOD)
    assert res.exit_code == 1
    line = lines_by_check(res.output)["journal"]
    assert (
        "on a nfs4 filesystem, where SQLite's locks are unreliable; fix: put it on the login node's local disk"
        in line
    )
    monkeypatch.setenv("FWSPOOL_ALLOW_NETWORK_JOURNAL", "1")
    assert lines_by_check(doctor(tmp_path, files, GOOD).output)["journal"].startswith("✓ ")


def test_a_batch_system_that_does_not_answer(
    tmp_path: Path, files: dict[str, str], slurm_cluster: DevSlurm
) -> None:
    assert doctor(tmp_path, files, GOOD, q_type="SLURM").exit_code == 0  # the private cluster answers
    res = invoke(
        "doctor",
        "-q",
        str(tmp_path / "q.yaml"),
        "-l",
        files["lpad"],
        "--journal",
        files["journal"],
        "--inbox",
        files["inbox"],
        env={"PATH": str(tmp_path)},  # Slurm's client commands are not on it
    )
    assert res.exit_code == 1
    line = lines_by_check(res.output)["batch system (slurm)"]
    assert (
        line
        == "✗ batch system (slurm): squeue not found; fix: put Slurm's client commands on PATH for fwspool sync"
    )
