"""Tell a TLS mismatch from an unreachable database.

pymongo reports a plaintext client talking to a TLS-only server as "connection reset", and a TLS
client talking to a plaintext server as a handshake timeout: both look like a database that is
down, which the pusher would wait for forever. After such a failure, and only then, these probes
ask the server directly: does it complete a TLS handshake (nothing is sent over it), does it
answer a plaintext ``hello``? A definite answer is a configuration error, reported in one line.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Any

from fwspool.errors import UplinkTLSError

#: pymongo/OpenSSL texts that can only mean the TLS settings do not fit the server.
TLS_FAILURE = re.compile(
    r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|WRONG_VERSION_NUMBER|wrong version number"
    r"|TLSV1_ALERT|SSLV3_ALERT|alert unknown ca|IP address mismatch|Hostname mismatch"
    r"|doesn't match|TLSV1_UNRECOGNIZED_NAME|NO_PROTOCOLS_AVAILABLE|UNSUPPORTED_PROTOCOL",
    re.IGNORECASE,
)
#: Failures after which a plaintext client asks whether the server wanted TLS.
_PLAIN_SYMPTOM = re.compile(r"reset by peer|connection closed|EOF|Broken pipe", re.IGNORECASE)
#: Failures after which a TLS client asks whether the server speaks plaintext.
_TLS_SYMPTOM = re.compile(r"handshake|timed out|No servers found yet|EOF|reset by peer", re.IGNORECASE)

HINT_CA = (
    "name the CA that signed the server's certificate in tlsCAFile "
    "(launchpad file mongoclient_kwargs, or the URI)"
)


def uses_tls(client: Any) -> bool:
    """Whether a pymongo client is configured for TLS."""
    options = getattr(getattr(client, "options", None), "pool_options", None)
    return getattr(options, "_ssl_context", None) is not None


def _addresses(client: Any) -> list[tuple[str, int]]:
    try:
        found = list(client.topology_description.server_descriptions())
    except Exception:  # noqa: BLE001 - a probe must never add an error of its own
        return []
    return [(h, p) for h, p in found if p is not None and not str(h).endswith(".sock")][:3]


def speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` completes a TLS handshake (certificate not checked; nothing sent)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError, ValueError):
        return False


def speaks_plaintext(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` answers a plaintext MongoDB ``hello`` (no credentials sent)."""
    import pymongo
    from pymongo.errors import OperationFailure, PyMongoError

    ms = max(int(timeout * 1000), 100)
    client: Any = pymongo.MongoClient(
        host,
        port,
        directConnection=True,
        serverSelectionTimeoutMS=ms,
        connectTimeoutMS=ms,
        socketTimeoutMS=ms,
    )
    try:
        client.admin.command("hello")
        return True
    except OperationFailure:
        return True  # it answered
    except PyMongoError:
        return False
    finally:
        client.close()


def diagnose(client: Any, where: str, reason: str, timeout: float = 2.0) -> UplinkTLSError | None:
    """A clear TLS error for a failure that was really a TLS mismatch, else None."""
    if TLS_FAILURE.search(reason):
        return UplinkTLSError(f"TLS with MongoDB at {where} failed: {reason}; {HINT_CA}")
    tls = uses_tls(client)
    if not (_TLS_SYMPTOM if tls else _PLAIN_SYMPTOM).search(reason):
        return None
    for host, port in _addresses(client):
        if tls and speaks_plaintext(host, port, timeout):
            return UplinkTLSError(
                f"MongoDB at {where} does not use TLS, but the settings ask for it "
                "(tls/ssl in the launchpad file's mongoclient_kwargs or the URI)"
            )
        if not tls and speaks_tls(host, port, timeout):
            return UplinkTLSError(
                f"MongoDB at {where} requires TLS: set tls: true and tlsCAFile in the launchpad "
                "file's mongoclient_kwargs, or tls=true&tlsCAFile=... in the URI"
            )
    return None
