"""A throwaway MongoDB-wire server (SecantusDB) for ``fwspool demo`` and the tests.

It runs ``python -m secantus`` on a free loopback port over a storage directory of its own, and
can be stopped, killed with SIGKILL and restarted on the same storage, which is what the
downtime tests need. ``--sync-on-commit`` makes every acknowledged write survive a kill -9.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """A SecantusDB process. ``uri`` is stable across restarts (same port, same storage)."""

    def __init__(
        self,
        storage_path: str,
        *,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        tls_ca_file: str | None = None,
        host: str = "127.0.0.1",
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.storage_path = storage_path
        #: The address it listens on and clients use, and the command that execs it (a network
        #: namespace's, for fwspool.testing.topology; the pid stays the server's).
        self.host = host
        self.prefix = prefix
        self.port = port or free_port()
        self.extra_args = extra_args
        #: The CA a client trusts for this server's certificate (a server started with
        #: --tls-cert-file/--tls-key-file); ``uri`` then asks for TLS with it.
        self.tls_ca_file = tls_ca_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(
            os.path.dirname(os.path.abspath(storage_path)), f"secantus-{self.port}.log"
        )

    @property
    def uri(self) -> str:
        if self.tls_ca_file:
            from urllib.parse import quote

            return f"{self.plain_uri}&tls=true&tlsCAFile={quote(self.tls_ca_file, safe='/')}"
        return self.plain_uri

    @property
    def plain_uri(self) -> str:
        """The URI without TLS options."""
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def start(self, timeout: float = 60.0) -> DevServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        try:
            import secantus  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("SecantusDB is not installed: pip install 'fwspool[test]'") from exc
        cmd = [
            *self.prefix,
            sys.executable,
            "-m",
            "secantus",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage-path",
            self.storage_path,
            "--standalone",
            "--sync-on-commit",
            "--log-level",
            "WARNING",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            # Its own process group: a Ctrl-C meant for the tests does not reach the server first.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_until_up(timeout)
        return self

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                with open(self.log_path, "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"SecantusDB exited with {self.proc.returncode}:\n{tail}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    pass
                if self._ping():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"SecantusDB did not come up on port {self.port} within {timeout}s")

    def _ping(self) -> bool:
        import pymongo
        from pymongo.errors import OperationFailure, PyMongoError

        client: Any = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
        try:
            client.admin.command("ping")
            return True
        except OperationFailure:
            return True  # up, but wants authentication
        except PyMongoError:
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 30.0) -> None:
        """A clean shutdown (SIGTERM), waiting for the process to exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """kill -9: the server loses nothing it acknowledged (--sync-on-commit)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self) -> DevServer:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
