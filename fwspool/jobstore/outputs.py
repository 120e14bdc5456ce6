"""A JobStore write as data: the documents of one ``Store.update``, inline or in a side file.

Documents travel as MongoDB Extended JSON (relaxed), so that what the pusher hands to the real
store is what the job handed to its store: dates stay dates, binary stays binary, NaN stays NaN.
A write larger than :data:`INLINE_LIMIT` goes to a side file of the launch directory named by
the SHA-256 of its bytes, written and fsynced before the ``completed`` record that names it: the
spool's record size never limits a blob, and a damaged or missing side file is detected by its
hash instead of written to the JobStore.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from bson import json_util

from fwspool.errors import DataError
from fwspool.events import StoreWrite

#: Writes larger than this (bytes of Extended JSON) go to a side file.
INLINE_LIMIT = 1 << 20

#: ``fwspool-blob-<sha256>.ejson``.
SIDE_FILE_PREFIX = "fwspool-blob-"

_OPTIONS = json_util.RELAXED_JSON_OPTIONS


def encode_docs(docs: list[dict[str, Any]]) -> str:
    """The documents as relaxed Extended JSON text."""
    return json_util.dumps(docs, json_options=_OPTIONS)


def decode_docs(text: str | bytes) -> list[dict[str, Any]]:
    """The documents :func:`encode_docs` wrote."""
    docs = json_util.loads(text, json_options=_OPTIONS)
    if not isinstance(docs, list):
        raise DataError("a JobStore write is not a list of documents")
    return docs


def record_writes(
    launch_dir: str, writes: list[tuple[str, list[str], list[dict[str, Any]]]], mode: int = 0o600
) -> list[StoreWrite]:
    """A job's writes (store, key, documents), inline while they fit :data:`INLINE_LIMIT`
    together (the record that carries them stays far below the spool's record limit, however
    many there are), the rest in side files."""
    recorded, inline = [], 0
    for store, key, docs in writes:
        write = record_write(launch_dir, store, key, docs, mode, room=INLINE_LIMIT - inline)
        inline += len(write.ejson or "")
        recorded.append(write)
    return recorded


def record_write(
    launch_dir: str,
    store: str,
    key: list[str],
    docs: list[dict[str, Any]],
    mode: int = 0o600,
    room: int = INLINE_LIMIT,
) -> StoreWrite:
    """One write, inline when it fits in ``room`` bytes, else in a durable side file of ``launch_dir``."""
    text = encode_docs(docs)
    data = text.encode()
    if len(data) <= room:
        return StoreWrite(store=store, key=key, ejson=text)
    digest = hashlib.sha256(data).hexdigest()
    name = f"{SIDE_FILE_PREFIX}{digest}.ejson"
    write_durably(os.path.join(launch_dir, name), data, mode)
    return StoreWrite(store=store, key=key, side_file=name, sha256=digest, size=len(data))


def read_write(write: StoreWrite, launch_dirs: list[str]) -> list[dict[str, Any]]:
    """The documents of a write, from the record or from its side file in one of ``launch_dirs``
    (checked against its hash); DataError when the side file is missing or damaged."""
    if write.side_file is None:
        return decode_docs(write.ejson or "[]")
    if os.sep in write.side_file or not write.side_file.startswith(SIDE_FILE_PREFIX):
        raise DataError(f"a JobStore write names {write.side_file!r}, not a side file")
    for launch_dir in launch_dirs:
        path = os.path.join(launch_dir, write.side_file)
        try:
            data = _read_side_file(path, write.size)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DataError(f"cannot read the JobStore side file {path}: {exc.strerror or exc}") from exc
        if hashlib.sha256(data).hexdigest() != write.sha256:
            raise DataError(f"the JobStore side file {path} is damaged (its SHA-256 is not the record's)")
        return decode_docs(data)
    raise DataError(f"the JobStore side file {write.side_file} is in none of {', '.join(launch_dirs)}")


def _read_side_file(path: str, size: int | None) -> bytes:
    """The side file's bytes: never through a symbolic link, and only when it has the size its
    record says (a file grown or swapped is not read into memory; the hash checks the rest)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        if os.fstat(fd).st_size != size:
            return b""  # fails the hash check: reported as damaged
        return f.read()


def write_durably(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write under a temporary name, fsync, rename, fsync the directory: readers never see half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass  # some network filesystems refuse fsync on directories
    finally:
        os.close(dfd)
