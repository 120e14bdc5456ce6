"""The uplink: fwspool's only connection to MongoDB, behind a small interface.

:class:`Uplink` is what the pusher needs of a LaunchPad. :class:`MongoUplink` is the real one (a
FireWorks LaunchPad with short timeouts); :class:`fwspool.testing.faults.FlakyUplink` wraps any
uplink and fails on command, for tests of what happens when the database goes away mid-push.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from fwspool.binding import EPOCH_FIELD, LaunchPadIdentity, launchpad_file_of
from fwspool.config import DEFAULT_TIMEOUT, LaunchPadConfig, redact
from fwspool.errors import NotALaunchPad, UplinkAuthError, UplinkTLSError, UplinkUnavailable
from fwspool.launchpad import ApplyResult, LaunchPadApplier, Verdict, WriteSet
from fwspool.runs import LaunchEvents

#: MongoDB error codes that mean "who you are is not accepted".
_AUTH_CODES = {18, 13, 11}
#: Error codes a replica set answers while it elects a primary or shuts one down: try again later.
FAILOVER_CODES = {
    6: "HostUnreachable",
    7: "HostNotFound",
    89: "NetworkTimeout",
    91: "ShutdownInProgress",
    189: "PrimarySteppedDown",
    9001: "SocketException",
    10107: "NotWritablePrimary",
    11600: "InterruptedAtShutdown",
    11602: "InterruptedDueToReplStateChange",
    13435: "NotPrimaryNoSecondaryOk",
    13436: "NotPrimaryOrSecondary",
}
#: Client options and URI options that set a write concern: the user's own, then, not ours.
_WRITE_CONCERN_KEYS = {"w", "journal", "j", "wtimeoutms", "fsync"}


def user_write_concern(settings: dict[str, Any], kwargs: dict[str, Any]) -> bool:
    """Whether the launchpad file (its ``mongoclient_kwargs``) or the URI sets a write concern."""
    from urllib.parse import parse_qsl, urlsplit

    if any(str(k).lower() in _WRITE_CONCERN_KEYS for k in kwargs):
        return True
    host = settings.get("host")
    if isinstance(host, str) and host.startswith(("mongodb://", "mongodb+srv://")):
        return any(k.lower() in _WRITE_CONCERN_KEYS for k, _ in parse_qsl(urlsplit(host).query))
    return False


class Uplink(Protocol):
    def where(self) -> str:
        """Where the database is, credentials redacted."""

    def launchpad_file(self) -> str | None:
        """The launchpad file the settings came from (absolute), or None (``--uri``, defaults)."""

    def check(self) -> None:
        """Connect and make sure this is a LaunchPad; raise UplinkUnavailable/UplinkAuthError/NotALaunchPad."""

    def apply(
        self,
        launches: list[LaunchEvents],
        now: dt.datetime,
        redo: Callable[[bytes], None] | None = None,
        owner: str = "fwspool",
    ) -> ApplyResult:
        """Apply pending events; ``redo`` gets a bulk completion's write set before it is written;
        ``owner`` names the journal whose workflow locks these are."""

    def replay(self, write_set: bytes) -> Verdict:
        """Finish the writes of a bulk completion whose push died halfway (idempotent), if they are
        still its to finish: written, waiting (try next pass) or abandoned (see
        :meth:`fwspool.launchpad.WriteSet.replay`)."""

    def open_offline_runs(self) -> list[dict[str, Any]]:
        """The registry: offline runs not completed nor deprecated, with their launch_dir, batch
        job and Firework name."""

    def set_deprecated(self, kind: str, values: Sequence[int], deprecated: bool) -> None:
        """``lpad forget_offline`` (or its undo) for these Firework or launch ids."""

    def identity(self, *, claim: bool) -> LaunchPadIdentity:
        """Which LaunchPad this is (:mod:`fwspool.binding`); with ``claim``, give it an epoch when
        it has none (one conditional update: the first of several journals draws it)."""

    def launch_homes(self, launch_ids: Sequence[int]) -> tuple[dict[int, dict[str, Any]], int]:
        """The LaunchPad's launches of these ids (``launch_id``, ``fw_id``, ``launch_dir``) and the
        next launch id it will hand out: an id below it that it does not have is not its launch."""

    def fireworks_of(self, fw_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """These Fireworks' ``state`` and ``launches`` (the current ones), by fw_id."""

    def close(self) -> None: ...


def reservation_id(launch: dict[str, Any]) -> str | None:
    """The batch job id ``qlaunch -r`` recorded for a launch (``set_reservation_id``), as text."""
    for entry in launch.get("state_history") or []:
        if entry.get("reservation_id") is not None:
            return str(entry["reservation_id"])
    return None


def short_reason(exc: BaseException) -> str:
    """pymongo's reason without its topology dump: '127.0.0.1:27017: [Errno 111] Connection refused'."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = text.split(", Timeout:", 1)[0]
    text = text.split(", full error:", 1)[0]
    text = re.sub(r" \(configured timeouts:[^)]*\)", "", text)
    return text[:300]


def translate_errors(
    where: str, secrets: tuple[str, ...] = (), credentials: str = ""
) -> Callable[[BaseException], Exception | None]:
    """Map a pymongo exception to fwspool's own, or None when it is not a connection matter.

    Every text is redacted (``secrets`` and every secret registered in :mod:`fwspool.config`).
    """
    from pymongo.errors import (
        BulkWriteError,
        ConfigurationError,
        ConnectionFailure,
        NetworkTimeout,
        NotPrimaryError,
        OperationFailure,
        WriteConcernError,
        WTimeoutError,
    )

    from fwspool.tlscheck import HINT_CA, TLS_FAILURE

    def translate(exc: BaseException) -> Exception | None:
        text = redact(short_reason(exc), secrets)
        if isinstance(exc, OperationFailure) and (exc.code in _AUTH_CODES or "auth" in text.lower()):
            if credentials == "no credentials given":
                return UplinkAuthError(
                    f"MongoDB at {where} requires authentication and the settings give no credentials "
                    f"(username/password in the launchpad file, or user:password@ in the URI of --uri or of a "
                    f"uri_mode launchpad file): {text}"
                )
            who = f" ({credentials})" if credentials else ""
            return UplinkAuthError(f"MongoDB at {where} refused the credentials{who}: {text}")
        code = getattr(exc, "code", None)
        if code is None and isinstance(getattr(exc, "details", None), dict):
            code = exc.details.get("code")  # type: ignore[attr-defined]
        if isinstance(exc, NotPrimaryError) or code in FAILOVER_CODES:
            name = FAILOVER_CODES.get(code, "NotWritablePrimary")  # type: ignore[arg-type]
            return UplinkUnavailable(
                f"MongoDB at {where} is changing primaries ({name}): {text}; nothing is lost"
            )
        unconfirmed = isinstance(exc, WriteConcernError | WTimeoutError) or (
            isinstance(exc, BulkWriteError)
            and exc.details.get("writeConcernErrors")
            and not exc.details.get("writeErrors")
        )
        if unconfirmed or (isinstance(exc, OperationFailure) and exc.has_error_label("RetryableWriteError")):
            return UplinkUnavailable(
                f"MongoDB at {where} did not confirm a write with its write concern: {text}; "
                "it is applied again on the next push"
            )
        if isinstance(exc, ConnectionFailure) and TLS_FAILURE.search(text):
            return UplinkTLSError(f"TLS with MongoDB at {where} failed: {text}; {HINT_CA}")
        if isinstance(exc, NetworkTimeout):
            return UplinkUnavailable(f"MongoDB at {where} stopped answering (timed out): {text}")
        if isinstance(exc, ConnectionFailure):
            return UplinkUnavailable(f"cannot reach MongoDB at {where}: {text}")
        if isinstance(exc, ConfigurationError):
            from fwspool.errors import ConfigError

            return ConfigError(f"MongoDB configuration for {where} is unusable: {text}")
        return None

    return translate


class MongoUplink:
    """A LaunchPad reached through pymongo, with a short server-selection timeout."""

    def __init__(
        self,
        config: LaunchPadConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        event_listeners: Sequence[Any] = (),
    ) -> None:
        from fireworks import LaunchPad

        self.config = config
        settings = dict(config.settings)
        kwargs = dict(settings.get("mongoclient_kwargs") or {})
        ms = int(timeout * 1000)
        kwargs.setdefault("serverSelectionTimeoutMS", ms)
        kwargs.setdefault("connectTimeoutMS", ms)
        # A stalled connection (network cut) must fail, not hang the pusher forever.
        kwargs.setdefault("socketTimeoutMS", max(ms * 6, 30_000))
        if not user_write_concern(settings, kwargs):
            # The journal marks an event pushed once the database acknowledged it: that must be an
            # acknowledgement a failover cannot roll back (majority, on disk), and it must not
            # wait forever for a majority that is not there.
            kwargs.update(w="majority", journal=True, wTimeoutMS=max(ms * 6, 30_000))
        kwargs.setdefault("retryWrites", True)
        if event_listeners:
            kwargs["event_listeners"] = list(kwargs.get("event_listeners", [])) + list(event_listeners)
        settings["mongoclient_kwargs"] = kwargs
        settings.setdefault("strm_lvl", "ERROR")
        settings["logdir"] = None
        self.timeout = timeout
        #: The JobStores jobflow outputs go to (docs/jobflow.md), connected on first use.
        self._job_stores: Any = None
        self._translate = translate_errors(config.where(), config.secrets, config.credentials())
        try:
            self.lp = LaunchPad.from_dict(settings)
        except Exception as exc:  # noqa: BLE001
            mapped = self._translate(exc)
            if mapped is not None:
                raise mapped from None
            from fwspool.errors import ConfigError

            raise ConfigError(
                f"cannot use LaunchPad settings from {config.source}: {redact(str(exc), config.secrets)}"
            ) from None

    def where(self) -> str:
        return self.config.where()

    def launchpad_file(self) -> str | None:
        return launchpad_file_of(self.config.source)

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ImportError as exc:
            # FireWorks loads the task classes a Firework names to apply its results, here as in
            # `lpad recover_offline`: the login node must be able to import them.
            from fwspool.errors import ConfigError

            raise ConfigError(
                f"cannot import {exc.name or exc}, which a Firework's tasks name: FireWorks needs it on the "
                "login node to apply results; add its package to PYTHONPATH (or install it) for fwspool"
            ) from None
        except Exception as exc:
            mapped = self._translate(exc)
            if isinstance(mapped, UplinkUnavailable):
                from fwspool.tlscheck import diagnose

                # "Connection reset" / a handshake timeout may be TLS settings that do not fit.
                reason = redact(short_reason(exc), self.config.secrets)
                mapped = diagnose(self.lp.connection, self.where(), reason, min(self.timeout, 2.0)) or mapped
            if mapped is not None:
                raise mapped from None
            raise

    def check(self) -> None:
        def probe() -> None:
            if self.lp.db.fw_id_assigner.find_one({}, {"_id": 1}) is None:
                raise NotALaunchPad(
                    f"{self.where()} is not a FireWorks LaunchPad (no fw_id_assigner; run `lpad reset` to make one)"
                )

        self._call(probe)

    def apply(
        self,
        launches: list[LaunchEvents],
        now: dt.datetime,
        redo: Callable[[bytes], None] | None = None,
        owner: str = "fwspool",
    ) -> ApplyResult:
        applier = LaunchPadApplier(self.lp, owner, self._job_stores)
        try:
            return self._call(lambda: applier.apply(launches, now, redo))
        finally:
            self._job_stores = applier.job_stores

    def replay(self, write_set: bytes) -> Verdict:
        return Verdict(self._call(lambda: WriteSet.from_bytes(write_set).replay(self.lp)))

    def open_offline_runs(self) -> list[dict[str, Any]]:
        def fetch() -> list[dict[str, Any]]:
            runs = list(
                self.lp.offline_runs.find(
                    {"completed": False, "deprecated": False}, {"_id": 0, "launch_id": 1, "fw_id": 1}
                )
            )
            if not runs:
                return []
            docs = {
                d["launch_id"]: d
                for d in self.lp.launches.find(
                    {"launch_id": {"$in": [r["launch_id"] for r in runs]}},
                    {"_id": 0, "launch_id": 1, "launch_dir": 1, "state_history.reservation_id": 1},
                )
            }
            names = {
                d["fw_id"]: d.get("name")
                for d in self.lp.fireworks.find(
                    {"fw_id": {"$in": sorted({r["fw_id"] for r in runs})}}, {"_id": 0, "fw_id": 1, "name": 1}
                )
            }
            return [
                dict(
                    r,
                    launch_dir=docs.get(r["launch_id"], {}).get("launch_dir"),
                    batch_job_id=reservation_id(docs.get(r["launch_id"], {})),
                    fw_name=names.get(r["fw_id"]),
                )
                for r in runs
            ]

        return self._call(fetch)

    def set_deprecated(self, kind: str, values: Sequence[int], deprecated: bool) -> None:
        self._call(
            lambda: self.lp.offline_runs.update_many(
                {kind: {"$in": list(values)}}, {"$set": {"deprecated": deprecated}}
            )
        )

    def identity(self, *, claim: bool) -> LaunchPadIdentity:
        def read() -> LaunchPadIdentity:
            assigner = self.lp.db.fw_id_assigner
            doc = assigner.find_one({}, {"_id": 1, EPOCH_FIELD: 1})
            if doc is None:
                raise NotALaunchPad(
                    f"{self.where()} is not a FireWorks LaunchPad (no fw_id_assigner; run `lpad reset` to make one)"
                )
            if doc.get(EPOCH_FIELD) is None and claim:
                import uuid

                assigner.update_one(
                    {"_id": doc["_id"], EPOCH_FIELD: {"$exists": False}},
                    {"$set": {EPOCH_FIELD: uuid.uuid4().hex}},
                )
                doc = assigner.find_one({}, {"_id": 1, EPOCH_FIELD: 1}) or doc
            return LaunchPadIdentity(self.where(), doc.get(EPOCH_FIELD))

        return self._call(read)

    def launch_homes(self, launch_ids: Sequence[int]) -> tuple[dict[int, dict[str, Any]], int]:
        def read() -> tuple[dict[int, dict[str, Any]], int]:
            homes = {
                d["launch_id"]: d
                for d in self.lp.launches.find(
                    {"launch_id": {"$in": list(launch_ids)}},
                    {"_id": 0, "launch_id": 1, "fw_id": 1, "launch_dir": 1},
                )
            }
            counters = self.lp.db.fw_id_assigner.find_one({}, {"next_launch_id": 1}) or {}
            return homes, int(counters.get("next_launch_id") or 1)

        return self._call(read)

    def fireworks_of(self, fw_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        return self._call(
            lambda: {
                d["fw_id"]: d
                for d in self.lp.fireworks.find(
                    {"fw_id": {"$in": list(fw_ids)}}, {"_id": 0, "fw_id": 1, "state": 1, "launches": 1}
                )
            }
        )

    def close(self) -> None:
        self.lp.connection.close()
