"""Security (issue 5): no leaked credentials, real authentication and TLS, no spoofed events,
bounded input, and only FireWorks' own collections written on the LaunchPad.

Against real components: SecantusDB started with ``--auth`` (users made with createUser first)
and with TLS (a throwaway CA and server certificate made here with ``cryptography``), the real
``fwspool`` command in subprocesses, and files really owned by another uid (``os.chown``, as
root; skipped with the reason where the OS forbids it).
"""

from __future__ import annotations

import ast
import datetime as dt
import gzip
import ipaddress
import json
import os
import sqlite3
import stat
import subprocess
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pymongo
import pytest
from click.testing import CliRunner
from dyn_tasks import GrowTask
from fireworks import Firework, ScriptTask, Workflow
from pymongo import monitoring

from fwspool import config
from fwspool.cli import main
from fwspool.devserver import free_port
from fwspool.events import RECORD_VERSION, Completed, Exited, Ping, Started
from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.push import Pusher
from fwspool.reserve import reserve_offline
from fwspool.spool import SpoolWriter, frame, spool_file_name
from fwspool.testing.commands import fwspool_cmd, invoke, job_env, reserved_and_run, run_fwspool, unstamped
from fwspool.testing.journal_file import ingest, query
from fwspool.testing.launchpad import make_launchpad, uplink_for
from fwspool.trust import DEFAULT_MAX_DEPTH, too_deep

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

#: The passwords of the tests: characters a URI must escape, so redaction must know both forms.
GOOD = "Corr3ct/Horse@Battery:Staple%"
WRONG = "Wr0ng&Pa55+word#1"
KEY_PASSWORD = "K3yfile-Secr3t-Phrase"
CAROL = "Car0l-Only-Fireworks"
#: Any of these in any output means a leak (whole, escaped either way, or a distinctive piece).
FORBIDDEN = sorted(
    {
        v
        for pw in (GOOD, WRONG, KEY_PASSWORD, CAROL)
        for v in (pw, quote_plus(pw), quote(pw, safe=""), json.dumps(pw)[1:-1])
    }
    | {"Corr3ct", "Horse", "Battery", "Staple", "Wr0ng", "Pa55", "K3yfile", "Secr3t", "Car0l"}
)


def leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        return [f for f in FORBIDDEN if f.encode() in text]
    return [f for f in FORBIDDEN if f in text]


def fwspool(
    *args: str, env: dict[str, str], cwd: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fwspool_cmd(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    """The error line of a failed command; fails the test unless it is exactly one line."""
    lines = [ln for ln in unstamped(res.stderr).splitlines() if not ln.startswith("fwspool: warning:")]
    assert len(lines) == 1 and lines[0].startswith("fwspool: "), res.stderr
    return lines[0]


# -- servers -----------------------------------------------------------------------------------


def make_pki(directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> dict[str, str]:
    """A throwaway CA and a server certificate signed by it (EC P-256, valid one day)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fwspool test CA {directory.name}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths["key"].chmod(0o600)
    return {k: str(v) for k, v in paths.items()}


def secure_server(factory: Any, *, tls: dict[str, str] | None = None) -> Any:
    """A server with users alice (root, authSource admin) and carol (readWrite on database
    ``fireworks``, authSource fireworks: FireWorks' default), restarted with --auth (and TLS)."""
    server = factory()
    client: Any = pymongo.MongoClient(server.uri)
    client.admin.command("createUser", "alice", pwd=GOOD, roles=[{"role": "root", "db": "admin"}])
    client.fireworks.command(
        "createUser", "carol", pwd=CAROL, roles=[{"role": "readWrite", "db": "fireworks"}]
    )
    client.close()
    server.stop()
    server.extra_args = ("--auth",)
    if tls is not None:
        server.extra_args += ("--tls-cert-file", tls["cert"], "--tls-key-file", tls["key"])
        server.tls_ca_file = tls["ca"]
    server.start()
    return server


def alice_uri(server: Any, password: str = GOOD, extra: str = "") -> str:
    return f"mongodb://alice:{quote_plus(password)}@127.0.0.1:{server.port}/?directConnection=true&authSource=admin{extra}"


def alice_settings(server: Any, **extra: Any) -> dict[str, Any]:
    """Launchpad file settings (not uri_mode) for alice, with her password, and ``extra``."""
    settings = {"host": "127.0.0.1", "port": server.port, "name": "fireworks", "username": "alice"}
    return {**settings, "password": GOOD, "authsource": "admin", **extra}


def write_lpad(path: Path, settings: dict[str, Any]) -> str:
    """A launchpad file as users write them: YAML, or JSON for a .json name."""
    if path.suffix == ".json":
        path.write_text(json.dumps(settings))
    else:
        from ruamel.yaml import YAML

        with open(path, "w") as f:
            YAML(typ="safe", pure=True).dump(settings, f)
    return str(path)


def one_step_wf(name: str = "step") -> Workflow:
    return Workflow([Firework(ScriptTask.from_str("echo one"), name=name)], name=name)


def one_step_reserved_and_run(lp: Any, d: Path, *extra: str) -> str:
    lp.add_wf(one_step_wf())
    reserved_and_run(lp, str(d), *extra)
    return str(d)


# -- 1. credentials are never printed -----------------------------------------------------------


def test_no_command_prints_a_password_nor_writes_it_to_the_journal(mongo_server_factory, tmp_path):
    server = secure_server(mongo_server_factory)
    port = server.port
    lp = make_launchpad(alice_uri(server), "fireworks")
    d = one_step_reserved_and_run(lp, tmp_path / "launch")
    lp.connection.close()
    dead = free_port()
    files = tmp_path / "lpad"
    files.mkdir()
    nonuri = {
        "host": "127.0.0.1",
        "port": port,
        "name": "fireworks",
        "username": "alice",
        "authsource": "admin",
    }
    lpad = {
        "nonuri_good": write_lpad(files / "good.yaml", {**nonuri, "password": GOOD}),
        "nonuri_wrong": write_lpad(files / "wrong.yaml", {**nonuri, "password": WRONG}),
        "nonuri_dead": write_lpad(files / "dead.json", {**nonuri, "port": dead, "password": GOOD}),
        # FireWorks' default authSource is the database itself: carol's.
        "carol": write_lpad(
            files / "carol.yaml",
            {"host": "127.0.0.1", "port": port, "name": "fireworks", "username": "carol", "password": CAROL},
        ),
        "uri_good": write_lpad(
            files / "uri.yaml", {"host": alice_uri(server), "uri_mode": True, "name": "fireworks"}
        ),
        "uri_wrong": write_lpad(
            files / "uri_wrong.yaml",
            {"host": alice_uri(server, WRONG), "uri_mode": True, "name": "fireworks"},
        ),
        # A password with '@', '/', ':' and '%' not escaped: pymongo refuses the URI.
        "uri_unescaped": write_lpad(
            files / "uri_unescaped.yaml",
            {"host": f"mongodb://alice:{GOOD}@127.0.0.1:{port}/", "uri_mode": True, "name": "fireworks"},
        ),
        # FireWorks ignores a URI's credentials without uri_mode: "no credentials given".
        "host_uri_no_mode": write_lpad(
            files / "host_uri.yaml", {"host": alice_uri(server), "name": "fireworks"}
        ),
        # A secret TLS option with a missing certificate file.
        "tls_kwargs": write_lpad(
            files / "tls.yaml",
            {
                **nonuri,
                "password": GOOD,
                "mongoclient_kwargs": {
                    "tls": True,
                    "tlsCertificateKeyFile": str(files / "missing.pem"),
                    "tlsCertificateKeyFilePassword": KEY_PASSWORD,
                },
            },
        ),
    }
    # Launchpad files that do not parse, each with the password next to the error.
    bad = {
        "alias": f"host: 127.0.0.1\nname: fireworks\nusername: alice\npassword: *{WRONG}\n",
        "quote": f'host: 127.0.0.1\nusername: alice\npassword: "{WRONG}\nname: fireworks\n',
        "tab": f"host: 127.0.0.1\npassword: {WRONG}\n\tname: fireworks\n",
        "mapping": f"host: 127.0.0.1\npassword: {WRONG}: {GOOD}\n",
        "list": f"- {WRONG}\n- {GOOD}\n",
    }
    for key, text in bad.items():
        (files / f"bad_{key}.yaml").write_text(text)
        lpad[f"bad_{key}"] = str(files / f"bad_{key}.yaml")
    (files / "bad.json").write_text(f'{{"host": "127.0.0.1", "password": "{WRONG}" "name": 1}}')
    lpad["bad_json"] = str(files / "bad.json")

    env = job_env()
    env.pop("FWSPOOL_MONGODB_URI", None)
    journals = tmp_path / "journals"
    # (arguments, extra environment, expected exit code); each case gets its own journal.
    failures: list[tuple[list[str], dict[str, str], int]] = [
        (["push", "--uri", alice_uri(server).replace(str(port), str(dead)), "--timeout", "1"], {}, 75),
        (["push", "--uri", alice_uri(server, WRONG)], {}, 77),
        (["push", "--watch", "--uri", alice_uri(server, WRONG)], {}, 77),
        (["push"], {"FWSPOOL_MONGODB_URI": alice_uri(server, WRONG)}, 77),
        (["push", "-l", lpad["nonuri_wrong"]], {}, 77),
        (["push", "-l", lpad["nonuri_dead"], "--timeout", "1"], {}, 75),
        (["push", "-l", lpad["uri_wrong"]], {}, 77),
        (["push", "-l", lpad["uri_unescaped"]], {}, 78),
        (["push", "-l", lpad["host_uri_no_mode"]], {}, 77),
        (["push", "-l", lpad["tls_kwargs"]], {}, 78),
        (["push", "--uri", f"mongod://alice:{quote_plus(WRONG)}@127.0.0.1:{port}/"], {}, 78),
        (["push", "--uri", f"mongodb://alice:{GOOD}@127.0.0.1:{port}/"], {}, 78),
        (["push", "--uri", f"mongodb://alice:{quote_plus(WRONG)}@127.0.0.1:notaport/"], {}, 78),
        (
            [
                "push",
                "--uri",
                alice_uri(
                    server, extra=f"&tls=true&tlsCertificateKeyFilePassword={quote_plus(KEY_PASSWORD)}"
                ),
                "--timeout",
                "2",
            ],
            {},
            78,
        ),
        (["push", "--uri", alice_uri(server, WRONG), "-l", lpad["nonuri_good"]], {}, 78),
        *[(["push", "-l", lpad[k]], {}, 78) for k in lpad if k.startswith("bad_")],
        (["sync", "--root", d, "--uri", alice_uri(server, WRONG)], {}, 77),
        (["sync", "--watch", "--root", d, "-l", lpad["nonuri_wrong"]], {}, 77),
        (["sync", "--root", d, "-l", lpad["bad_alias"]], {}, 78),
        (["status", "--uri", alice_uri(server, WRONG)], {}, 0),
        (["status", "--json", "-l", lpad["nonuri_wrong"]], {}, 0),
        # A launchpad file that cannot be read is exit 78 for every command (#18), status too.
        (["status", "--json", "-l", lpad["bad_alias"]], {}, 78),
        (["status", "-l", lpad["uri_unescaped"]], {}, 0),
        (["status", "--json", "-l", lpad["nonuri_dead"], "--timeout", "1"], {}, 0),
        (["status", "--json"], {"FWSPOOL_MONGODB_URI": alice_uri(server, WRONG)}, 0),
    ]

    def run(
        i: int, case: tuple[list[str], dict[str, str], int]
    ) -> tuple[Any, subprocess.CompletedProcess[str]]:
        args, extra, _ = case
        journal = str(journals / str(i) / "j.sqlite3")
        Journal.open(journal).close()  # push and status need one: only ingest and sync create it
        return case, fwspool(*args, env={**env, **extra, "FWSPOOL_JOURNAL": journal})

    # The failures in parallel first; then the good path, on a quiet machine: its status asks the
    # database for a second at most.
    with ThreadPoolExecutor(8) as pool:
        results: list[tuple[Any, subprocess.CompletedProcess[str]]] = list(
            pool.map(lambda ic: run(*ic), enumerate(failures))
        )

    # The good path, in one journal: ingest, push with each kind of credentials, status, forget, emit.
    good_env = {**env, "FWSPOOL_JOURNAL": str(journals / "good" / "j.sqlite3")}
    sequence: list[tuple[list[str], dict[str, str], int]] = [
        (["ingest", "--root", d], {"FWSPOOL_MONGODB_URI": alice_uri(server, WRONG)}, 0),
        (["status", "--json", "-l", lpad["nonuri_good"]], {}, 0),
        (["push", "-l", lpad["nonuri_good"]], {}, 0),
        (["push", "-l", lpad["carol"]], {}, 0),
        (["push", "-l", lpad["uri_good"]], {}, 0),
        (["sync", "--root", d, "-l", lpad["uri_good"]], {}, 0),
        (["status", "-l", lpad["nonuri_good"]], {}, 0),
        (["forget", "999"], {"FWSPOOL_MONGODB_URI": alice_uri(server)}, 66),  # no such launch
        (
            ["emit", "--launch-dir", d, "note", "--data", '{"step": 1}'],
            {"FWSPOOL_MONGODB_URI": alice_uri(server)},
            0,
        ),
    ]
    holder: sqlite3.Connection | None = None
    for args, extra, code in sequence:
        results.append(((args, extra, code), fwspool(*args, env={**good_env, **extra})))
        if holder is None:
            # Held open, so that the commands' write-ahead log is not checkpointed away on exit.
            holder = sqlite3.connect(good_env["FWSPOOL_JOURNAL"])
            holder.execute("SELECT count(*) FROM events").fetchall()

    problems = []
    for (args, _extra, code), res in results:
        out = res.stdout + res.stderr
        if res.returncode != code or leaks(out):
            problems.append(
                f"{args[:2]} -> {res.returncode} (wanted {code}), leaks {leaks(out)}:\n{out[-1500:]}"
            )
            continue
        if code:
            line = one_line_error(res)
            if code == 77:
                assert "refused the credentials" in line or "requires authentication" in line, line
                assert "cannot reach" not in line, line
            if code == 75:
                assert (
                    "cannot reach MongoDB at mongodb://alice:***@" in line or "mongodb://127.0.0.1" in line
                ), line
    assert not problems, "\n\n".join(problems)

    by_args = {tuple(a): r for (a, _e, _c), r in results}
    wrong_file = by_args[("push", "-l", lpad["nonuri_wrong"])]
    assert "(user alice, authSource admin): authentication failed" in wrong_file.stderr
    no_mode = by_args[("push", "-l", lpad["host_uri_no_mode"])]
    assert "requires authentication and the settings give no credentials" in no_mode.stderr
    bad_alias = by_args[("push", "-l", lpad["bad_alias"])]
    assert "is not valid YAML/JSON: found undefined alias '...' (line 4" in bad_alias.stderr
    status = json.loads(by_args[("status", "--json", "-l", lpad["nonuri_good"])].stdout)
    assert {k: status["database"][k] for k in ("where", "reachable", "error")} == {
        "where": f"mongodb://127.0.0.1:{port} (database fireworks)",
        "reachable": True,
        "error": None,
    }
    # The work really was pushed, with the launchpad file's username/password/authsource.
    pushed = by_args[("push", "-l", lpad["nonuri_good"])]
    assert "push: 1 launch," in pushed.stdout, pushed.stdout
    with Journal.open(good_env["FWSPOOL_JOURNAL"]) as journal:
        assert journal.count_events("pushed_at IS NULL") == 0
    check = pymongo.MongoClient(alice_uri(server))
    assert check.fireworks.fireworks.find_one({}, {"state": 1})["state"] == "COMPLETED"
    check.close()

    # Nor in any journal, its WAL, its shared memory or its lock files.
    written = [p for p in journals.rglob("*") if p.is_file()]
    wal = Path(good_env["FWSPOOL_JOURNAL"] + "-wal")
    assert wal in written and wal.stat().st_size > 0 and len(written) > len(failures)
    for path in written:
        assert not leaks(path.read_bytes()), path
    assert holder is not None
    holder.close()


def test_redact_hides_every_form_of_a_secret():
    secrets = config.register_secrets("p@ss w/rd+%")
    assert "p%40ss+w%2Frd%2B%25" in secrets and "p%40ss%20w%2Frd%2B%25" in secrets
    for text in (
        "mongodb://bob:p%40ss+w%2Frd%2B%25@h:1/db",
        "mongodb://bob:p@ss w/rd+%@h:1/db",  # unescaped: the regex alone cannot tell where it ends
        "'password': 'p@ss w/rd+%'",
        "error near 'p@ss w/rd+%'",
    ):
        assert "p@ss" not in config.redact(text) and "%40ss" not in config.redact(text), config.redact(text)
    # Without knowing the secret: URI userinfo up to its last '@', and secret options.
    assert (
        config.redact("at mongodb+srv://u:a@b/c@host/db?tlsCertificateKeyFilePassword=zz&x=1 (db)")
        == "at mongodb+srv://u:***@host/db?tlsCertificateKeyFilePassword=***&x=1 (db)"
    )
    assert config.redact("mongod://u:pw@h") == "mongod://u:***@h"
    assert config.redact("mongodb://h:1/db?authMechanism=PLAIN") == "mongodb://h:1/db?authMechanism=PLAIN"


def test_launchpad_config_knows_its_secrets_wherever_they_are():
    cfg = config.LaunchPadConfig(
        {
            "host": "mongodb://u:uri-pw@h/?authMechanismProperties=AWS_SESSION_TOKEN:tok-123",
            "password": 31415926535897,
            "mongoclient_kwargs": {
                "tlsCertificateKeyFilePassword": "kf-pw",
                "authMechanismProperties": {"AWS_SESSION_TOKEN": "t0k"},
            },
        },
        "test",
    )
    for s in ("uri-pw", "31415926535897", "kf-pw", "t0k"):
        assert s in cfg.secrets
        assert s not in config.redact(f"message with {s} inside")
    assert "uri-pw" not in cfg.where() and cfg.where().startswith("mongodb://u:***@h/")


def test_tracebacks_and_warnings_are_redacted_too(monkeypatch, tmp_path):
    """A bug's traceback, or a library's warning, that quotes a secret shows ``***``."""
    import warnings

    import fwspool.cli.status

    config.register_secrets("Zebra-Secret-9")

    def broken(path: str | None) -> Any:
        warnings.warn("option for mongodb://u:Zebra-Secret-9@h ignored", UserWarning, stacklevel=1)
        raise RuntimeError("unexpected: password Zebra-Secret-9 in a library's error")

    monkeypatch.setattr(fwspool.cli.status, "open_journal", broken)
    with warnings.catch_warnings():
        res = invoke("status", "--no-check", "--journal", str(tmp_path / "j.sqlite3"))
    assert res.exit_code == 70, res.output
    assert "fwspool: warning: option for mongodb://u:***@h ignored" in res.output
    assert "fwspool: internal error, please report:" in res.output and "Traceback" in res.output
    assert "RuntimeError: unexpected: password *** in a library's error" in res.output
    assert "Zebra" not in res.output


def test_legacy_fireworks_ssl_keys_become_tls_options(tmp_path):
    path = write_lpad(
        tmp_path / "old.yaml",
        {
            "host": "h",
            "name": "fw",
            "ssl": True,
            "ssl_ca_certs": "/ca.pem",
            "ssl_pem_passphrase": "pp-secret",
        },
    )
    cfg = config.resolve(path)
    assert cfg.settings["mongoclient_kwargs"] == {
        "tls": True,
        "tlsCAFile": "/ca.pem",
        "tlsCertificateKeyFilePassword": "pp-secret",
    }
    assert "ssl" not in cfg.settings and "pp-secret" in cfg.secrets
    off = write_lpad(tmp_path / "off.yaml", {"host": "h", "ssl": False, "ssl_ca_certs": "/ca.pem"})
    assert "mongoclient_kwargs" not in config.resolve(off).settings


# -- 2. authentication and TLS, for real --------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    return make_pki(tmp_path / "pki")


def test_tls_with_authentication_from_a_launchpad_file_and_a_uri(mongo_server_factory, tmp_path, pki):
    server = secure_server(mongo_server_factory, tls=pki)
    lp = make_launchpad(alice_uri(server, extra=f"&tls=true&tlsCAFile={quote(pki['ca'])}"), "fireworks")
    d = one_step_reserved_and_run(lp, tmp_path / "launch", "--group-readable")
    # rlaunch --group-readable: the spool file is 0640, for an ingest by a member of its group.
    (spool,) = Path(d).glob("fwspool-*.spool")
    assert stat.S_IMODE(spool.stat().st_mode) == 0o640
    lp.connection.close()
    env = {**job_env(), "FWSPOOL_JOURNAL": str(tmp_path / "j" / "j.sqlite3")}
    lpad = write_lpad(
        tmp_path / "tls.yaml",
        alice_settings(server, mongoclient_kwargs={"tls": True, "tlsCAFile": pki["ca"]}),
    )
    res = fwspool("sync", "--root", d, "-l", lpad, env=env)
    assert res.returncode == 0, res.stderr
    assert "push: 1 launch," in res.stdout and not leaks(res.stdout + res.stderr)
    # The same through --uri, and FireWorks 1.x's top-level ssl keys.
    uri = alice_uri(server, extra=f"&tls=true&tlsCAFile={quote(pki['ca'])}")
    res = fwspool("status", "--json", "--uri", uri, env=env)
    assert json.loads(res.stdout)["database"]["reachable"] is True, res.stdout
    legacy = write_lpad(
        tmp_path / "legacy.yaml",
        alice_settings(server, ssl=True, ssl_ca_certs=pki["ca"]),
    )
    res = fwspool("status", "--json", "-l", legacy, env=env)
    assert json.loads(res.stdout)["database"]["reachable"] is True, res.stdout


def test_tls_mismatches_are_one_clear_line_and_never_retried(mongo_server_factory, tmp_path, pki):
    tls_server = secure_server(mongo_server_factory, tls=pki)
    plain_server = mongo_server_factory()
    other_ca = make_pki(tmp_path / "other")["ca"]
    cases = {
        # A TLS server contacted without TLS: pymongo only sees "connection reset".
        "no tls": (alice_uri(tls_server), "requires TLS: set tls: true and tlsCAFile"),
        # Its certificate signed by a CA the client does not trust.
        "untrusted": (
            alice_uri(tls_server, extra=f"&tls=true&tlsCAFile={quote(other_ca)}"),
            "certificate verify failed",
        ),
        # TLS asked of a server that does not speak it: pymongo only sees a handshake timeout.
        "not tls": (
            plain_server.plain_uri + f"&tls=true&tlsCAFile={quote(pki['ca'])}",
            "does not use TLS, but the settings ask for it",
        ),
    }

    def attempt(what: str, extra: list[str]) -> None:
        uri, expected = cases[what]
        env = {**job_env(), "FWSPOOL_JOURNAL": str(tmp_path / what / f"{extra}.sqlite3")}
        Journal.open(env["FWSPOOL_JOURNAL"]).close()
        started = time.monotonic()
        res = fwspool("push", "--uri", uri, "--timeout", "2", *extra, env=env, timeout=60)
        assert res.returncode == 78, (what, res.stderr)
        line = one_line_error(res)
        assert expected in line and "cannot reach" not in line, (what, line)
        assert not leaks(res.stdout + res.stderr)
        assert time.monotonic() - started < 30, (what, "retried?")
        # status asks for one second at most, whatever --timeout says; six attempts at once on
        # a loaded machine may get "no answer" in that second: the reason must come in one of three.
        for _ in range(3):
            res = fwspool("status", "--json", "--uri", uri, "--timeout", "2", env=env)
            error = json.loads(res.stdout)["database"]["error"]
            if "no answer within" not in error:
                break
        assert expected in error, res.stdout

    with ThreadPoolExecutor(6) as pool:
        for done in [pool.submit(attempt, what, extra) for what in cases for extra in ([], ["--watch"])]:
            done.result()


def test_wrong_password_with_sync_watch_is_not_retried(mongo_server_factory, tmp_path):
    server = secure_server(mongo_server_factory)
    env = {**job_env(), "FWSPOOL_JOURNAL": str(tmp_path / "j" / "j.sqlite3")}
    res = fwspool(
        "sync", "--watch", "--interval", "1", "--uri", alice_uri(server, WRONG), env=env, timeout=60
    )
    assert res.returncode == 77, res.stderr
    assert "refused the credentials (user alice, authSource admin)" in one_line_error(res)
    # No credentials at all against a server that wants them: the same code, its own words.
    res = fwspool("push", "--uri", server.uri, env=env, timeout=60)
    assert res.returncode == 77 and "requires authentication" in one_line_error(res)


# -- 3. no spoofed events -----------------------------------------------------------------------

OTHER_UID = 54321
OTHER_GID = 54322


@pytest.fixture
def chown_ok(tmp_path: Path) -> None:
    """Files really owned by another uid need chown: root can, others are skipped, visibly."""
    probe = tmp_path / "chown-probe"
    probe.write_text("")
    try:
        os.chown(probe, OTHER_UID, OTHER_GID)
    except PermissionError:
        pytest.skip(f"chown to another uid is not permitted for uid {os.geteuid()} here")


def spool_launch(d: Path, launch_id: int, *, pings: int = 2, completed: bool = True) -> str:
    d.mkdir(parents=True, exist_ok=True)
    with SpoolWriter(str(d), launch_id, 100 + launch_id, clock=lambda: T0) as w:
        w.append(Started(started_on=T0, host="nid001", ip="10.0.0.1"))
        for i in range(pings):
            w.append(Ping(ping_time=T0 + dt.timedelta(seconds=i + 1)))
        if completed:
            w.append(Completed(state="COMPLETED", action={"stored_data": {"x": 1}}, completed_on=T0))
            w.append(Exited(returncode=0))
    return w.path


def write_offline(d: Path, launch_id: int, *, ping: bool = True, **extra: Any) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "FW.json").write_text(json.dumps({"fw_id": 7, "spec": {"_tasks": []}}))
    doc = {"launch_id": launch_id, "started_on": "2024-05-01T12:00:00+00:00", **extra}
    (d / "FW_offline.json").write_text(json.dumps(doc))
    if ping:
        (d / "FW_ping.json").write_text(json.dumps({"ping_time": "2024-05-01T12:05:00+00:00"}))
    return d / "FW_offline.json"


def test_files_of_another_user_are_refused_quarantined_and_reported_once(chown_ok, tmp_path, journal_path):
    root = tmp_path / "launches"
    mine = spool_launch(root / "mine", 1)
    theirs = spool_launch(root / "theirs", 2)
    os.chown(theirs, OTHER_UID, OTHER_GID)
    offline_theirs = write_offline(root / "offline_theirs", 3)
    os.chown(offline_theirs, OTHER_UID, OTHER_GID)
    offline_ping = write_offline(root / "offline_ping", 4)
    os.chown(offline_ping.parent / "FW_ping.json", OTHER_UID, OTHER_GID)
    world = spool_launch(root / "world", 5)
    os.chmod(world, 0o666)

    s = ingest(journal_path, root)
    launches = {r["launch_id"] for r in query(journal_path, "SELECT DISTINCT launch_id FROM events")}
    assert launches == {1, 4}  # nothing from 2, 3 or 5; launch 4 without its spoofable ping
    assert query(journal_path, "SELECT type FROM events WHERE launch_id = 4") == [{"type": "started"}]
    refused = {
        r["path"]: r
        for r in query(
            journal_path, "SELECT path, kind, status, status_detail FROM sources WHERE status = 'refused'"
        )
    }
    ping_path = str(offline_ping.parent / "FW_ping.json")
    assert set(refused) == {theirs, str(offline_theirs), ping_path, world}
    assert refused[theirs]["kind"] == "spool" and refused[ping_path]["kind"] == "fw_ping"
    assert f"owned by uid {OTHER_UID}" in refused[theirs]["status_detail"]
    assert "writable by every user (mode 0666)" in refused[world]["status_detail"]
    q = {
        r["path"]: r
        for r in query(journal_path, 'SELECT path, "offset", length, reason, bytes FROM quarantine')
    }
    assert set(q) == set(refused)
    assert q[theirs]["reason"].startswith("refused: owned by") and q[theirs]["bytes"] is None
    assert q[theirs]["length"] == os.path.getsize(theirs)
    assert sorted(p.split(": ", 1)[0] for p in s.problems) == sorted(f"refused {p}" for p in refused)
    assert s.quarantined == 4

    # Reported once: the next passes are silent and write nothing, the files stay refused.
    again = ingest(journal_path, root)
    assert (again.problems, again.new_events, again.quarantined) == ([], 0, 0)
    assert mine not in refused

    # Made trustworthy (chowned back, chmod), they are read in full the next pass.
    os.chown(theirs, os.geteuid(), os.getegid())
    os.chmod(world, 0o600)
    os.chown(ping_path, os.geteuid(), os.getegid())
    fixed = ingest(journal_path, root)
    assert fixed.new_events == 11 and fixed.problems == []
    statuses = query(
        journal_path, "SELECT status FROM sources WHERE path IN (?, ?, ?)", (theirs, world, ping_path)
    )
    assert statuses == [{"status": "active"}] * 3
    assert query(journal_path, "SELECT type FROM events WHERE launch_id = 4 ORDER BY seq") == [
        {"type": "started"},
        {"type": "ping"},
    ]


def test_trust_group_accepts_the_group_and_the_cli_takes_it(chown_ok, tmp_path, journal_path):
    import grp

    root = tmp_path / "launches"
    theirs = spool_launch(root / "theirs", 1)
    os.chown(theirs, OTHER_UID, OTHER_GID)
    assert ingest(journal_path, root, trust_group=OTHER_GID + 1).new_events == 0
    assert ingest(journal_path, root, trust_group=OTHER_GID).new_events == 5

    # The CLI: --trust-group NAME|GID and FWSPOOL_TRUST_GROUP; an unknown group is a usage error.
    other = spool_launch(root / "other", 2)
    name = grp.getgrgid(0).gr_name
    os.chown(other, OTHER_UID, 0)
    runner = CliRunner()
    res = runner.invoke(main, ["ingest", "--journal", journal_path, "--root", str(root)])
    assert res.exit_code == 0 and "refused" in res.output and "0 new events" in res.output, res.output
    res = runner.invoke(
        main, ["ingest", "--journal", journal_path, "--root", str(root)], env={"FWSPOOL_TRUST_GROUP": name}
    )
    assert res.exit_code == 0 and "5 new events" in res.output, res.output
    res = runner.invoke(main, ["ingest", "--journal", journal_path, "--trust-group", "no-such-group-xyz"])
    assert res.exit_code == 2 and "no group named 'no-such-group-xyz'" in res.output
    res = runner.invoke(main, ["sync", "--journal", journal_path, "--trust-group", "no-such-group-xyz"])
    assert res.exit_code == 2


def test_symlinks_are_never_followed(tmp_path, journal_path):
    root = tmp_path / "launches"
    elsewhere = tmp_path / "elsewhere"
    target = spool_launch(elsewhere / "a", 1)  # a spool file of mine, outside the tree
    d = root / "job"
    d.mkdir(parents=True)
    link = d / spool_file_name("ab" * 16)
    link.symlink_to(target)
    off_target = write_offline(elsewhere / "b", 2)
    (root / "job2").mkdir()
    (root / "job2" / "FW_offline.json").symlink_to(off_target)
    s = ingest(journal_path, root)
    assert s.new_events == 0
    refused = query(journal_path, "SELECT path, status_detail FROM sources WHERE status = 'refused'")
    assert {r["path"] for r in refused} == {str(link), str(root / "job2" / "FW_offline.json")}
    assert all("symbolic link" in r["status_detail"] for r in refused)
    assert ingest(journal_path, root).problems == []  # once

    # A launch directory found under --root, later swapped for a symlink leaving the root.
    inside = root / "job3"
    spool_launch(inside, 3, completed=False)
    assert ingest(journal_path, root).new_events == 3
    moved = elsewhere / "job3"
    inside.rename(moved)
    with SpoolWriter(str(moved), 3, 103, clock=lambda: T0) as w:
        w.append(Ping(ping_time=T0 + dt.timedelta(minutes=5)))
    inside.symlink_to(moved, target_is_directory=True)
    s = ingest(journal_path, root)
    assert s.new_events == 0
    assert any("reached through a symbolic link leaving --root" in p for p in s.problems), s.problems


def test_journal_is_private_and_a_readable_one_is_reported(tmp_path):
    path = tmp_path / "state" / "fwspool" / "journal.sqlite3"
    old = os.umask(0o022)
    try:
        with Journal.open(str(path)) as j:
            assert j.warnings == []
            j.set_meta("x", "1")
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        os.umask(old)
    path.chmod(0o644)
    with Journal.open(str(path)) as j:
        assert any("readable by other users (mode 644)" in w for w in j.warnings), j.warnings
    res = invoke("status", "--no-check", "--journal", str(path))
    assert "fwspool: warning: journal" in res.output and "chmod 600" in res.output


def test_emit_group_readable(tmp_path):
    d = tmp_path / "launch"
    d.mkdir()
    runner = CliRunner()
    assert runner.invoke(main, ["emit", "--launch-dir", str(d), "--launch-id", "1", "ping"]).exit_code == 0
    res = runner.invoke(
        main, ["emit", "--launch-dir", str(d), "--launch-id", "1", "--group-readable", "ping"]
    )
    assert res.exit_code == 0, res.output
    modes = sorted(stat.S_IMODE(p.stat().st_mode) for p in d.glob("fwspool-*.spool"))
    assert modes == [0o600, 0o640]


# -- 4. bounded input ---------------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_too_deep_counts_only_real_nesting():
    assert not too_deep(b'{"a": "[[[[[[[[[[[[[[[[[[[[[["}', 3)
    assert not too_deep(b'{"a": "\\"[[[[[[[[[[\\\\", "b": [[1]]}', 3)
    assert too_deep(b'{"a": "\\"", "b": [[[1]]]}', 3)
    assert not too_deep(b"[" + b"[],[]," * 50 + b"[]]", 2)
    assert too_deep(json.dumps(nested(DEFAULT_MAX_DEPTH + 1)).encode())
    assert not too_deep(json.dumps(nested(DEFAULT_MAX_DEPTH)).encode())


def test_deep_and_huge_input_is_quarantined_not_loaded(tmp_path, journal_path):
    root = tmp_path / "launches"
    d = root / "deep"
    d.mkdir(parents=True)
    writer = "cd" * 16
    good = spool_launch(root / "good", 1)

    def rec(seq: int, action_json: bytes) -> bytes:
        # Built as text: msgspec itself cannot encode what is deeper than its recursion limit.
        return frame(
            b'{"v":%d,"writer":"%s","seq":%d,"launch_id":2,"at":"2024-05-01T12:00:00Z","event":'
            b'{"type":"completed","state":"COMPLETED","completed_on":"2024-05-01T12:00:00Z","action":%s}}'
            % (RECORD_VERSION, writer.encode(), seq, action_json)
        )

    def deep(n: int) -> bytes:
        return b'{"x": ' + b"[" * n + b"1" + b"]" * n + b"}"

    # Deeper than msgspec's own recursion limit (RecursionError); one level deeper than MongoDB
    # stores (the event nests as deep as FireWorks' launch document: the event, the action, which
    # is deep(n)'s object, then its n lists); exactly as deep as it stores; shallow.
    at_limit = DEFAULT_MAX_DEPTH - 2
    (d / spool_file_name(writer)).write_bytes(
        rec(1, deep(5000)) + rec(2, deep(at_limit + 1)) + rec(3, deep(at_limit)) + rec(4, deep(10))
    )
    # FireWorks offline files: too deep; too large (sparse: never read); a gzip bomb.
    write_offline(root / "off_deep", 3, ping=False)
    (root / "off_deep" / "FW_offline.json").write_bytes(
        b'{"launch_id": 3, "started_on": "2024-05-01T12:00:00+00:00", "checkpoint": ' + deep(3000) + b"}"
    )
    big = write_offline(root / "off_big", 4, ping=False)
    os.truncate(big, 1 << 40)
    bomb_dir = root / "off_bomb"
    write_offline(bomb_dir, 5, ping=False).unlink()
    with gzip.open(bomb_dir / "FW_offline.json.gz", "wb", compresslevel=9) as f:
        f.write(b'{"launch_id": 5, "pad": "')
        for _ in range(256):
            f.write(b" " * (1 << 20))
        f.write(b'"}')
    assert (bomb_dir / "FW_offline.json.gz").stat().st_size < 2 << 20

    tracemalloc.start()
    try:
        s = ingest(journal_path, root, max_record=8 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"ingest held {peak >> 20} MiB"
    assert len(s.problems) == 3 and s.quarantined == 5, s
    assert {r["launch_id"] for r in query(journal_path, "SELECT DISTINCT launch_id FROM events")} == {1, 2}
    assert query(journal_path, "SELECT seq FROM events WHERE launch_id = 2 ORDER BY seq") == [
        {"seq": 3},
        {"seq": 4},
    ]
    q = query(journal_path, 'SELECT path, "offset", reason FROM quarantine ORDER BY path, "offset"')
    deep = [r["reason"] for r in q if r["path"].endswith(".spool")]
    assert deep == [f"invalid record: JSON nested deeper than {DEFAULT_MAX_DEPTH} levels"] * 2
    by_dir = {Path(r["path"]).parent.name: r["reason"] for r in q if "FW_offline" in r["path"]}
    assert by_dir == {
        "off_deep": f"refused: JSON nested deeper than {DEFAULT_MAX_DEPTH} levels",
        "off_big": f"refused: larger than the limit of {8 << 20} bytes ({1 << 40} bytes)",
        "off_bomb": f"refused: decompresses to more than the limit of {8 << 20} bytes",
    }
    assert good and ingest(journal_path, root, max_record=8 << 20).problems == []


def test_nothing_is_unpickled_or_evaluated():
    """msgspec typed decoding and safe YAML only: no pickle, marshal, eval, exec or unsafe YAML."""
    package = Path(__file__).resolve().parent.parent / "fwspool"
    forbidden_modules = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = {a.name.split(".")[0] for a in node.names}
                if isinstance(node, ast.ImportFrom) and node.module:
                    names.add(node.module.split(".")[0])
                assert not names & forbidden_modules, f"{path.name}:{node.lineno}"
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                builtin = isinstance(func, ast.Name) and name in {"eval", "exec", "compile", "__import__"}
                assert not builtin and name != "load_object", f"{path.name}:{node.lineno}"
                if name == "YAML":
                    typ = {k.arg: k.value for k in node.keywords}.get("typ")
                    assert isinstance(typ, ast.Constant) and typ.value == "safe", f"{path.name}:{node.lineno}"
                if name in {"load", "load_all"} and isinstance(func, ast.Attribute):
                    base = func.value
                    assert not (isinstance(base, ast.Name) and base.id == "yaml"), (
                        f"{path.name}:{node.lineno}"
                    )


# -- 5. least surprise on the LaunchPad ---------------------------------------------------------

#: The collections FireWorks' own offline recovery writes, and its GridFS fallback. complete_launch
#: (FireWorks' code, which fwspool calls for a completion) also draws new Firework ids from
#: fw_id_assigner for an FWAction's additions and detours.
ALLOWED_COLLECTIONS = {
    "launches",
    "fireworks",
    "workflows",
    "offline_runs",
    "fw_id_assigner",
    "fw_gridfs.files",
    "fw_gridfs.chunks",
}
WRITE_COMMANDS = {
    "insert",
    "update",
    "delete",
    "findAndModify",
    "create",
    "createIndexes",
    "drop",
    "dropIndexes",
    "dropDatabase",
    "renameCollection",
    "collMod",
    "bulkWrite",
}


class WriteRecorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.writes: list[tuple[str, str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in WRITE_COMMANDS:
            if name == "bulkWrite":
                for ns in event.command.get("nsInfo", []):
                    db, _, coll = ns["ns"].partition(".")
                    self.writes.append((name, db, coll))
            else:
                self.writes.append((name, event.database_name, str(event.command.get(name))))

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


def test_a_push_writes_only_fireworks_collections(launchpad, tmp_path, journal_path, mongo_uri):
    lp = launchpad
    # A completion with additions and detours (FWAction from a real run).
    first = Firework([GrowTask(label="g")], name="grow")
    grow = Workflow(
        [first, Firework(ScriptTask.from_str("echo 2"), name="after", parents=[first])], name="grow"
    )
    lp.add_wf(grow)
    grow_dir = str(tmp_path / "grow")
    reserve_offline(lp, grow_dir)
    assert run_fwspool(grow_dir).returncode == 0
    # A launch the LaunchPad moves past (rerun): superseded.
    lp.add_wf(one_step_wf("rerun"))
    rerun_fw = reserve_offline(lp, str(tmp_path / "rerun"))[0].fw_id
    spool_launch(tmp_path / "rerun", 2, completed=False)
    lp.rerun_fw(rerun_fw)
    # A launch still running (started + pings: the bulk running phase), and one forgotten.
    lp.add_wf(one_step_wf("running"))
    _, running_lid = reserve_offline(lp, str(tmp_path / "running"))
    spool_launch(tmp_path / "running", running_lid, completed=False)
    lp.add_wf(one_step_wf("forgotten"))
    forgotten_fw = reserve_offline(lp, str(tmp_path / "forgotten"))[0].fw_id

    recorder = WriteRecorder()
    with Journal.open(journal_path) as journal:
        Ingester(journal, roots=[str(tmp_path)]).run_pass()
        journal.request_forget([forgotten_fw], [])
        uplink = uplink_for(mongo_uri, lp.name, event_listeners=[recorder])
        try:
            summary = Pusher(journal, uplink).run_pass()
        finally:
            uplink.close()
    assert summary.applied > 0 and summary.superseded > 0 and summary.forgets_applied == 1
    assert lp.fireworks.count_documents({"name": {"$in": ["g-addition", "g-detour"]}}) == 2
    assert lp.offline_runs.find_one({"fw_id": forgotten_fw})["deprecated"] is True
    written = {(db, coll) for _, db, coll in recorder.writes}
    assert {db for db, _ in written} == {lp.name}, recorder.writes
    assert {coll for _, coll in written} <= ALLOWED_COLLECTIONS, recorder.writes
    assert {"launches", "fireworks", "workflows", "offline_runs", "fw_id_assigner"} <= {c for _, c in written}
