"""The formats written down in schema/ are the ones the code produces."""

from __future__ import annotations

import json
import os
import re
import sqlite3

import msgspec

from fwspool import events
from fwspool.journal import Journal, schema_sql
from fwspool.spool import HEADER_LEN, MAGIC, SpoolWriter

SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schema")


def read(name: str) -> str:
    with open(os.path.join(SCHEMA, name), encoding="utf-8") as f:
        return f.read()


def test_event_schema_file_is_generated_from_the_code():
    assert read("event.schema.json") == events.json_schema_text(), (
        "schema/event.schema.json is stale: python -m fwspool.events > schema/event.schema.json"
    )


def test_journal_sql_file_is_generated_from_the_code():
    assert read("journal.sql") == schema_sql(), (
        "schema/journal.sql is stale: python -c 'from fwspool.journal import schema_sql; "
        'print(schema_sql(), end="")\' > schema/journal.sql'
    )


def _shape(conn: sqlite3.Connection) -> dict[str, object]:
    shape: dict[str, object] = {}
    for name, kind in conn.execute("SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
        if kind in ("table", "view"):
            shape[name] = (kind, [tuple(r) for r in conn.execute(f'PRAGMA table_info("{name}")')])
        else:
            shape[name] = (kind,)
    return shape


def test_journal_sql_builds_the_same_database_as_the_code(journal_path):
    Journal.open(journal_path).close()
    from_code = sqlite3.connect(journal_path)
    from_file = sqlite3.connect(":memory:")
    from_file.executescript(read("journal.sql"))
    assert _shape(from_file) == _shape(from_code)


def test_every_event_type_is_documented_in_spool_md():
    doc = read("SPOOL.md")
    for tag in events.EVENT_TYPES:
        assert f"| `{tag}` |" in doc, tag


def test_spool_md_header_layout_matches_the_code(tmp_path):
    doc = read("SPOOL.md")
    assert f"{MAGIC.decode().strip()} <length> <crc> <payload>" in doc
    assert HEADER_LEN == 23 and "cut -c24-" in doc
    with SpoolWriter(str(tmp_path), launch_id=3, fw_id=4) as w:
        w.append(events.Ping(ping_time=events.utcnow()))
    line = open(w.path, "rb").read()
    m = re.fullmatch(rb"FWS1 ([0-9a-f]{8}) ([0-9a-f]{8}) (.*)\n", line, re.S)
    assert m is not None
    payload = m.group(3)
    assert int(m.group(1), 16) == len(payload)
    record = msgspec.json.decode(payload, type=events.Record)
    assert record.seq == 1 and record.launch_id == 3 and record.fw_id == 4


def test_spool_records_validate_against_the_json_schema(tmp_path):
    """Each record's payload satisfies schema/event.schema.json (checked with a small validator
    for the parts the schema uses: required fields and event type tags)."""
    schema = json.loads(read("event.schema.json"))
    record_def = schema["$defs"]["Record"]
    tags = set()
    for ref in schema["$defs"]["Record"]["properties"]["event"]["anyOf"]:
        name = ref["$ref"].split("/")[-1]
        tags.add(schema["$defs"][name]["properties"]["type"]["enum"][0])
    assert tags == set(events.EVENT_TYPES)
    with SpoolWriter(str(tmp_path), launch_id=1) as w:
        w.append(events.Started(started_on=events.utcnow(), host="n1", ip="10.0.0.1"))
        w.append(events.Completed(state="FIZZLED", action={"stored_data": {}}, completed_on=events.utcnow()))
        w.append(events.Exited(signal=15, signal_name="SIGTERM"))
    for line in open(w.path, "rb"):
        payload = json.loads(line[HEADER_LEN:])
        assert set(record_def["required"]) <= set(payload)
        assert payload["event"]["type"] in tags


def _table_fields(doc: str, heading: str) -> set[str]:
    """The first column of the first table after ``heading``."""
    part = doc.split(heading, 1)[1]
    rows = []
    for line in part.split("\n| field |", 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip().strip("`"))
    return set(rows)


def test_block_md_documents_the_manifest_fields_of_the_code():
    from fwspool.block import BlockLaunch, BlockManifest

    doc = read("BLOCK.md")
    assert _table_fields(doc, "## Fields") == set(BlockManifest.__struct_fields__)
    assert _table_fields(doc, "Each element of `launches`") == set(BlockLaunch.__struct_fields__)
    assert "`fwspool-block.json`" in doc and "version 1" in doc
