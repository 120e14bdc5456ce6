"""Scenario 9: bad configuration and bad input at the command line.

Every kind of bad configuration and input, each with the exit code docs/commands.md documents: one
``fwspool:`` line that says what is wrong, and no traceback.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from typing import Any

from fwspool.events import Started
from fwspool.spool import SpoolWriter
from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.invariants import Check
from fwspool.testing.chaos.processes import child_cmd, child_env, fwspool_cmd, without_dac_override
from fwspool.testing.chaos.processes import run as run_process
from fwspool.testing.chaos.trial import Scenario, ScenarioResult
from fwspool.testing.chaos.workload import T0, Template

NAME = "bad configuration and input at the CLI"


@dataclass
class CliCase:
    name: str
    args: list[str]
    code: int
    #: Words the one error line must contain.
    words: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    unprivileged: bool = False
    cwd: str | None = None
    #: A warning that must be printed on success (exit 0).
    warning: bool = False


@dataclass
class CliInputs:
    """The bad (and good) inputs the cases use, prepared in ``work``."""

    work: str
    #: A journal path the cases share.
    journal: str
    #: A copy of the template's launch directories.
    root: str
    uri: str
    db: str
    not_a_lp: str
    good_lp: str
    some_launch: str
    bad_offline: str
    bad_fw: str
    unreadable_spool_dir: str
    #: A journal that knows a launch directory that has been removed since.
    vanished_journal: str

    def write(self, name: str, text: str | bytes, mode: int = 0o644) -> str:
        path = os.path.join(self.work, name)
        with open(path, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        os.chmod(path, mode)
        return path


def cli_cases(cluster: Cluster, work: str, tpl: Template) -> list[CliCase]:
    """Every kind of bad configuration and input, with the exit code docs/commands.md documents."""
    x = prepare_inputs(cluster, work, tpl)
    return launchpad_cases(x) + uri_cases(x) + journal_cases(x) + input_cases(x)


def prepare_inputs(cluster: Cluster, work: str, tpl: Template) -> CliInputs:
    import pymongo

    from fwspool.ingest import Ingester
    from fwspool.journal import Journal

    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o777)
    root = os.path.join(work, "launches")
    shutil.copytree(os.path.join(tpl.root, "launches"), root)
    for d, _s, names in os.walk(work):
        os.chmod(d, 0o777)
        for n in names:
            os.chmod(os.path.join(d, n), 0o666)
    not_a_lp = "chaos_not_a_launchpad"
    client: Any = pymongo.MongoClient(cluster.uri)
    client[not_a_lp].misc.insert_one({"x": 1})
    client.close()
    x = CliInputs(
        work=work,
        journal=os.path.join(work, "journal", "journal.sqlite3"),
        root=root,
        uri=cluster.uri,
        db=tpl.db,
        not_a_lp=not_a_lp,
        good_lp="",
        some_launch=os.path.join(work, tpl.launches[0].rel),
        bad_offline=os.path.join(work, "bad-offline"),
        bad_fw=os.path.join(work, "bad-fw"),
        unreadable_spool_dir=os.path.join(work, "unreadable-spool"),
        vanished_journal=os.path.join(work, "vanished", "journal.sqlite3"),
    )
    x.good_lp = x.write("good_launchpad.yaml", f"host: {cluster.uri}\nname: {tpl.db}\nuri_mode: true\n")
    Journal.open(x.journal).close()  # push needs a journal: only ingest and sync create one
    os.makedirs(x.bad_offline)
    x.write("bad-offline/FW_offline.json", "{not json")
    os.makedirs(x.bad_fw)
    x.write("bad-fw/FW_offline.json", '{"launch_id": 5}')
    x.write("bad-fw/FW.json", '{"spec": ')
    os.makedirs(x.unreadable_spool_dir)
    with SpoolWriter(x.unreadable_spool_dir, 4242, 4242) as w:
        w.append(Started(started_on=T0, host="h", ip="1.1.1.1"))
    os.chmod(w.path, 0o000)
    os.chmod(x.unreadable_spool_dir, 0o777)
    # The vanished launch dir: the journal knows it (an earlier ingest), then it is removed.
    vanished_root = os.path.join(work, "vanishing")
    shutil.copytree(x.some_launch, os.path.join(vanished_root, "launch"))
    with SpoolWriter(os.path.join(vanished_root, "launch"), 777, 777) as w:
        w.append(Started(started_on=T0, host="h", ip="1.1.1.1"))
    with Journal.open(x.vanished_journal) as journal:
        Ingester(journal, roots=[vanished_root]).run_pass()
    shutil.rmtree(vanished_root)
    return x


def launchpad_cases(x: CliInputs) -> list[CliCase]:
    """The launchpad file: missing, malformed, unreadable, pointing nowhere."""
    j, work, write = x.journal, x.work, x.write
    return [
        CliCase(
            "missing launchpad file",
            ["push", "--journal", j, "-l", os.path.join(work, "nope.yaml")],
            78,
            ("does not exist",),
        ),
        CliCase(
            "malformed launchpad file",
            ["push", "--journal", j, "-l", write("bad.yaml", "host: [unclosed\n  : :")],
            78,
            ("not valid YAML",),
        ),
        CliCase(
            "launchpad file not a mapping",
            ["push", "--journal", j, "-l", write("list.yaml", "- a\n- b\n")],
            78,
            ("mapping",),
        ),
        CliCase(
            "launchpad file is a directory", ["push", "--journal", j, "-l", work], 78, ("launchpad file",)
        ),
        CliCase(
            "unreadable launchpad file",
            ["push", "--journal", j, "-l", write("secret.yaml", "host: x\n", 0o000)],
            78,
            ("cannot read",),
            unprivileged=True,
        ),
        CliCase(
            "launchpad file with a wrong port",
            ["push", "--journal", j, "-l", write("port.yaml", "host: 127.0.0.1\nport: notaport\n")],
            78,
            (),
        ),
        CliCase(
            "launchpad file pointing nowhere",
            [
                "push",
                "--journal",
                j,
                "--timeout",
                "0.5",
                "-l",
                write("nowhere.yaml", "host: 127.0.0.1\nport: 1\nname: x\n"),
            ],
            75,
            ("cannot reach",),
        ),
    ]


def uri_cases(x: CliInputs) -> list[CliCase]:
    """The LaunchPad as a URI: another scheme, malformed, wrong, not a LaunchPad."""
    j, uri, good_lp, not_a_lp = x.journal, x.uri, x.good_lp, x.not_a_lp
    return [
        CliCase(
            "URI of another scheme",
            ["push", "--journal", j, "--uri", "http://127.0.0.1:1/"],
            78,
            ("mongodb://",),
        ),
        CliCase(
            "malformed URI",
            ["push", "--journal", j, "--uri", "mongodb://127.0.0.1:notaport/"],
            78,
            ("not a valid MongoDB URI",),
        ),
        CliCase(
            "URI and launchpad file", ["push", "--journal", j, "--uri", uri, "-l", good_lp], 78, ("either",)
        ),
        CliCase(
            "wrong URI (nothing listening)",
            ["push", "--journal", j, "--timeout", "0.5", "--uri", "mongodb://127.0.0.1:1/"],
            75,
            ("cannot reach", "pending"),
        ),
        CliCase(
            "database that is not a LaunchPad",
            ["push", "--journal", j, "--uri", uri, "--name", not_a_lp],
            78,
            ("not a FireWorks LaunchPad",),
        ),
    ]


def journal_cases(x: CliInputs) -> list[CliCase]:
    """The journal: on a network filesystem, not a file, not a database, unreachable."""
    j, work, write, uri, root = x.journal, x.work, x.write, x.uri, x.root
    return [
        CliCase(
            "journal on a network filesystem",
            ["_fake_fstype", "nfs4", "ingest", "--journal", j, "--root", root],
            78,
            ("nfs4", "local disk"),
        ),
        CliCase(
            "journal on lustre, push",
            ["_fake_fstype", "lustre", "push", "--journal", j, "--uri", uri, "--name", x.db],
            78,
            ("lustre",),
        ),
        CliCase(
            "journal on NFS, allowed",
            ["_fake_fstype", "nfs", "ingest", "--journal", j, "--root", root],
            0,
            env={"FWSPOOL_ALLOW_NETWORK_JOURNAL": "1"},
        ),
        CliCase(
            "journal path is a directory", ["ingest", "--journal", work, "--root", root], 73, ("journal",)
        ),
        CliCase(
            "journal is not a database",
            ["ingest", "--journal", write("garbage.sqlite3", os.urandom(4096)), "--root", root],
            73,
            ("not a usable fwspool journal",),
        ),
        CliCase(
            "journal that does not exist, push",
            ["push", "--journal", os.path.join(work, "typo", "j.sqlite3"), "--uri", uri],
            66,
            ("no journal at", "fwspool ingest"),
        ),
        CliCase(
            "journal that does not exist, status",
            ["status", "--no-check", "--journal", os.path.join(work, "typo.sqlite3")],
            66,
            ("no journal at",),
        ),
        CliCase(
            "journal directory cannot be created",
            ["ingest", "--journal", "/proc/self/nope/journal.sqlite3", "--root", root],
            73,
            ("journal",),
        ),
        CliCase(
            "journal of another user, unreadable",
            ["ingest", "--journal", write("private.sqlite3", b"", 0o000), "--root", root],
            73,
            ("journal",),
            unprivileged=True,
        ),
    ]


def input_cases(x: CliInputs) -> list[CliCase]:
    """What ingest, rlaunch and emit are given: directories that vanished, unreadable or malformed
    files, wrong fields, an unknown option."""
    j, work, some_launch = x.journal, x.work, x.some_launch
    return [
        CliCase(
            "--root that does not exist",
            ["ingest", "--journal", j, "--root", os.path.join(work, "gone")],
            66,
            ("not a directory",),
        ),
        CliCase(
            "a launch dir that vanished",
            ["ingest", "--journal", x.vanished_journal],
            0,
            ("vanished",),
            warning=True,
        ),
        CliCase(
            "an unreadable spool file",
            [
                "ingest",
                "--journal",
                os.path.join(work, "j-unreadable", "j.sqlite3"),
                "--root",
                x.unreadable_spool_dir,
            ],
            0,
            ("cannot open", "Permission denied"),
            unprivileged=True,
            warning=True,
        ),
        CliCase(
            "rlaunch in a launch dir that vanished",
            ["rlaunch", "--launch-dir", os.path.join(work, "gone")],
            66,
            ("does not exist",),
        ),
        CliCase(
            "rlaunch: malformed FW_offline.json",
            ["rlaunch", "--launch-dir", x.bad_offline],
            65,
            ("launch_id",),
        ),
        CliCase("rlaunch: malformed FW.json", ["rlaunch", "--launch-dir", x.bad_fw], 65, ("FW.json",)),
        CliCase(
            "rlaunch: missing FWorker file",
            ["rlaunch", "--launch-dir", some_launch, "-w", os.path.join(work, "nope.yaml")],
            66,
            ("FWorker",),
        ),
        CliCase(
            "emit: malformed --data",
            ["emit", "--launch-dir", some_launch, "note", "--data", "{bad"],
            65,
            ("JSON",),
        ),
        CliCase(
            "emit: wrong fields",
            ["emit", "--launch-dir", some_launch, "completed", "--data", '{"state": "DONE"}'],
            65,
            ("completed",),
        ),
        CliCase(
            "emit into a launch dir that vanished",
            ["emit", "--launch-dir", os.path.join(work, "gone"), "ping"],
            66,
            ("does not exist",),
        ),
        CliCase("unknown option", ["push", "--no-such-option"], 2, ("No such option",)),
    ]


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(9, NAME)
    tpl = cluster.template(seed=22, n_chain=8, n_pair=4)
    work = os.path.join(cluster.root, "cli")
    shutil.rmtree(work, ignore_errors=True)
    cases = cli_cases(cluster, work, tpl)
    root = os.geteuid() == 0
    for case in cases:
        c = Check()
        args = case.args
        cmd = child_cmd(*args) if args[0] == "_fake_fstype" else fwspool_cmd(*args)
        p = run_process(
            cmd,
            os.path.join(work, "logs"),
            "cli",
            timeout=120,
            env=child_env(**case.env),
            cwd=case.cwd or work,
            preexec=without_dac_override if case.unprivileged and root else None,
        )
        err = p.stderr
        lines = [ln for ln in err.splitlines() if ln.strip()]
        code = p.popen.returncode
        ok = code == case.code and "Traceback" not in err
        if case.code == 2:
            ok = ok and any(all(w in ln for w in case.words) for ln in lines)
        elif case.code != 0 or case.warning:
            mine = [ln for ln in lines if ln.startswith("fwspool: ") and "warning:" not in ln]
            ok = ok and len(mine) == 1 and all(w in mine[0] for w in case.words) and len(mine[0]) < 400
        if not ok:
            c.other += 1
            c.note(f"{case.name}: exit {code} (want {case.code}); stderr: {err.strip()[-400:]!r}")
        res.trials += 1
        res.faults += 1
        res.check.add(c)
    res.detail = f"{len(cases)} bad configurations and inputs, each: exit code, one line, no traceback"
    return res


SCENARIO = Scenario(9, NAME, (1, 1), run)
