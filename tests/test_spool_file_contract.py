"""The two file interfaces of fwspool.spool, specified once and run against every implementation.

``SpoolFile`` is where a SpoolWriter puts its bytes: the real :class:`OsSpoolFile` and the
in-memory :class:`MemorySpoolFile` of the tests. ``SourceFile`` is what ingest and SpoolReader
read: the real :class:`OsSourceFile`, the in-memory :class:`MemorySource`, and the fault-injecting
:class:`ShortReads` and :class:`ShortReadSource`, whose short reads the contract allows (a real
filesystem may return fewer bytes than asked at any time); each fault also has a test of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fwspool.events import Completed, Exited, Note, Ping, Started
from fwspool.spool import OsSourceFile, OsSpoolFile, SourceFile, SpoolFile, SpoolReader, SpoolWriter, scan
from fwspool.testing.faults import ShortReads, ShortReadSource
from fwspool.testing.spool_files import MemorySource, MemorySpoolFile

WRITER = "0123456789abcdef0123456789abcdef"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
EVENTS = [
    Started(started_on=T0, host="nid001", ip="10.0.0.1"),
    Ping(ping_time=T0),
    Note(data={"text": "ünïcode", "n": list(range(50))}),
    Completed(state="COMPLETED", action={"stored_data": {"x": 1}}, completed_on=T0),
    Exited(returncode=0),
]


# -- SpoolFile ----------------------------------------------------------------------------------


@dataclass
class SpoolFileKind:
    """How to open one kind of SpoolFile, and how to see the bytes it holds."""

    opener: Callable[[str, int], SpoolFile]
    content: Callable[[SpoolFile], bytes]


def _os_content(f: SpoolFile) -> bytes:
    return Path(f.path).read_bytes()


def _memory_content(f: SpoolFile) -> bytes:
    assert isinstance(f, MemorySpoolFile)
    return f.data


SPOOL_FILES = {
    "os": SpoolFileKind(OsSpoolFile, _os_content),
    "memory": SpoolFileKind(MemorySpoolFile, _memory_content),
}


@pytest.fixture(params=sorted(SPOOL_FILES))
def spool_file_kind(request: pytest.FixtureRequest) -> SpoolFileKind:
    return SPOOL_FILES[request.param]


def test_a_spool_file_keeps_every_write_in_order_through_syncs(
    spool_file_kind: SpoolFileKind, tmp_path: Path
):
    f = spool_file_kind.opener(str(tmp_path / "fwspool-x.spool"), 0o600)
    try:
        assert f.path == str(tmp_path / "fwspool-x.spool")
        f.write(b"one ")
        f.sync()
        f.write(b"")
        f.write(b"two " * 1000)
        f.sync()
        f.sync()
        assert spool_file_kind.content(f) == b"one " + b"two " * 1000
    finally:
        f.close()
    f.close()  # a second close is harmless
    assert spool_file_kind.content(f) == b"one " + b"two " * 1000


def test_a_writer_writes_the_same_bytes_to_every_kind_of_spool_file(
    spool_file_kind: SpoolFileKind, tmp_path: Path
) -> None:
    opened: list[SpoolFile] = []

    def opener(path: str, mode: int) -> SpoolFile:
        opened.append(spool_file_kind.opener(path, mode))
        return opened[-1]

    with SpoolWriter(str(tmp_path), 42, 7, writer_id=WRITER, opener=opener, clock=lambda: T0) as w:
        records = [w.append(ev) for ev in EVENTS]
    (f,) = opened
    assert f.path == w.path == str(tmp_path / f"fwspool-{WRITER}.spool")
    frames = scan(spool_file_kind.content(f), at_eof=True).frames
    assert len(frames) == len(EVENTS) and [r.seq for r in records] == [1, 2, 3, 4, 5]
    # The same bytes as the reference: a writer on an in-memory file with the same id and clock.
    reference = MemorySpoolFile("ref")
    with SpoolWriter(
        str(tmp_path), 42, 7, writer_id=WRITER, opener=lambda p, m: reference, clock=lambda: T0
    ) as r:
        for ev in EVENTS:
            r.append(ev)
    assert spool_file_kind.content(f) == reference.data


# -- SourceFile ---------------------------------------------------------------------------------

#: Each kind: given the file's bytes and a place for them, a SourceFile that reads them.
SOURCE_FILES: dict[str, Callable[[bytes, Path], SourceFile]] = {}


def _on_disk(data: bytes, tmp_path: Path) -> Path:
    path = tmp_path / f"fwspool-{WRITER}.spool"
    path.write_bytes(data)
    return path


def _short_read_source(data: bytes, tmp_path: Path) -> SourceFile:
    src = ShortReadSource(str(_on_disk(data, tmp_path)))
    src.rng = random.Random(11)  # a sequence of its own: other tests' reads do not change this one's
    return src


SOURCE_FILES["os"] = lambda data, tmp_path: OsSourceFile(str(_on_disk(data, tmp_path)))
SOURCE_FILES["memory"] = lambda data, tmp_path: MemorySource(data)
SOURCE_FILES["short_reads"] = lambda data, tmp_path: ShortReads(data, seed=5)
SOURCE_FILES["short_read_file"] = _short_read_source


@pytest.fixture(params=sorted(SOURCE_FILES))
def open_source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[bytes], SourceFile]]:
    opened: list[SourceFile] = []

    def open_(data: bytes) -> SourceFile:
        opened.append(SOURCE_FILES[request.param](data, tmp_path))
        return opened[-1]

    yield open_
    for src in opened:
        src.close()


def spool_bytes(tmp_path: Path) -> bytes:
    out = MemorySpoolFile("bytes")
    with SpoolWriter(str(tmp_path), 1, 1, writer_id=WRITER, opener=lambda p, m: out, clock=lambda: T0) as w:
        for ev in EVENTS * 20:
            w.append(ev)
    return out.data


def test_a_read_returns_a_non_empty_prefix_of_what_is_there_and_nothing_at_eof(
    open_source: Callable[[bytes], SourceFile],
) -> None:
    data = bytes(range(256)) * 40
    src = open_source(data)
    rng = random.Random(3)
    for _ in range(200):
        offset, size = rng.randrange(len(data)), rng.randint(1, 3000)
        got = src.pread(size, offset)
        assert 0 < len(got) <= size and got == data[offset : offset + len(got)]
    assert src.pread(10, len(data)) == b""
    assert src.pread(10, len(data) + 100) == b""


def test_a_spool_reader_gets_every_frame_through_any_source(
    open_source: Callable[[bytes], SourceFile], tmp_path: Path
) -> None:
    data = spool_bytes(tmp_path / "w")
    want = scan(data, at_eof=True).frames
    for chunk in (7, 100, 4 * 1024 * 1024):
        reader = SpoolReader(open_source(data), 0, chunk=chunk)
        frames = [fr for res in reader for fr in res.frames]
        assert frames == want and reader.offset == len(data) and not reader.torn


def test_a_spool_reader_resumes_at_an_offset_and_keeps_a_torn_tail(
    open_source: Callable[[bytes], SourceFile], tmp_path: Path
) -> None:
    data = spool_bytes(tmp_path / "w")
    frames = scan(data, at_eof=True).frames
    start = frames[3].offset
    torn = data + data[:10]
    reader = SpoolReader(open_source(torn), start, chunk=64)
    got = [fr for res in reader for fr in res.frames]
    assert got == frames[3:] and reader.torn and reader.offset == len(data)


def test_closing_a_source_twice_is_harmless(open_source: Callable[[bytes], SourceFile]) -> None:
    src = open_source(b"abc")
    assert src.pread(3, 0)
    src.close()
    src.close()


# -- the faults, each on its own -------------------------------------------------------------------


def test_short_reads_do_cut_reads_short_and_stay_reproducible() -> None:
    data = bytes(range(256)) * 10
    a, b = ShortReads(data, seed=1), ShortReads(data, seed=1)
    lengths = [len(a.pread(1000, 0)) for _ in range(50)]
    assert lengths == [len(b.pread(1000, 0)) for _ in range(50)]
    assert min(lengths) < 1000 and max(lengths) == 1000 and a.calls == 50
    assert ShortReads(b"x", seed=1).pread(10, 0) == b"x"  # one byte is never cut to none


def test_a_short_read_file_cuts_reads_of_a_real_file_short(tmp_path: Path) -> None:
    path = _on_disk(bytes(range(256)) * 10, tmp_path)
    src = ShortReadSource(str(path))
    src.rng = random.Random(2)
    try:
        lengths = [len(src.pread(1000, 0)) for _ in range(50)]
        assert min(lengths) < 1000 and max(lengths) == 1000
        assert os.fstat(src.fd).st_size == 2560  # still the real file, for ingest's checks
    finally:
        src.close()
