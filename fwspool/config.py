"""Where the LaunchPad is: FireWorks' own launchpad file, or a URI and database name.

The lookup is ``lpad``'s: ``-l FILE``; else ``my_launchpad.yaml`` in the current directory;
else FireWorks' ``LAUNCHPAD_LOC`` (FW_config.yaml); else FireWorks' default (localhost, database
``fireworks``). ``--uri``/``FWSPOOL_MONGODB_URI`` replace all of that. Passwords never leave this
module unredacted: use :func:`redact` for anything shown to a person. Every secret a
:class:`LaunchPadConfig` holds is also registered process-wide, so :func:`redact` hides it even
where the caller does not know it (a traceback, a warning, a third-party error text).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

from fwspool.errors import ConfigError, FwspoolError

DEFAULT_LPAD_YAML = "my_launchpad.yaml"

# The defaults of the login-node settings, here (a leaf the CLI imports anyway) so that a
# command's --help shows them without importing the daemon, ingest or the uplink, which use them.
#: Seconds between the passes of every ``--watch`` command (ingest, push, sync): one ``squeue``
#: per pass for all open launches, which a batch system's controller takes easily every 30 s.
DEFAULT_INTERVAL = 30.0
#: While nothing changes, a line at most this often (seconds) says the daemon is alive.
HEARTBEAT = 3600.0
#: Seconds a batch job must have been gone before its launch is judged lost or released: NFS
#: attribute caches can hide a finished job's last records for up to a minute.
DEFAULT_LOST_AFTER = 300.0
#: Seconds to wait for the database (server selection, connecting) before giving up a pass.
DEFAULT_TIMEOUT = 5.0
#: ``scheme://userinfo@``: the userinfo runs to the last ``@`` of the token, so a password with an
#: unescaped ``@``, ``/`` or ``?`` (which pymongo refuses, in an error that quotes nothing) is
#: still hidden whole.
_URI_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)([^\s'\"<>]*)@")
#: URI query options and settings whose values are secrets.
_SECRET_KEY = re.compile(r"password|passphrase|secret|token|pwd|authmechanismproperties", re.IGNORECASE)
_SECRET_OPTION = re.compile(
    r"((?:tlsCertificateKeyFilePassword|authMechanismProperties|\w*(?:password|passphrase|secret|token|pwd)\w*)=)"
    r"([^&\s'\"]*)",
    re.IGNORECASE,
)
#: Secrets seen by this process (passwords of every configuration resolved so far).
_REGISTERED: set[str] = set()


def _variants(secret: str) -> set[str]:
    """A secret as it may appear in text: raw, URI-escaped either way, JSON- or repr-escaped."""
    out = {
        secret,
        quote_plus(secret),
        quote(secret, safe=""),
        unquote_plus(secret),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
    }
    return {s for s in out if s}


def register_secrets(*secrets: Any) -> tuple[str, ...]:
    """Remember secrets process-wide (see :func:`redact`); returns their textual variants."""
    found: set[str] = set()
    for secret in secrets:
        if secret is None or secret == "":
            continue
        found |= _variants(str(secret))
    _REGISTERED.update(found)
    return tuple(sorted(found, key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with URI credentials shown as ``user:***``, secret URI options as ``***``, and
    every known secret (``secrets`` and all registered ones) as ``***``."""

    def hide(m: re.Match[str]) -> str:
        user = m.group(2).split(":", 1)[0]
        if not user or any(c in user for c in "/?@"):
            return f"{m.group(1)}***@"
        return f"{m.group(1)}{user}:***@"

    text = _URI_CREDENTIALS.sub(hide, text)
    text = _SECRET_OPTION.sub(lambda m: f"{m.group(1)}***", text)
    every = set(secrets) | _REGISTERED
    for secret in sorted(every, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def uri_password(uri: str) -> str | None:
    """The password in a URI's userinfo, as written (still escaped), even in an invalid URI."""
    if "://" not in uri:
        return None
    rest = uri.split("://", 1)[1]
    before_query = rest.split("?", 1)[0]
    scope = before_query if "@" in before_query else rest
    if "@" not in scope:
        return None
    userinfo = scope.rpartition("@")[0]
    if ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1] or None


def _uri_secrets(uri: str) -> list[str]:
    found: list[str] = []
    password = uri_password(uri)
    if password:
        found.append(password)
    found += [m.group(2) for m in _SECRET_OPTION.finditer(uri) if m.group(2)]
    return found


def settings_secrets(settings: dict[str, Any]) -> list[str]:
    """Every secret in LaunchPad settings: the password, a URI's password and secret options,
    and secret-looking ``mongoclient_kwargs`` (``tlsCertificateKeyFilePassword``...)."""
    found: list[str] = []

    def walk(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(str(k), v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(key, v)
        elif isinstance(value, str) and "://" in value:
            found.extend(_uri_secrets(value))
            if _SECRET_KEY.search(key):
                found.append(value)
        elif value is not None and not isinstance(value, bool) and _SECRET_KEY.search(key):
            found.append(str(value))

    for key, value in settings.items():
        walk(str(key), value)
    return found


#: FireWorks 1.x launchpad-file TLS keys and their pymongo 4 names (FireWorks 2 ignores the old
#: keys silently, which would connect without TLS: fwspool honours what the file asks for).
_LEGACY_TLS = {
    "ssl": "tls",
    "ssl_ca_certs": "tlsCAFile",
    "ssl_certfile": "tlsCertificateKeyFile",
    "ssl_pem_passphrase": "tlsCertificateKeyFilePassword",
}


@dataclass
class LaunchPadConfig:
    """Everything needed to build a FireWorks LaunchPad (its ``to_dict()`` form)."""

    settings: dict[str, Any]
    source: str  # where the settings came from, for messages
    secrets: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # Whoever built the settings, their secrets are known before any message is made.
        self.secrets = register_secrets(*self.secrets, *settings_secrets(self.settings))

    @property
    def database(self) -> str:
        return str(self.settings.get("name") or "fireworks")

    def where(self) -> str:
        """Host and database, redacted: for messages."""
        s = self.settings
        host = str(s.get("host") or "localhost")
        if not (s.get("uri_mode") or "://" in host):
            host = f"mongodb://{host}:{s.get('port') or 27017}"
        return redact(f"{host} (database {self.database})", self.secrets)

    def credentials(self) -> str:
        """Who fwspool authenticates as, for messages: 'user alice, authSource admin'.

        As FireWorks builds its client: in ``uri_mode`` the URI says; otherwise ``username`` and
        ``authsource`` (default: the database name), and a URI's own userinfo is overridden.
        """
        s = self.settings
        user: str | None = None
        source: str | None = None
        host = str(s.get("host") or "")
        if s.get("uri_mode") and "://" in host:
            from urllib.parse import parse_qsl

            before_query, _, query = host.split("://", 1)[1].partition("?")
            if "@" in before_query:
                user = unquote_plus(before_query.rpartition("@")[0].split(":", 1)[0])
            source = {k.lower(): v for k, v in parse_qsl(query)}.get("authsource")
            if source is None and user is not None:
                source = before_query.rpartition("@")[2].partition("/")[2] or "admin"
        elif s.get("username"):
            user = str(s["username"])
            source = str(s.get("authsource") or self.database)
        kwargs = s.get("mongoclient_kwargs") or {}
        user = kwargs.get("username") or user
        source = kwargs.get("authSource") or kwargs.get("authsource") or source
        if not user:
            return "no credentials given"
        return redact(f"user {user}, authSource {source or 'admin'}", self.secrets)


def _text_secrets(text: str) -> list[str]:
    """Secret-looking values in the raw text of a launchpad file that does not parse, so that
    nothing quoted from it can show them."""
    found: list[str] = []
    for m in re.finditer(
        r"""[\w.\-]*(?:password|passphrase|secret|token|pwd)[\w.\-]*["']?\s*[:=]\s*"""
        r"""("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s,}\]#]+)""",
        text,
        re.IGNORECASE,
    ):
        value = m.group(1)
        found += [value, value.strip("\"'"), value.strip("\"'").lstrip("*&!")]
    for uri in re.findall(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"]+", text):
        found += _uri_secrets(uri)
    return [f for f in found if f]


def _parse_problem(exc: Exception) -> str:
    """What is wrong in a launchpad file and where, without quoting its content."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if not problem:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # Parser messages quote the offending text ("found undefined alias '<the password>'").
    problem = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", str(problem))
    if mark is not None and getattr(mark, "line", None) is not None:
        problem += f" (line {mark.line + 1}, column {mark.column + 1})"
    return problem


def load_settings_file(path: str, what: str, *, missing: type[FwspoolError] = ConfigError) -> Any:
    """Read and parse a settings file as FireWorks does (JSON by a ``.json`` name, else YAML).

    Every failure is one line naming ``what`` ("launchpad file", "queue adapter file"): a file
    that cannot be read raises ``missing``, one that does not parse :class:`ConfigError`, and the
    secret-looking values of a file that does not parse are registered first, so that nothing
    quoted from it can show them.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise missing(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise missing(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if path.endswith(".json"):
            return json.loads(text)
        from ruamel.yaml import YAML

        return YAML(typ="safe", pure=True).load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error means the same thing to the user
        register_secrets(*_text_secrets(text))
        raise ConfigError(redact(f"{what} {path} is not valid YAML/JSON: {_parse_problem(exc)}")) from None


def _load_file(path: str) -> dict[str, Any]:
    data = load_settings_file(path, "launchpad file")
    if not isinstance(data, dict):
        raise ConfigError(f"launchpad file {path} does not hold a mapping of LaunchPad settings")
    register_secrets(*settings_secrets(data))
    for key in ("username", "password", "authsource"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ConfigError(f"launchpad file {path}: {key} must be a string (put it in quotes)")
    return _legacy_tls(data, path)


def _legacy_tls(settings: dict[str, Any], path: str) -> dict[str, Any]:
    """FireWorks 1.x's top-level ``ssl*`` keys as pymongo 4 ``mongoclient_kwargs``."""
    legacy = (*_LEGACY_TLS, "ssl_keyfile")
    if not any(k in settings for k in legacy):
        return settings
    rest = {k: v for k, v in settings.items() if k not in legacy}
    if not settings.get("ssl"):
        return rest  # FireWorks 1.x used the other ssl_* keys only with ssl: true
    keyfile = settings.get("ssl_keyfile")
    if keyfile and keyfile != settings.get("ssl_certfile"):
        raise ConfigError(
            f"launchpad file {path}: ssl_keyfile is not supported by pymongo 4; put the key and the "
            "certificate in one PEM file and name it in mongoclient_kwargs: tlsCertificateKeyFile"
        )
    kwargs = dict(settings.get("mongoclient_kwargs") or {})
    given = {k.lower() for k in kwargs}
    for key, new in _LEGACY_TLS.items():
        value = settings.get(key)
        if value in (None, "") or new.lower() in given or (new == "tls" and "ssl" in given):
            continue
        kwargs[new] = True if new == "tls" else value
    return {**rest, "mongoclient_kwargs": kwargs}


def resolve(
    launchpad_file: str | None = None,
    uri: str | None = None,
    name: str | None = None,
) -> LaunchPadConfig:
    """The LaunchPad settings from the command line, the environment, or lpad's default lookup."""
    uri = uri or os.environ.get("FWSPOOL_MONGODB_URI") or None
    name = name or os.environ.get("FWSPOOL_MONGODB_NAME") or None
    if uri:
        # Known before anything can fail: every message below is redacted.
        secrets = register_secrets(*_uri_secrets(uri))
        if launchpad_file:
            raise ConfigError("give either --launchpad-file or --uri, not both")
        if not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError(f"--uri must start with mongodb:// or mongodb+srv://, got {redact(uri)[:60]!r}")
        from pymongo.uri_parser import parse_uri

        try:
            parsed = parse_uri(uri, validate=True, warn=True) if "+srv" not in uri else {"database": None}
        except Exception as exc:  # noqa: BLE001 - pymongo raises several types for a bad URI
            raise ConfigError(f"--uri is not a valid MongoDB URI: {redact(str(exc), secrets)}") from None
        settings = {"host": uri, "uri_mode": True, "name": name or parsed.get("database") or "fireworks"}
        return LaunchPadConfig(settings, "--uri", secrets)
    path = launchpad_file
    if path is None and os.path.exists(DEFAULT_LPAD_YAML):
        path = DEFAULT_LPAD_YAML
    if path is None:
        from fireworks.fw_config import LAUNCHPAD_LOC

        path = LAUNCHPAD_LOC
    if path is None:
        return LaunchPadConfig(
            {"host": "localhost", "port": 27017, "name": "fireworks"}, "FireWorks' default"
        )
    settings = _load_file(path)
    if name:
        settings["name"] = name
    return LaunchPadConfig(settings, path)
