"""Where the LaunchPad is: FireWorks' own launchpad file, or a URI and database name.

The lookup is ``lpad``'s: ``-l FILE``; else ``my_launchpad.yaml`` in the current directory;
else FireWorks' ``LAUNCHPAD_LOC`` (FW_config.yaml); else FireWorks' default (localhost, database
``fireworks``). ``--uri``/``FWSPOOL_MONGODB_URI`` replace all of that. Passwords never leave this
module unredacted: use :func:`redact` for anything shown to a person.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from fwspool.errors import ConfigError

DEFAULT_LPAD_YAML = "my_launchpad.yaml"
_URI_CREDENTIALS = re.compile(r"(mongodb(?:\+srv)?://)([^@/]*)@")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with URI credentials shown as ``user:***`` and every known secret as ``***``."""

    def hide(m: re.Match[str]) -> str:
        user = m.group(2).split(":", 1)[0]
        return f"{m.group(1)}{user}:***@"

    text = _URI_CREDENTIALS.sub(hide, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass
class LaunchPadConfig:
    """Everything needed to build a FireWorks LaunchPad (its ``to_dict()`` form)."""

    settings: dict[str, Any]
    source: str  # where the settings came from, for messages
    secrets: tuple[str, ...] = field(default=())

    @property
    def database(self) -> str:
        return str(self.settings.get("name") or "fireworks")

    def where(self) -> str:
        """Host and database, redacted: for messages."""
        s = self.settings
        if s.get("uri_mode"):
            host = str(s.get("host"))
        else:
            host = f"mongodb://{s.get('host') or 'localhost'}:{s.get('port') or 27017}"
        return redact(f"{host} (database {self.database})", self.secrets)


def _load_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as exc:
        raise ConfigError(f"launchpad file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read launchpad file {path}: {exc.strerror}") from exc
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            from ruamel.yaml import YAML

            data = YAML(typ="safe", pure=True).load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error means the same thing to the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"launchpad file {path} is not valid YAML/JSON: {reason}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"launchpad file {path} does not hold a mapping of LaunchPad settings")
    return data


def resolve(
    launchpad_file: str | None = None,
    uri: str | None = None,
    name: str | None = None,
) -> LaunchPadConfig:
    """The LaunchPad settings from the command line, the environment, or lpad's default lookup."""
    uri = uri or os.environ.get("FWSPOOL_MONGODB_URI") or None
    name = name or os.environ.get("FWSPOOL_MONGODB_NAME") or None
    if uri:
        if launchpad_file:
            raise ConfigError("give either --launchpad-file or --uri, not both")
        if not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError(f"--uri must start with mongodb:// or mongodb+srv://, got {redact(uri)[:60]!r}")
        from pymongo.uri_parser import parse_uri

        try:
            parsed = parse_uri(uri, validate=True, warn=True) if "+srv" not in uri else {"database": None}
        except Exception as exc:  # noqa: BLE001 - pymongo raises several types for a bad URI
            raise ConfigError(f"--uri is not a valid MongoDB URI: {redact(str(exc))}") from exc
        password = parsed.get("password") if isinstance(parsed, dict) else None
        settings = {"host": uri, "uri_mode": True, "name": name or parsed.get("database") or "fireworks"}
        return LaunchPadConfig(settings, "--uri", (password,) if password else ())
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
    secrets = tuple(str(v) for k, v in settings.items() if k in ("password",) and v)
    if settings.get("uri_mode") and isinstance(settings.get("host"), str):
        m = _URI_CREDENTIALS.search(settings["host"])
        if m and ":" in m.group(2):
            secrets += (m.group(2).split(":", 1)[1],)
    return LaunchPadConfig(settings, path, secrets)
