"""The test cluster: a SecantusDB server, workload templates, and each trial's own instance.

A :class:`Cluster` is everything a chaos run shares: a temporary directory, a server, the
templates (a reserved LaunchPad and its golden spool files, built once) and the snapshots of
clean runs. An :class:`Instance` is one trial's clone of a template: its own LaunchPad database,
launch directories and journal, and the ``fwspool`` command lines that run on them.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fwspool.spool import SPOOL_NAME_RE
from fwspool.testing.chaos.processes import Proc, child_env, fwspool_cmd, run, start
from fwspool.testing.chaos.progress import log
from fwspool.testing.chaos.workload import Template, build_template, content_key, frames_only, held_exits
from fwspool.testing.launchpad import COLLECTIONS, db_snapshot


def clone_db(src: Any, dst: Any, remap: Callable[[str], str]) -> None:
    """Copy a LaunchPad database (documents and indexes), rewriting launch directories."""
    for coll in COLLECTIONS:
        docs = list(src[coll].find())
        if coll == "launches":
            for d in docs:
                if d.get("launch_dir"):
                    d["launch_dir"] = remap(d["launch_dir"])
        if docs:
            dst[coll].insert_many(docs)
        for name, info in src[coll].index_information().items():
            if name == "_id_":
                continue
            kwargs = {k: v for k, v in info.items() if k in ("unique", "sparse", "background")}
            dst[coll].create_index(info["key"], name=name, **kwargs)


def drop_database(uri: str, db: str) -> None:
    """Drop a trial's own database (a scenario that makes its LaunchPads itself)."""
    import pymongo

    client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
    try:
        client.drop_database(db)
    finally:
        client.close()


@dataclass
class Instance:
    tpl: Template
    root: str
    db: str
    uri: str
    journal: str
    logdir: str
    tag: str

    @property
    def launches_root(self) -> str:
        return os.path.join(self.root, "launches")

    def env(self, **extra: str) -> dict[str, str]:
        settings = {
            "FWSPOOL_JOURNAL": self.journal,
            "FWSPOOL_MONGODB_URI": self.uri,
            "FWSPOOL_MONGODB_NAME": self.db,
            "FWSPOOL_INBOX": os.path.join(self.root, "inbox"),
        }
        return child_env(**{**settings, **extra})

    def ingest(self, *extra: str) -> list[str]:
        return fwspool_cmd("ingest", "--root", self.launches_root, *extra)

    def push(self, *extra: str, uri: str | None = None) -> list[str]:
        return fwspool_cmd("push", "--uri", uri or self.uri, "--name", self.db, *extra)

    def run(self, cmd: Sequence[str], name: str, timeout: float = 240.0, **kw: Any) -> Proc:
        return run(cmd, self.logdir, name, timeout, env=kw.pop("env", None) or self.env(), **kw)

    def start(self, cmd: Sequence[str], name: str, **kw: Any) -> Proc:
        return start(cmd, self.logdir, name, env=kw.pop("env", None) or self.env(), **kw)


class Cluster:
    """Everything a chaos run shares: a temporary directory, a SecantusDB server, templates and
    the snapshots of clean runs (keyed by the spool content they were made from)."""

    def __init__(self, root: str | None = None, keep: bool = False) -> None:
        self.own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="fwspool-chaos-")
        self.keep = keep
        self.server: Any = None
        self.templates: dict[str, Template] = {}
        self.references: dict[str, dict[str, Any]] = {}
        self.push_counts: dict[str, tuple[int, float]] = {}
        #: Scenarios share two workloads instead of each having its own (the short run).
        self.shared_templates = False
        self._n = 0

    # -- servers ---------------------------------------------------------------------------

    def start(self) -> Cluster:
        from fwspool.devserver import DevServer

        if self.server is None:
            os.makedirs(os.path.join(self.root, "mongo"), exist_ok=True)
            self.server = DevServer(os.path.join(self.root, "mongo", "data")).start()
        return self

    @property
    def uri(self) -> str:
        return str(self.server.uri)

    def own_server(self, name: str, *extra_args: str) -> Any:
        """A server of a scenario's own, to kill and restart (``--enable-test-commands``: to
        inject faults with ``failCommand``)."""
        from fwspool.devserver import DevServer

        os.makedirs(os.path.join(self.root, f"mongo-{name}"), exist_ok=True)
        return DevServer(os.path.join(self.root, f"mongo-{name}", "data"), extra_args=extra_args).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- templates and instances -----------------------------------------------------------

    def template(
        self,
        seed: int,
        n_chain: int = 12,
        n_pair: int = 5,
        storm: bool = False,
        *,
        own: bool = False,
        golden: bool = True,
    ) -> Template:
        """A workload (built once). ``own``: this one even in the short run, where the scenarios
        otherwise share two (for a scenario that needs two different workloads at once);
        ``golden``: also write its golden spool files (a scenario whose instances have no spool
        files of the template's need none, and the template is built in a second)."""
        if self.shared_templates and not own:
            # The short run: two workloads for every scenario (building one costs seconds).
            seed, n_chain, n_pair = (11, 12, 5) if storm else (22, 8, 4)
        key = f"{seed}/{n_chain}/{n_pair}/{storm}" + ("" if golden else "/no-golden")
        if key not in self.templates:
            self.templates[key] = build_template(
                self.root, self.uri, seed, n_chain, n_pair, storm, golden=golden
            )
        return self.templates[key]

    def instance(
        self,
        tpl: Template,
        tag: str,
        *,
        spool: bool = True,
        uri: str | None = None,
        parent: str | None = None,
        db: str | None = None,
    ) -> Instance:
        """A clone of the template: its launch directories (with the golden spool files unless
        not ``spool``) under ``parent`` (default: the cluster's ``trials``), its LaunchPad in a
        new database, or in ``db``, which must hold no LaunchPad documents (one reset and
        emptied)."""
        import pymongo

        self._n += 1
        root = os.path.join(parent or os.path.join(self.root, "trials"), f"{tag}-{self._n}")
        src_launches = os.path.join(tpl.root, "launches")

        def ignore(d: str, names: list[str]) -> list[str]:
            return [n for n in names if not spool and SPOOL_NAME_RE.match(n)]

        shutil.copytree(src_launches, os.path.join(root, "launches"), ignore=ignore)
        db = db or f"{tag.replace('-', '_')}_{self._n}_{random.randrange(16**6):06x}"[:60]
        uri = uri or self.uri
        src: Any = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=20000)
        dst: Any = src if uri == self.uri else pymongo.MongoClient(uri, serverSelectionTimeoutMS=20000)
        try:
            clone_db(src[tpl.db], dst[db], lambda p: p.replace(tpl.root, root, 1))
        finally:
            src.close()
            if dst is not src:
                dst.close()
        journal = os.path.join(root, "journal", "journal.sqlite3")
        os.makedirs(os.path.dirname(journal), exist_ok=True)
        return Instance(tpl, root, db, uri, journal, os.path.join(root, "logs"), tag)

    def dispose(self, inst: Instance, failed: bool = False) -> None:
        import pymongo

        if failed or self.keep:
            log(f"kept {inst.root} (database {inst.db})")
            return
        with contextlib.suppress(Exception):
            client: Any = pymongo.MongoClient(inst.uri, serverSelectionTimeoutMS=3000)
            client.drop_database(inst.db)
            client.close()
        shutil.rmtree(inst.root, ignore_errors=True)

    # -- clean runs ------------------------------------------------------------------------

    def reference(self, tpl: Template, files: dict[str, bytes]) -> dict[str, Any]:
        """The LaunchPad a clean, fault-free run produces from these spool files (each reduced
        to its valid frames): a fresh clone of the template, one ingest, one push, in-process."""
        from fwspool.config import LaunchPadConfig
        from fwspool.ingest import Ingester
        from fwspool.journal import Journal
        from fwspool.push import Pusher
        from fwspool.uplink import MongoUplink

        files = frames_only(files, drop=held_exits(files))
        key = tpl.key + "/" + content_key(files)
        if key in self.references:
            return self.references[key]
        inst = self.instance(tpl, "ref", spool=False)
        try:
            for rel, data in files.items():
                os.makedirs(os.path.dirname(os.path.join(inst.launches_root, rel)), exist_ok=True)
                with open(os.path.join(inst.launches_root, rel), "wb") as f:
                    f.write(data)
            with Journal.open(inst.journal) as journal:
                Ingester(journal, roots=[inst.launches_root]).run_pass()
                uplink = MongoUplink(
                    LaunchPadConfig({"host": inst.uri, "uri_mode": True, "name": inst.db}, "chaos")
                )
                try:
                    summary = Pusher(journal, uplink).run_pass()
                finally:
                    uplink.close()
            if summary.problems:
                log(f"clean run problems: {summary.problems[:3]}")
            import pymongo

            client: Any = pymongo.MongoClient(inst.uri)
            snap = db_snapshot(client[inst.db], tpl.first_new_fw_id)
            client.close()
        finally:
            self.dispose(inst)
        self.references[key] = snap
        return snap
