"""Every value FireWorks stores survives fwspool's trip unchanged: NaN and ±Infinity included.

JSON has no NaN or Infinity, so a JSON encoder writes null (msgspec) or bare words that strict
JSON rejects (Python's json, in FireWorks' own ``FW_offline.json``). Spool records of version 2
spell them as MongoDB Extended JSON does (``{"$numberDouble": "NaN"}``) and the pusher gives the
LaunchPad the floats back, as FireWorks' own path (BSON) keeps them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, ScriptTask, Workflow
from fw_tasks import NonFiniteTask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fwspool.events import Completed, Started, tag_nonfinite, untag_nonfinite, utcnow
from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.reserve import reserve_offline
from fwspool.spool import SpoolWriter
from fwspool.testing.commands import run_fireworks_offline, run_fwspool
from fwspool.testing.journal_file import ingest_and_push
from fwspool.testing.launchpad import recover_offline, snapshot

#: What BSON stores of JSON-like data: null, booleans, 64-bit integers, every double, strings,
#: arrays and documents (keys without NUL; FireWorks' own keys never start with "$").
BSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(st.characters(blacklist_characters="\0$", blacklist_categories=("Cs",)), max_size=8),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (and -0.0 stays distinct from 0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=BSON_VALUES)
def test_any_value_goes_through_spool_and_journal_to_the_pusher_unchanged(
    tmp_path_factory: Any, value: Any
) -> None:
    root = tmp_path_factory.mktemp("spool")
    d = root / "launch"
    d.mkdir()
    with SpoolWriter(str(d), 1, 1) as w:
        w.append(Started(started_on=utcnow()))
        w.append(
            Completed(
                state="COMPLETED", action={"stored_data": {"v": tag_nonfinite(value)}}, completed_on=utcnow()
            )
        )
    with Journal.open(str(root / "j.sqlite3")) as journal:
        Ingester(journal, roots=[str(root)]).run_pass()
        (launch,) = journal.pending_launches(None, 10)
    completed = next(e for e in launch.events if e.type == "completed")
    assert same(untag_nonfinite(completed.payload)["action"]["stored_data"]["v"], value)


#: Any JSON-like value Python's json writes: NaN, Infinity, big integers, lone surrogates too.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES, ascii_only=st.booleans())
@example(value=["\ud800", float("nan"), 1e308 * 10, 2**70], ascii_only=False)
def test_the_push_reads_a_payload_as_json_loads_does(value: Any, ascii_only: bool) -> None:
    """The push decodes each pending payload with msgspec (faster), and with json.loads what
    msgspec refuses: the values are json.loads' either way."""
    from fwspool.journal.outbox import decode_payload

    text = json.dumps(value, ensure_ascii=ascii_only)
    assert same(decode_payload(text), json.loads(text))


def test_version_1_records_keep_being_read(tmp_path: Path) -> None:
    from fwspool.events import Record
    from fwspool.spool import encode_record, spool_file_name

    d = tmp_path / "launch"
    d.mkdir()
    writer = "ab" * 16
    now = utcnow()
    old = Record(v=1, writer=writer, seq=1, launch_id=1, at=now, event=Started(started_on=now))
    (d / spool_file_name(writer)).write_bytes(encode_record(old))
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        summary = Ingester(journal, roots=[str(tmp_path)]).run_pass()
    assert (summary.new_events, summary.quarantined) == (1, 0)


def wf() -> Workflow:
    a = Firework(NonFiniteTask(), name="nonfinite", fw_id=1)
    b = Firework(ScriptTask.from_str("echo next"), name="next", parents=[a], fw_id=2)
    return Workflow([a, b], name="floats")


def as_text(snap: dict[str, Any]) -> str:
    """A snapshot compared as text: Python's json writes NaN as NaN, so NaN equals NaN here."""
    return json.dumps(snap, sort_keys=True, default=str)


@pytest.mark.parametrize("compute_side", ["fwspool rlaunch", "FireWorks' own rlaunch --offline"])
def test_nan_and_infinity_reach_the_launchpad_as_floatss_as_through_recover_offline(
    twins: Any, tmp_path: Path, journal_path: str, mongo_uri: str, compute_side: str
) -> None:
    ref, fws = twins
    for lp in twins:
        lp.add_wf(wf())
    ref_dir, fws_dir = str(tmp_path / "ref"), str(tmp_path / "fws")
    reserve_offline(ref, ref_dir)
    reserve_offline(fws, fws_dir)
    assert run_fireworks_offline(ref_dir).returncode == 0
    res = run_fwspool(fws_dir) if compute_side == "fwspool rlaunch" else run_fireworks_offline(fws_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    recover_offline(ref)
    summary = ingest_and_push(journal_path, mongo_uri, fws.name, roots=(fws_dir,))
    assert summary.applied > 0
    stored = fws.launches.find_one({"launch_id": 1})["action"]["stored_data"]
    assert math.isnan(stored["nan"]) and stored["inf"] == math.inf and stored["ninf"] == -math.inf
    assert math.isnan(stored["nested"][0]) and stored["nested"][1] == {"x": -math.inf}
    assert fws.fireworks.find_one({"fw_id": 2})["spec"]["threshold"] == math.inf
    assert as_text(snapshot(fws, (fws_dir,))) == as_text(snapshot(ref, (ref_dir,)))


def test_spool_md_documents_the_spelling_and_the_version_the_code_writes() -> None:
    from fwspool.events import READABLE_VERSIONS, RECORD_VERSION

    doc = (Path(__file__).parent.parent / "schema" / "SPOOL.md").read_text()
    for value in (math.nan, math.inf, -math.inf):
        assert f"`{json.dumps(tag_nonfinite(value))}`" in doc
    assert f'{{"v": {RECORD_VERSION}, "writer"' in doc
    assert f"record version {RECORD_VERSION}" in doc
    assert set(READABLE_VERSIONS) == {1, RECORD_VERSION}
