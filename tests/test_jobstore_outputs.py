"""A JobStore write as data (fwspool.jobstore.outputs) and the output cache (fwspool.jobstore.cache):
no server, no jobflow."""

from __future__ import annotations

import datetime as dt
import math
import os

import pytest

from fwspool.errors import DataError
from fwspool.events import StoreWrite
from fwspool.jobstore.cache import cached_outputs, put_outputs
from fwspool.jobstore.outputs import INLINE_LIMIT, SIDE_FILE_PREFIX, read_write, record_writes


def test_values_come_back_as_the_job_made_them(tmp_path):
    docs = [
        {
            "uuid": "u",
            "index": 1,
            "at": dt.datetime(2026, 12, 7, 3, 4, 5, 678000),
            "raw": b"\x00\x01",  # BSON binary, as MongoDB gives it back
            "nan": math.nan,
            "deep": {"list": [1, 2.5, None, "x"]},
        }
    ]
    (write,) = record_writes(str(tmp_path), [("docs", ["uuid", "index"], docs)])
    assert write.ejson is not None and write.side_file is None
    (back,) = read_write(write, [str(tmp_path)])
    assert math.isnan(back.pop("nan")) and math.isnan(docs[0].pop("nan"))
    assert back == docs[0]


def test_writes_stay_inline_only_while_they_fit_together(tmp_path):
    half = INLINE_LIMIT // 2 - 100
    writes = [("data", ["blob_uuid"], [{"blob_uuid": str(i), "data": "x" * half}]) for i in range(5)]
    recorded = record_writes(str(tmp_path), writes)
    assert [w.side_file is None for w in recorded] == [True, True, False, False, False]
    assert sum(len(w.ejson or "") for w in recorded) <= INLINE_LIMIT
    # The same content has the same name: the last three writes are three files, the hash theirs.
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith(SIDE_FILE_PREFIX))
    assert names == sorted(w.side_file for w in recorded if w.side_file)
    assert [read_write(w, [str(tmp_path)])[0]["blob_uuid"] for w in recorded] == ["0", "1", "2", "3", "4"]


def test_a_side_file_is_found_in_any_of_the_launch_directories_and_checked(tmp_path):
    first, moved = tmp_path / "first", tmp_path / "moved"
    first.mkdir()
    moved.mkdir()
    (write,) = record_writes(
        str(first), [("data", ["blob_uuid"], [{"blob_uuid": "b", "data": "y" * INLINE_LIMIT}])]
    )
    assert write.side_file is not None
    os.rename(first / write.side_file, moved / write.side_file)
    assert read_write(write, [str(first), str(moved)])[0]["blob_uuid"] == "b"
    with pytest.raises(DataError, match="is in none of"):
        read_write(write, [str(first)])
    path = moved / write.side_file
    os.symlink(path, first / write.side_file)
    with pytest.raises(DataError, match="cannot read the JobStore side file"):
        read_write(write, [str(first)])  # never through a symbolic link
    path.write_bytes(path.read_bytes()[:-2] + b"]]")
    with pytest.raises(DataError, match="is damaged"):
        read_write(write, [str(moved)])
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(DataError, match="is damaged"):
        read_write(write, [str(moved)])  # not the size its record says: not even read


def test_a_record_cannot_name_a_file_outside_its_launch_directory(tmp_path):
    bad = StoreWrite(store="docs", key=["uuid"], side_file="../fwspool-blob-x.ejson", sha256="0", size=1)
    with pytest.raises(DataError, match="not a side file"):
        read_write(bad, [str(tmp_path)])


def test_the_cache_keeps_each_output_by_job_and_index(tmp_path):
    cache = str(tmp_path / "cache")
    assert cached_outputs(cache, "job-a") is None
    put_outputs(cache, "job-a", 1, [("docs", [{"uuid": "job-a", "index": 1}])])
    put_outputs(
        cache, "job-a", 2, [("docs", [{"uuid": "job-a", "index": 2}]), ("data", [{"blob_uuid": "b"}])]
    )
    put_outputs(
        cache, "job-a", 2, [("docs", [{"uuid": "job-a", "index": 2}]), ("data", [{"blob_uuid": "b"}])]
    )
    assert cached_outputs(cache, "job-a") == [
        ("docs", [{"uuid": "job-a", "index": 1}]),
        ("docs", [{"uuid": "job-a", "index": 2}]),
        ("data", [{"blob_uuid": "b"}]),
    ]
    assert oct(os.stat(cache).st_mode & 0o777) == "0o700"
    with pytest.raises(DataError, match="not a job uuid"):
        cached_outputs(cache, "../etc")
