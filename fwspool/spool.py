"""The spool: append-only, per-writer files of framed event records (see ``schema/SPOOL.md``).

A record on disk is one line::

    FWS1 <payload length, 8 hex> <CRC-32 of payload, 8 hex> <JSON payload>\\n

The payload is compact JSON (msgspec escapes every control character, so it never holds a raw
newline): ``cat`` shows one event per line. The length and checksum let a reader tell a complete
record from a torn tail, and the magic lets it find the next record after damaged bytes.

Writers (:class:`SpoolWriter`) own one file each, created with ``O_EXCL`` and written with one
``write()`` per record. Readers (:func:`scan`, :class:`SpoolReader`) never trust the file size:
they read to EOF from a committed offset and classify what they find.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import msgspec

from fwspool.errors import SpoolError
from fwspool.events import DURABLE_TYPES, RECORD_VERSION, Event, Record, utcnow

MAGIC = b"FWS1 "
HEADER_LEN = len(MAGIC) + 8 + 1 + 8 + 1  # "FWS1 " + len + " " + crc + " "
#: Default bound on one record's payload; a large FWAction fits, a runaway file does not.
DEFAULT_MAX_RECORD = 64 * 1024 * 1024
#: Spool files in a launch directory are named ``fwspool-<writer id>.spool``.
SPOOL_GLOB = "fwspool-*.spool"
SPOOL_NAME_RE = re.compile(r"^fwspool-([0-9a-f]{32})\.spool$")
_HEX = frozenset(b"0123456789abcdef")
#: A well-formed header: what :func:`_parse_at` checks first, in one C call (scan's fast path).
_HEADER_RE = re.compile(rb"FWS1 ([0-9a-f]{8}) ([0-9a-f]{8}) ")
_NUL_RUN = re.compile(rb"\0+")

_encoder = msgspec.json.Encoder()


def spool_file_name(writer_id: str) -> str:
    return f"fwspool-{writer_id}.spool"


def frame(payload: bytes) -> bytes:
    """One record as written to disk: header, payload, newline."""
    if b"\n" in payload:
        raise ValueError("a spool payload must not contain a raw newline")
    return b"%s%08x %08x %s\n" % (MAGIC, len(payload), zlib.crc32(payload), payload)


def encode_record(record: Record) -> bytes:
    """The framed bytes of one record."""
    return frame(_encoder.encode(record))


# ---------------------------------------------------------------------------------------------
# Writing


class SpoolFile(Protocol):
    """Where a :class:`SpoolWriter` puts its bytes: one file, one writer."""

    path: str

    def write(self, data: bytes) -> None:
        """Write all of ``data`` at the end of the file (one ``write()`` where possible)."""

    def sync(self) -> None:
        """Make everything written so far durable."""

    def close(self) -> None: ...


class OsSpoolFile:
    """A spool file on a real filesystem.

    Created with ``O_CREAT|O_EXCL`` (a writer never appends to a file it did not create) and
    ``O_NOFOLLOW``; the directory is fsynced after creation so the file's name is durable too.
    """

    def __init__(self, path: str, mode: int = 0o600) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            self._fd = os.open(path, flags, mode)
        except OSError as exc:
            raise SpoolError(f"cannot create spool file {path}: {exc.strerror}") from exc
        # umask may have narrowed the mode; a configured group mode must still hold.
        os.fchmod(self._fd, mode)
        self._dir_synced = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            # A short write to a regular file is rare (signal, quota); the rest follows at once
            # and a reader meanwhile sees a torn tail, which it treats as "not yet".
            n = os.write(self._fd, view)
            view = view[n:]

    def sync(self) -> None:
        os.fsync(self._fd)
        if not self._dir_synced:
            dfd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            except OSError as exc:  # some network filesystems refuse fsync on directories
                if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
                    raise
            finally:
                os.close(dfd)
            self._dir_synced = True

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            # NFS reports deferred write errors at close(); they must not pass silently.
            os.close(fd)


class SpoolWriter:
    """Appends events of one launch to a spool file of its own.

    Use as a context manager::

        with SpoolWriter(launch_dir, launch_id=42, fw_id=7) as w:
            w.append(Started(started_on=utcnow(), host="nid001", ip="10.0.0.1"))

    ``append`` is thread-safe (FireWorks pings from a thread). Started, completed, exited and
    launch-dir events are fsynced before ``append`` returns; pings and checkpoints are not
    (the next durable event or the OS writes them soon; losing the last ping in a power cut only
    makes a live job look a little older).
    """

    def __init__(
        self,
        launch_dir: str,
        launch_id: int,
        fw_id: int | None = None,
        *,
        writer_id: str | None = None,
        mode: int = 0o600,
        clock: Callable[[], object] = utcnow,
        opener: Callable[[str, int], SpoolFile] = OsSpoolFile,
    ) -> None:
        self.writer_id = writer_id or secrets.token_hex(16)
        if not re.fullmatch(r"[0-9a-f]{32}", self.writer_id):
            raise SpoolError(f"writer id must be 32 lowercase hex digits, got {self.writer_id!r}")
        self.launch_id = launch_id
        self.fw_id = fw_id
        self.seq = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._file = opener(os.path.join(launch_dir, spool_file_name(self.writer_id)), mode)

    @property
    def path(self) -> str:
        return self._file.path

    def append(self, event: Event, *, durable: bool | None = None) -> Record:
        """Append one event; returns the record written. ``durable`` overrides the default."""
        with self._lock:
            record = Record(
                v=RECORD_VERSION,
                writer=self.writer_id,
                seq=self.seq + 1,
                launch_id=self.launch_id,
                fw_id=self.fw_id,
                at=self._clock(),  # type: ignore[arg-type]
                event=event,
            )
            self._file.write(encode_record(record))
            self.seq += 1
            if durable if durable is not None else type(event).__struct_config__.tag in DURABLE_TYPES:
                self._file.sync()
            return record

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Reading


class Frame(NamedTuple):
    """A complete record found in a file: where it starts and its payload.

    A named tuple rather than a dataclass: a large ingest makes one per record.
    """

    offset: int
    length: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes that are not, and can never become, a valid record."""

    offset: int
    length: int
    reason: str


@dataclass(slots=True)
class ScanResult:
    frames: list[Frame] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    #: Bytes of the buffer that are settled (frames and damage); the rest is read again later.
    consumed: int = 0
    #: What stopped the scan before the end of the buffer.
    #: "" (all consumed), "need_more" (read more of the file first), "torn" (wait for the writer).
    stop: str = ""


_OK, _SHORT, _BAD = 0, 1, 2


def _parse_at(buf: bytes, pos: int, max_record: int) -> tuple[int, int, str]:
    """Classify the bytes at ``pos``: (_OK, end, ""), (_SHORT, 0, "") or (_BAD, 0, reason)."""
    n = len(buf)
    avail = n - pos
    if avail < HEADER_LEN:
        head = buf[pos:n]
        if not MAGIC.startswith(head[: len(MAGIC)]):
            return _BAD, 0, "bad magic"
        for i in range(len(MAGIC), len(head)):
            c = head[i]
            if i in (13, 22):
                if c != 0x20:
                    return _BAD, 0, "bad header"
            elif c not in _HEX:
                return _BAD, 0, "bad header"
        return _SHORT, 0, ""
    if buf[pos : pos + 5] != MAGIC:
        return _BAD, 0, "bad magic"
    if buf[pos + 13] != 0x20 or buf[pos + 22] != 0x20:
        return _BAD, 0, "bad header"
    try:
        length = int(buf[pos + 5 : pos + 13], 16)
        crc = int(buf[pos + 14 : pos + 22], 16)
    except ValueError:
        return _BAD, 0, "bad header"
    if not (_HEX.issuperset(buf[pos + 5 : pos + 13]) and _HEX.issuperset(buf[pos + 14 : pos + 22])):
        return _BAD, 0, "bad header"
    if length > max_record:
        return _BAD, 0, f"record too large ({length} bytes > limit {max_record})"
    start = pos + HEADER_LEN
    end = start + length + 1
    if end > n or buf[end - 1] != 0x0A:
        # A newline inside the declared body cuts the record short whether or not this read
        # reached its declared end: the reason must not depend on how much of the file one read saw.
        if buf.find(b"\n", start, min(end - 1, n)) != -1:
            return _BAD, 0, "record cut short by a newline"
        if end > n:
            return _SHORT, 0, ""
        return _BAD, 0, "missing record terminator"
    if zlib.crc32(buf[start : end - 1]) != crc:
        return _BAD, 0, "checksum mismatch"
    return _OK, end, ""


def _next_valid(buf: bytes, start: int, max_record: int) -> int:
    """Offset of the next complete, valid record at or after ``start``; -1 if none."""
    pos = buf.find(MAGIC, start)
    while pos != -1:
        if _parse_at(buf, pos, max_record)[0] == _OK:
            return pos
        pos = buf.find(MAGIC, pos + 1)
    return -1


def _first_short(buf: bytes, start: int, max_record: int) -> int:
    """Offset of the first place at or after ``start`` where a record may still be in progress."""
    n = len(buf)
    pos = buf.find(MAGIC, start)
    while pos != -1:
        if _parse_at(buf, pos, max_record)[0] == _SHORT:
            return pos
        pos = buf.find(MAGIC, pos + 1)
    # A magic cut off by the end of the buffer ("F", "FW", ...).
    for k in range(min(len(MAGIC) - 1, n - start), 0, -1):
        if buf.endswith(MAGIC[:k]):
            return n - k
    return -1


def _could_fill(buf: bytes, pos: int, stop: int, max_record: int) -> bool:
    """Whether ``buf[pos:stop]``, which runs to the end of the data, holds NUL bytes and could still
    become valid records once they are written: a hole an NFS client has not filled in yet.

    NUL bytes match anything; every other byte must fit the record layout (magic, header, no
    newline inside a payload, the terminator), and a complete record without a NUL byte must carry
    its checksum.
    """
    if buf.find(b"\0", pos, stop) == -1:
        return False
    p = pos
    while p < stop:
        head = buf[p : min(p + HEADER_LEN, stop)]
        for i, c in enumerate(head):
            if c == 0:
                continue
            if i < len(MAGIC):
                if c != MAGIC[i]:
                    return False
            elif i in (13, 22):
                if c != 0x20:
                    return False
            elif c not in _HEX:
                return False
        if p + HEADER_LEN > stop:
            return True
        length_field = buf[p + 5 : p + 13]
        if 0 in length_field:
            return True  # the length is not written yet: what follows may all be this record
        length = int(length_field, 16)
        if length > max_record:
            return False
        start = p + HEADER_LEN
        end = start + length + 1
        if buf.find(b"\n", start, min(end - 1, stop)) != -1:
            return False
        if end > stop:
            return True
        if buf[end - 1] not in (0x0A, 0):
            return False
        if buf.find(b"\0", p, end) == -1 and zlib.crc32(buf[start : end - 1]) != int(
            buf[p + 14 : p + 22], 16
        ):
            return False
        p = end
    return True


def _fillable_start(buf: bytes, pos: int, stop: int, max_record: int) -> int:
    """The first offset in ``[pos, stop)`` from which the bytes up to ``stop`` (the end of the data)
    could still become valid records once a hole of NUL bytes is filled in; -1 if none."""
    if buf.find(b"\0", pos, stop) == -1:
        return -1
    if _could_fill(buf, pos, stop, max_record):
        return pos
    # A later record starts with its magic, or inside a hole (best guess: where the hole
    # starts). A bounded number of guesses: this only decides how much of a damaged tail waits.
    candidates: set[int] = set()
    i = buf.find(MAGIC, pos + 1, stop)
    while i != -1 and len(candidates) < 64:
        candidates.add(i)
        i = buf.find(MAGIC, i + 1, stop)
    for k, m in enumerate(_NUL_RUN.finditer(buf, pos + 1, stop)):
        if k >= 64:
            break
        candidates.add(m.start())
    for q in sorted(candidates):
        if _could_fill(buf, q, stop, max_record):
            return q
    return -1


def scan(buf: bytes, at_eof: bool, max_record: int = DEFAULT_MAX_RECORD, base: int = 0) -> ScanResult:
    """Split ``buf`` (file bytes from a committed offset) into frames and damage.

    Rules (schema/SPOOL.md, "Reading"): bytes are declared damaged only when they can never
    become a valid record — a valid record follows them, or they cannot be the start of a record
    still being written. Anything that may still grow (a short record, a run of NUL bytes that an
    NFS client has not filled in yet) is a torn tail: "not yet", never an error.

    ``base`` is the file offset of ``buf[0]``: every offset in the result (frames, damage and
    ``consumed``) is ``base`` plus the position in ``buf``.
    """
    res = ScanResult()
    frames = res.frames
    n = len(buf)
    pos = 0
    limit = HEADER_LEN + max_record + 1  # the longest any single record can be
    header = _HEADER_RE.match
    crc32 = zlib.crc32
    new = tuple.__new__  # Frame(...) without the Python-level __new__ of a named tuple
    while pos < n:
        # Fast path: a complete, valid record (exactly what _parse_at calls _OK).
        m = header(buf, pos)
        if m is not None:
            length_hex, crc_hex = m.groups()
            length = int(length_hex, 16)
            start = pos + HEADER_LEN
            end = start + length + 1
            if length <= max_record and end <= n and buf[end - 1] == 0x0A:
                payload = buf[start : end - 1]
                if crc32(payload) == int(crc_hex, 16):
                    frames.append(new(Frame, (base + pos, end - pos, payload)))
                    pos = end
                    continue
        kind, end, reason = _parse_at(buf, pos, max_record)
        if kind == _OK:
            frames.append(Frame(base + pos, end - pos, buf[pos + HEADER_LEN : end - 1]))
            pos = end
            continue
        nxt = _next_valid(buf, pos + 1, max_record)
        if nxt != -1:
            res.damage.append(
                Damage(base + pos, nxt - pos, reason or "torn record followed by later records")
            )
            pos = nxt
            continue
        if kind == _SHORT:
            res.stop = "need_more" if not at_eof else "torn"
            break
        # Damaged bytes with no valid record after them (yet).
        if not at_eof:
            # Nothing before (n - limit) can belong to a record that completes later.
            cut = n - limit
            if cut > pos:
                res.damage.append(Damage(base + pos, cut - pos, reason))
                pos = cut
            res.stop = "need_more"
            break
        cand = _first_short(buf, pos + 1, max_record)
        stop_at = cand if cand != -1 else n
        fill = _fillable_start(buf, pos, stop_at, max_record)
        if fill != -1:
            # NUL bytes that may be a hole an NFS client has not filled in yet (alone, or inside
            # a record whose other bytes fit): wait. Only what comes before it is damage.
            if fill > pos:
                res.damage.append(Damage(base + pos, fill - pos, reason))
                pos = fill
            res.stop = "torn"
            break
        res.damage.append(Damage(base + pos, stop_at - pos, reason))
        pos = stop_at
        if cand != -1:
            res.stop = "torn"
            break
    res.consumed = base + pos
    return res


class SourceFile(Protocol):
    """Read access to one file being ingested (real, or fault-injecting in tests)."""

    def pread(self, size: int, offset: int) -> bytes: ...

    def close(self) -> None: ...


class OsSourceFile:
    """A file opened for reading without following a symlink at its last component."""

    def __init__(self, path: str) -> None:
        self.path = path
        # O_NONBLOCK: a FIFO planted under a spool file's name must not hang the reader.
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)

    def fstat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class SpoolReader:
    """Reads one spool file from a committed offset to EOF, in bounded chunks.

    Iterating yields one :class:`ScanResult` per chunk with offsets made absolute; after the
    loop, :attr:`offset` is where the next pass starts and :attr:`torn` says whether bytes are
    waiting there. Memory stays within about two chunks plus one maximal record.
    """

    def __init__(
        self,
        source: SourceFile,
        offset: int,
        *,
        max_record: int = DEFAULT_MAX_RECORD,
        chunk: int = 4 * 1024 * 1024,
    ) -> None:
        self.source = source
        self.offset = offset
        self.max_record = max_record
        self.chunk = chunk
        self.torn = False

    def __iter__(self) -> Iterator[ScanResult]:
        buf = b""
        base = self.offset  # file offset of buf[0]
        read_at = self.offset
        while True:
            want = max(self.chunk, len(buf))
            data = self.source.pread(want, read_at)
            at_eof = len(data) == 0
            if data:
                buf = buf + data if buf else data
                read_at += len(data)
            # Short read: probably EOF, but only an empty read proves it; loop once more.
            res = scan(buf, at_eof=at_eof, max_record=self.max_record, base=base)
            buf = buf[res.consumed - base :]
            base = self.offset = res.consumed
            if res.frames or res.damage:
                yield res
            if at_eof:
                self.torn = bool(buf)
                return
