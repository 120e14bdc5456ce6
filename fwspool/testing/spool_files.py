"""Spool files for tests, on both sides of the spool: in-memory stand-ins for the writer's
:class:`~fwspool.spool.SpoolFile` and the reader's :class:`~fwspool.spool.SourceFile`. The readers
that inject short reads are in :mod:`fwspool.testing.faults`."""

from __future__ import annotations

__all__ = ["MemorySource", "MemorySpoolFile"]


class MemorySource:
    """A SourceFile over bytes in memory; counts its reads and remembers being closed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls = 0
        self.closed = False

    def pread(self, size: int, offset: int) -> bytes:
        self.calls += 1
        return self.data[offset : offset + size]

    def close(self) -> None:
        self.closed = True


class MemorySpoolFile:
    """A SpoolFile in memory that records each write and sync, in order."""

    def __init__(self, path: str, mode: int = 0o600) -> None:
        self.path = path
        self.mode = mode
        self.calls: list[tuple[str, bytes]] = []
        self.closed = False

    @property
    def data(self) -> bytes:
        return b"".join(d for kind, d in self.calls if kind == "write")

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def sync(self) -> None:
        self.calls.append(("sync", b""))

    def close(self) -> None:
        self.closed = True
