"""Spool files for tests, on both sides of the spool: in-memory stand-ins for the writer's
:class:`~fwspool.spool.SpoolFile` and the reader's :class:`~fwspool.spool.SourceFile`, and
readers that inject the fault a real filesystem may show a reader at any time: short reads."""

from __future__ import annotations

import random

from fwspool.spool import OsSourceFile

__all__ = ["MemorySource", "MemorySpoolFile", "ShortReadSource", "ShortReads"]

#: How often a read is cut short.
SHORT_READ_CHANCE = 0.7


def _cut_short(data: bytes, rng: random.Random) -> bytes:
    """``data`` or a non-empty prefix of it, at random: a short read never looks like EOF."""
    if len(data) > 1 and rng.random() < SHORT_READ_CHANCE:
        data = data[: rng.randint(1, len(data) - 1)]
    return data


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


class ShortReads(MemorySource):
    """A SourceFile over bytes that returns fewer bytes than asked, at random (never 0 before EOF)."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        super().__init__(data)
        self.rng = random.Random(seed)

    def pread(self, size: int, offset: int) -> bytes:
        return _cut_short(super().pread(size, offset), self.rng)


class ShortReadSource(OsSourceFile):
    """A real file whose reads return fewer bytes than asked, at random; an opener for ingest.

    One random sequence for the class (ingest opens one instance per file); set ``rng`` on an
    instance for a sequence of its own.
    """

    rng = random.Random(7)

    def pread(self, size: int, offset: int) -> bytes:
        return _cut_short(super().pread(size, offset), self.rng)


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
