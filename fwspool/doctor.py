"""``fwspool doctor``: the checklist a new user runs before the first job.

Each check is a small function returning a :class:`Check`: what was looked at, what was found,
and, when it failed, the fix. :func:`run_checks` runs them all in order (a check whose input
failed is skipped, saying why). Nothing here writes anything: the journal is read, never created
or upgraded; the database is only asked whether it is a LaunchPad.

The checks: the launchpad file parses and its database answers and is a LaunchPad; the journal is
(or will be) on local disk, readable by its owner only; the queue adapter's ``rocket_launch`` line
works with ``qlaunch -r`` (``singleshot`` and ``--offline``) and names an ``fwspool`` the batch
job will find (an absolute path, or a ``pre_rocket`` that activates a venv holding it: README,
"Migrating from FireWorks' offline mode"), and every file it names exists as the job will see it;
a Grid Engine job starts in its launch directory (``-cwd``); the inbox and the ``--root`` trees
are readable; the batch system answers; jobflow's JobStore on this node, when jobflow is
installed, is not in memory and answers. No launchpad file (so FireWorks' default, localhost) is a
warning: it may be what the user wants.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fwspool.config import DEFAULT_LPAD_YAML, LaunchPadConfig, load_settings_file, redact, resolve
from fwspool.errors import FwspoolError
from fwspool.journal import NETWORK_FILESYSTEMS, SCHEMA_VERSION, default_journal_path, filesystem_type
from fwspool.qlaunch import fwspool_here, line_words

__all__ = ["Check", "DoctorInputs", "run_checks"]

#: FireWorks' name of the queue adapter file ``qlaunch`` finds by itself in the current directory.
DEFAULT_QADAPTER_YAML = "my_qadapter.yaml"
#: Seconds the batch system has to answer.
BATCH_TIMEOUT = 20.0

Status = Literal["ok", "warning", "failed", "skipped"]
MARKS = {"ok": "✓", "warning": "!", "failed": "✗", "skipped": "-"}


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    what: str
    status: Status
    found: str
    #: What to do about it, when it failed.
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def line(self) -> str:
        """``✓ what: found``, ``✗ what: found; fix: ...``, ``! what: found; fix: ...`` (a warning:
        it may be what you want, and does not fail), or ``- what: not checked: why``."""
        return redact(
            f"{MARKS[self.status]} {self.what}: {self.found}" + (f"; fix: {self.fix}" if self.fix else "")
        )


def ok(what: str, found: str) -> Check:
    return Check(what, "ok", found)


def failed(what: str, found: str, fix: str) -> Check:
    return Check(what, "failed", found, fix)


def warning(what: str, found: str, fix: str) -> Check:
    return Check(what, "warning", found, fix)


def skipped(what: str, why: str) -> Check:
    return Check(what, "skipped", f"not checked: {why}")


@dataclass(frozen=True)
class DoctorInputs:
    """What the checks look at: the options the other commands take."""

    launchpad_file: str | None = None
    uri: str | None = None
    name: str | None = None
    timeout: float = 5.0
    queueadapter: str | None = None
    journal: str | None = None
    inbox: str | None = None
    roots: tuple[str, ...] = ()


def run_checks(inputs: DoctorInputs) -> list[Check]:
    """Every check, in the order a new user fixes things. Without -l or --uri, the LaunchPad is
    the journal's own (the launchpad file of its first push: :mod:`fwspool.binding`)."""
    launchpad_file = inputs.launchpad_file
    if launchpad_file is None and inputs.uri is None and not os.environ.get("FWSPOOL_MONGODB_URI"):
        launchpad_file = _journals_launchpad_file(inputs.journal)
    config, checks = check_launchpad(launchpad_file, inputs.uri, inputs.name)
    if config is not None:
        checks.append(check_database(config, inputs.timeout))
    else:
        checks.append(skipped("database", "no usable LaunchPad settings"))
    checks.append(check_journal(inputs.journal))
    checks.append(
        check_old_recovery(config if _passed(checks, "database") else None, inputs.journal, inputs.timeout)
    )
    adapter_path = find_queue_adapter(inputs.queueadapter)
    adapter, adapter_check = check_queue_adapter(adapter_path)
    checks.append(adapter_check)
    if adapter is not None:
        checks += [
            check_rocket_launch(adapter),
            check_fwspool_found(adapter),
            check_rocket_launch_files(adapter),
        ]
        if adapter["_fw_q_type"] == "SGE":
            checks.append(check_job_directory(adapter))
        checks.append(check_scheduler(adapter))
    else:
        why = "no usable queue adapter file"
        checks += [
            skipped("rocket_launch", why),
            skipped("fwspool in the job", why),
            skipped("files in rocket_launch", why),
            skipped("batch system", why),
        ]
    checks.append(check_inbox(inputs.inbox, inputs.journal))
    checks += check_roots(inputs.roots)
    checks.append(check_job_store(inputs.timeout))
    return checks


# -- the LaunchPad --------------------------------------------------------------------------------


def check_launchpad(
    launchpad_file: str | None, uri: str | None, name: str | None
) -> tuple[LaunchPadConfig | None, list[Check]]:
    """The LaunchPad settings, found as ``lpad`` finds them, parse."""
    what = "LaunchPad settings"
    try:
        config = resolve(launchpad_file, uri, name)
    except FwspoolError as exc:
        return None, [failed(what, exc.message, "fix the file, or name the right one with -l FILE")]
    if config.source == "FireWorks' default":
        found = f"no launchpad file (-l, {DEFAULT_LPAD_YAML} here, LAUNCHPAD_LOC): FireWorks' default, {config.where()}"
        fix = "give -l FILE, the launchpad file lpad uses, unless your LaunchPad really is on this node's port 27017"
        return config, [warning(what, found, fix)]
    return config, [ok(what, f"from {config.source}: {config.where()}")]


def check_database(config: LaunchPadConfig, timeout: float) -> Check:
    """The database answers, accepts the credentials, and holds a LaunchPad."""
    from fwspool.errors import NotALaunchPad, UplinkAuthError, UplinkUnavailable
    from fwspool.uplink import MongoUplink

    what = "database"
    try:
        uplink = MongoUplink(config, timeout=timeout)
        try:
            uplink.check()
        finally:
            uplink.close()
    except NotALaunchPad as exc:
        return failed(what, exc.message, "name the LaunchPad's database (name: in the launchpad file)")
    except UplinkAuthError as exc:
        return failed(what, exc.message, "set username, password and authsource as `lpad` uses them")
    except UplinkUnavailable as exc:
        fix = "start it, or check host and port; fwspool keeps everything meanwhile, but nothing reaches the LaunchPad"
        return failed(what, exc.message, fix)
    except FwspoolError as exc:
        return failed(what, exc.message, "fix the settings it names")
    return ok(what, f"MongoDB at {config.where()} answers and holds a LaunchPad")


def _passed(checks: list[Check], what: str) -> bool:
    return any(c.what == what and c.status == "ok" for c in checks)


# -- the journal ----------------------------------------------------------------------------------


def check_journal(path: str | None) -> Check:
    """The journal is (or will be) on local disk, and only its owner can read it."""
    path = os.path.abspath(os.path.expanduser(path or default_journal_path()))
    what = f"journal {path}"
    existing = path if os.path.lexists(path) else _nearest_existing(os.path.dirname(path))
    fstype = filesystem_type(existing)
    allowed = os.environ.get("FWSPOOL_ALLOW_NETWORK_JOURNAL", "") not in ("", "0")
    if fstype in NETWORK_FILESYSTEMS and not allowed:
        fix = "put it on the login node's local disk: --journal PATH or FWSPOOL_JOURNAL (e.g. under /var/tmp)"
        return failed(what, f"on a {fstype} filesystem, where SQLite's locks are unreliable", fix)
    where = f"local disk ({fstype or 'unknown filesystem'})"
    if not os.path.lexists(path):
        if not os.access(existing, os.W_OK | os.X_OK):
            return failed(
                what, f"cannot be created: {existing} is not writable", "give --journal a place you can write"
            )
        return ok(what, f"not created yet (`fwspool ingest` or `sync` creates it, mode 600), on {where}")
    if not stat.S_ISREG(os.lstat(path).st_mode):
        return failed(what, "is not a regular file", "give --journal the path of a journal file")
    readable = [
        p for p in (path, f"{path}-wal", f"{path}-shm") if os.path.exists(p) and os.stat(p).st_mode & 0o077
    ]
    if readable:
        mode = stat.S_IMODE(os.stat(readable[0]).st_mode)
        return failed(
            what, f"other users can read {readable[0]} (mode {mode:o})", f"chmod 600 {' '.join(readable)}"
        )
    version = _schema_version(path)
    if isinstance(version, str):
        return failed(
            what, f"is not a usable fwspool journal: {version}", "give --journal the path of a journal file"
        )
    if version > SCHEMA_VERSION:
        return failed(what, f"has schema version {version}, newer than this fwspool", "upgrade fwspool")
    return ok(what, f"on {where}, mode 600")


def _nearest_existing(directory: str) -> str:
    while not os.path.exists(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    return directory


def _schema_version(path: str) -> int | str:
    """The journal's schema version, read without writing; the problem's text if it cannot be."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error as exc:
        return str(exc)


# -- FireWorks' own recovery, still running beside fwspool ---------------------------------------

#: How much later than this journal's last push of it an offline run's ``updated_on`` must be to
#: have been written by something else (clocks of one login node; FireWorks writes it last).
TOUCH_SLACK = dt.timedelta(seconds=2)


def check_old_recovery(config: LaunchPadConfig | None, journal: str | None, timeout: float) -> Check:
    """Nothing but fwspool recovers the journal's launches: no ``lpad recover_offline`` left in the
    crontab, and no offline run of a launch the journal knows updated on the LaunchPad after this
    journal's last push of it (``recover_offline`` sets ``offline_runs.updated_on`` on every pass,
    fwspool only when it pushes). Both at once rewrite every running launch twice a pass."""
    what = "lpad recover_offline"
    fix = (
        "remove the old `lpad recover_offline` line from your crontab (`crontab -e`): `fwspool sync` replaces "
        "it (README, Migrating from FireWorks' offline mode)"
    )
    cron = [
        line.strip() for line in _crontab() if "recover_offline" in line and not line.lstrip().startswith("#")
    ]
    touched = _touched_by_another(config, journal, timeout) if config is not None else None
    if cron or touched:
        found = []
        if touched:
            launch_id, fw_id, when = touched[0]
            more = f" (and {len(touched) - 1} more)" if len(touched) > 1 else ""
            found.append(
                f"the offline run of launch {launch_id} (Firework {fw_id}), which fwspool pushes, was updated on "
                f"the LaunchPad at {when:%Y-%m-%d %H:%M:%S} UTC by something else{more}"
            )
        if cron:
            found.append(f"your crontab still runs it: {cron[0]!r}")
        return failed(what, "; ".join(found), fix)
    if config is None:
        return skipped(what, "the database did not answer: only the crontab was read")
    return ok(what, "not in your crontab, and no offline run of the journal's launches was recovered by it")


def _crontab() -> list[str]:
    """This user's crontab, as ``crontab -l`` prints it; [] when there is none or no ``crontab``."""
    try:
        res = subprocess.run(
            ["crontab", "-l"], capture_output=True, text=True, timeout=BATCH_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return res.stdout.splitlines() if res.returncode == 0 else []


def _touched_by_another(
    config: LaunchPadConfig, journal: str | None, timeout: float
) -> list[tuple[int, int | None, dt.datetime]]:
    """The journal's launches whose offline run was updated later than this journal pushed them:
    (launch id, Firework id, when), oldest first."""
    from fwspool.events import as_utc
    from fwspool.uplink import MongoUplink

    path = os.path.abspath(os.path.expanduser(journal or default_journal_path()))
    if not os.path.isfile(path):
        return []
    # Read without writing: no -shm file means no process has the journal open, and a read-only
    # open would create one (doctor writes nothing).
    immutable = "" if os.path.exists(f"{path}-shm") else "&immutable=1"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro{immutable}", uri=True)
        try:
            rows = db.execute(
                "SELECT l.launch_id, l.fw_id, max(coalesce(l.pushed_state_at, ''), coalesce(max(e.pushed_at), '')) "
                "FROM launches AS l LEFT JOIN events AS e ON e.launch_id = l.launch_id "
                "WHERE l.forgotten_at IS NULL GROUP BY l.launch_id"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    pushed = {launch_id: (fw_id, last) for launch_id, fw_id, last in rows}
    if not pushed:
        return []
    found = []
    try:
        uplink = MongoUplink(config, timeout=timeout)
        try:
            runs = list(
                uplink.lp.offline_runs.find(
                    {"launch_id": {"$in": sorted(pushed)}, "deprecated": False},
                    {"_id": 0, "launch_id": 1, "created_on": 1, "updated_on": 1},
                )
            )
        finally:
            uplink.close()
    except Exception:  # noqa: BLE001 - the database check above says what is wrong with it
        return []
    for run in runs:
        fw_id, last = pushed[run["launch_id"]]
        try:
            updated = as_utc(run["updated_on"])
            since = max(as_utc(t) for t in (run["created_on"], last) if t)
        except (KeyError, TypeError, ValueError):
            continue
        if updated > since + TOUCH_SLACK:
            found.append((run["launch_id"], fw_id, updated))
    return sorted(found, key=lambda x: x[2])


# -- the queue adapter ----------------------------------------------------------------------------


def find_queue_adapter(path: str | None) -> str | None:
    """The queue adapter file as ``qlaunch`` finds it: ``-q``, else ``my_qadapter.yaml`` here,
    else FireWorks' ``QUEUEADAPTER_LOC``."""
    if path:
        return path
    if os.path.exists(DEFAULT_QADAPTER_YAML):
        return DEFAULT_QADAPTER_YAML
    from fireworks.fw_config import QUEUEADAPTER_LOC

    return str(QUEUEADAPTER_LOC) if QUEUEADAPTER_LOC else None


def check_queue_adapter(path: str | None) -> tuple[dict[str, Any] | None, Check]:
    """The queue adapter file parses, names a batch system and has a ``rocket_launch`` line."""
    from fwspool.scheduler import Q_TYPES

    what = "queue adapter file"
    if path is None:
        fix = f"give -q FILE, the file `qlaunch -r` uses (or put {DEFAULT_QADAPTER_YAML} here)"
        return None, failed(what, "none found", fix)
    try:
        data = load_settings_file(path, what)
    except FwspoolError as exc:
        return None, failed(what, exc.message, "fix it, or give the right one with -q FILE")
    if not isinstance(data, dict):
        return None, failed(what, f"{path} does not hold a mapping", "give -q the file `qlaunch -r` uses")
    q_type = data.get("_fw_q_type")
    if q_type not in Q_TYPES:
        fix = f"set _fw_q_type to one of {', '.join(sorted(Q_TYPES))}"
        return None, failed(what, f"{path}: _fw_q_type {q_type!r} is not a batch system FireWorks knows", fix)
    if not isinstance(data.get("rocket_launch"), str):
        fix = "add the line of the README's quick start: rocket_launch: /path/to/fwspool rlaunch ..."
        return None, failed(what, f"{path} has no rocket_launch line", fix)
    return dict(data, _path=path), ok(what, f"{path}: {q_type}")


def check_rocket_launch(adapter: dict[str, Any]) -> Check:
    """The line runs ``fwspool rlaunch`` and keeps the words ``qlaunch -r`` needs (the rule
    ``fwspool qlaunch`` refuses a line by: :func:`fwspool.qlaunch.rocket_launch_problem`)."""
    from fwspool.qlaunch import rocket_launch_problem

    problem = rocket_launch_problem(adapter["rocket_launch"])
    if problem is not None:
        return failed("rocket_launch", *problem)
    return ok("rocket_launch", "runs fwspool rlaunch, with singleshot and --offline for qlaunch -r")


def check_rocket_launch_files(adapter: dict[str, Any]) -> Check:
    """Every file the line names (``-w`` FWorker file, ``-l``, ``-c``) exists as the batch job
    will see it: an absolute path once its shell expands ``$HOME`` (:func:`fwspool.qlaunch.
    rocket_launch_files_problem`); an FWorker file reads as one."""
    from fwspool.qlaunch import rocket_launch_files_problem, rocket_launch_paths

    what = "files in rocket_launch"
    words = line_words(adapter["rocket_launch"])
    if not words or os.path.basename(words[0]) != "fwspool":
        return skipped(what, "rocket_launch does not run fwspool")
    paths = rocket_launch_paths(adapter["rocket_launch"])
    if not paths:
        return ok(what, "names none (-w: FireWorks' default FWorker)")
    problem = rocket_launch_files_problem(adapter["rocket_launch"])
    if problem is not None:
        return failed(what, *problem)
    found = []
    for option, _what, written in paths:
        unset = "$" in os.path.expanduser(os.path.expandvars(written))
        found.append(f"{option} {written}: {'not checked (a variable not set here)' if unset else 'exists'}")
    return ok(what, "; ".join(found))


def check_fwspool_found(adapter: dict[str, Any]) -> Check:
    """The batch job will find ``fwspool``: an absolute path that exists and is executable, or a
    ``pre_rocket`` that activates a venv whose ``bin`` holds it. Job scripts usually start a
    login shell, which resets ``PATH``: nothing else is taken for granted."""
    what = "fwspool in the job"
    words = line_words(adapter["rocket_launch"])
    if not words or os.path.basename(words[0]) != "fwspool":
        return skipped(what, "rocket_launch does not run fwspool")
    command = os.path.expanduser(os.path.expandvars(words[0]))
    fix = (
        f"name it by its absolute path (rocket_launch: {fwspool_here()} rlaunch ...), or activate its venv "
        f"first (pre_rocket: source {os.path.dirname(sys.executable)}/activate)"
    )
    if "/" in command:
        if not os.path.isabs(command):
            return failed(what, f"{words[0]} is relative to the job's launch directory", fix)
        if not (os.path.isfile(command) and os.access(command, os.X_OK)):
            return failed(what, f"{command} does not exist or is not executable", fix)
        return ok(what, f"{command} exists and is executable")
    activate = _activated_venv(adapter.get("pre_rocket"))
    if activate is None:
        why = (
            "`fwspool` by name alone, and pre_rocket activates no venv: a login shell's PATH may not have it"
        )
        return failed(what, why, fix)
    found = os.path.join(os.path.dirname(activate), "fwspool")
    if not (os.path.isfile(found) and os.access(found, os.X_OK)):
        return failed(
            what, f"pre_rocket activates {activate}, but {found} does not exist or is not executable", fix
        )
    return ok(what, f"pre_rocket activates {activate}, which holds {found}")


def _activated_venv(pre_rocket: Any) -> str | None:
    """The ``bin/activate`` script a ``pre_rocket`` sources (``source X`` or ``. X``), expanded."""
    lines = pre_rocket if isinstance(pre_rocket, list) else str(pre_rocket or "").splitlines()
    for line in lines:
        for command in str(line).replace("&&", ";").split(";"):
            words = line_words(command)
            if len(words) >= 2 and words[0] in ("source", ".") and words[1].endswith("/bin/activate"):
                return os.path.expanduser(os.path.expandvars(words[1]))
    return None


def check_job_directory(adapter: dict[str, Any]) -> Check:
    """Grid Engine: the job starts in its launch directory (``-cwd``), in the job template (with
    the adapter's values put in, as ``qlaunch`` puts them) or the cell's default options
    (``$SGE_ROOT/$SGE_CELL/common/sge_request``, ``~/.sge_request``). FireWorks' SGE template has
    a relative ``-o FW_job.out`` and no ``-cwd``: without it the output lands in the home directory."""
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    what = "job directory (-cwd)"
    given = adapter.get("_fw_template_file")
    template = os.path.abspath(str(given)) if given else str(CommonAdapter._get_default_template_file("SGE"))
    try:
        with open(template, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        return failed(
            what, f"cannot read the job template {template}: {exc.strerror or exc}", "fix _fw_template_file"
        )
    for key, value in adapter.items():
        text = text.replace(f"$${{{key}}}", str(value))
    if any(line.startswith("#$") and "-cwd" in line_words(line[2:]) for line in text.splitlines()):
        return ok(what, f"the job template {template} has -cwd")
    root, cell = os.environ.get("SGE_ROOT"), os.environ.get("SGE_CELL") or "default"
    defaults = [os.path.join(root, cell, "common", "sge_request")] if root else []
    defaults.append(os.path.expanduser("~/.sge_request"))
    for path in defaults:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                options = [w for line in f if not line.lstrip().startswith("#") for w in line_words(line)]
        except OSError:
            continue
        if "-cwd" in options:
            return ok(what, f"the job template has none, but {path} gives every job -cwd")
    fix = "add the line `#$ -cwd` to the job template (docs/batch-systems.md: SGE_template.txt)"
    why = (
        f"neither the job template {template} nor {' nor '.join(defaults)} has -cwd: the job starts in "
        "your home directory, and FireWorks' -o FW_job.out lands there"
    )
    return failed(what, why, fix)


# -- the batch system -----------------------------------------------------------------------------


def check_scheduler(adapter: dict[str, Any]) -> Check:
    """The batch system answers: Slurm ``squeue`` and ``sinfo``, Grid Engine ``qstat`` and
    ``qconf -sql`` (the others cannot be asked)."""
    from fwspool.scheduler import Q_TYPES

    system = Q_TYPES[adapter["_fw_q_type"]]
    what = f"batch system ({system})"
    if system not in ("slurm", "sge"):
        return skipped(
            what,
            "fwspool asks only Slurm and Grid Engine: lost runs and jobs that never started are not detected",
        )
    user = pwd.getpwuid(os.getuid()).pw_name
    if system == "sge":
        commands = [["qstat", "-u", user], ["qconf", "-sql"]]
        name, fix = "Grid Engine", "check SGE_ROOT, SGE_CELL and that sge_qmaster answers (`qstat`)"
    else:
        commands = [
            ["squeue", "--noheader", f"--user={user}", "--format=%i"],
            ["sinfo", "--noheader", "--format=%P %a"],
        ]
        name, fix = "Slurm", "check SLURM_CONF and that slurmctld answers (`scontrol ping`)"
    answers = []
    for cmd in commands:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=BATCH_TIMEOUT, check=False)
        except FileNotFoundError:
            return failed(
                what, f"{cmd[0]} not found", f"put {name}'s client commands on PATH for fwspool sync"
            )
        except subprocess.TimeoutExpired:
            return failed(
                what,
                f"{cmd[0]} did not answer within {BATCH_TIMEOUT:g} s",
                f"ask your site why {name} is slow",
            )
        if res.returncode != 0:
            why = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1][:200]
            return failed(what, f"{cmd[0]} failed: {why}", fix)
        answers.append(res.stdout.split("\n"))
    if system == "sge":
        jobs = sum(1 for line in answers[0][2:] if line.strip())
        queues = ", ".join(line.strip() for line in answers[1] if line.strip()) or "none"
        return ok(what, f"qstat lists {jobs} of your jobs; queues: {queues}")
    jobs = sum(1 for line in answers[0] if line.strip())
    partitions = ", ".join(line.strip().replace(" ", " is ") for line in answers[1] if line.strip()) or "none"
    return ok(what, f"squeue lists {jobs} of your jobs; sinfo: {partitions}")


# -- what ingest reads ----------------------------------------------------------------------------


def _journals_launchpad_file(journal_path: str | None) -> str | None:
    """The launchpad file the journal's first push was given, if the journal and file exist."""
    path = journal_path or default_journal_path()
    if not os.path.exists(path):
        return None
    from fwspool.journal import Journal

    try:
        with Journal.open(path, create=False) as journal:
            binding = journal.binding()
    except FwspoolError:
        return None
    if binding is None or not binding.launchpad_file or not os.path.isfile(binding.launchpad_file):
        return None
    return binding.launchpad_file


def other_launchpads_pointers(inbox: str, journal_path: str | None) -> tuple[int, int]:
    """(pointers in the inbox, how many of them announce no launch of the journal's LaunchPad):
    those the journal set aside, and those whose launch id it knows in another directory."""
    from fwspool.identity import dir_tag
    from fwspool.inbox import list_inbox

    listed = list_inbox(inbox)
    path = journal_path or default_journal_path()
    if not listed or not os.path.exists(path):
        return len(listed), 0
    from fwspool.journal import Journal

    with Journal.open(path, create=False) as journal:
        homes = journal.launch_homes(sorted({x.launch_id for x in listed}))
        strays = journal.stray_pointers()
    others = 0
    for x in listed:
        known = homes.get(x.launch_id)
        if x.path in strays or (
            known is not None and x.tag is not None and x.tag not in {dir_tag(d) for d in known[0].dirs()}
        ):
            others += 1
    return len(listed), others


def check_inbox(inbox: str | None, journal_path: str | None = None) -> Check:
    """The inbox, where ``fwspool rlaunch`` announces launches, is (or will be) readable; how
    many of its pointers are other LaunchPads' (or from before an ``lpad reset``)."""
    from fwspool.inbox import default_inbox

    path = os.path.abspath(os.path.expanduser(inbox or default_inbox()))
    what = f"inbox {path}"
    if not os.path.exists(path):
        parent = _nearest_existing(os.path.dirname(path))
        if not os.access(parent, os.W_OK | os.X_OK):
            return failed(
                what,
                f"cannot be created: {parent} is not writable",
                "set FWSPOOL_INBOX to a shared directory you own",
            )
        return ok(what, "not created yet: the first `fwspool rlaunch` creates it (mode 700)")
    check = _readable_directory(
        what, path, "set FWSPOOL_INBOX (for the jobs and for sync) to a directory you own"
    )
    if check.status != "ok":
        return check
    try:
        total, others = other_launchpads_pointers(path, journal_path)
    except FwspoolError:
        return check
    if others:
        return ok(
            what,
            f"{total} pointers, {others} of them for launches of other LaunchPads (or from before an lpad reset): "
            "they stay for their own journals, and go once their directory is gone or their launch has been "
            "over for 30 days",
        )
    return check


def check_job_store(timeout: float) -> Check:
    """jobflow's ``JOB_STORE`` on this node, where the push writes the outputs of jobflow
    Fireworks whose workflow names no store (docs/jobflow.md): not in memory, and answering."""
    import threading

    what = "jobflow JobStore"
    try:
        from jobflow import SETTINGS

        from fwspool.jobstore.real import in_memory
    except ImportError:
        return skipped(what, "jobflow is not installed (only jobflow Fireworks need fwspool[jobflow])")
    try:
        store = SETTINGS.JOB_STORE
    except Exception as exc:  # jobflow's settings validation raises anything
        return failed(
            what, f"jobflow's settings are unusable: {exc}", "fix ~/.jobflow.yaml or JOBFLOW_CONFIG_FILE"
        )
    if in_memory(store):
        return warning(
            what,
            "JOB_STORE is an in-memory store: the push holds the outputs of workflows that name no store",
            "set JOB_STORE in ~/.jobflow.yaml (or JOBFLOW_CONFIG_FILE), or give flow_to_workflow a store",
        )
    answer: list[BaseException | None] = []

    def ask() -> None:
        try:
            store.connect()
            store.docs_store.count({})
            answer.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below, whatever it is
            answer.append(exc)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    where = getattr(store.docs_store, "name", type(store.docs_store).__name__)
    if not answer or answer[0] is not None:
        why = f"{type(answer[0]).__name__}" if answer else f"no answer in {timeout:g} s"
        return failed(
            what, f"{where} does not answer ({why})", "start it, or check JOB_STORE's host and credentials"
        )
    return ok(what, f"{where} answers")


def check_roots(roots: Sequence[str]) -> list[Check]:
    """Each ``--root`` tree is a readable directory."""
    if not roots:
        return [
            skipped("launch roots", "no --root given: launches are found through the inbox and the registry")
        ]
    return [
        _readable_directory(f"launch root {root}", root, "give --root a directory you can read")
        for root in roots
    ]


def _readable_directory(what: str, path: str, fix: str) -> Check:
    if not os.path.isdir(path):
        return failed(what, "is not a directory", fix)
    try:
        entries = len(os.listdir(path))
    except OSError as exc:
        return failed(what, f"cannot be read: {exc.strerror or exc}", fix)
    return ok(what, f"readable ({entries} entries)")
