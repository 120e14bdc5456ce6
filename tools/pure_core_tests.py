"""Run the pure-core tests where no database server can start, and show that none did.

    python tools/pure_core_tests.py [pytest arguments]

The pure core (the run rules, the completion plan, the undo mark, the write set's bytes, the
lock token, the import graph, the CLI's options) is tested without a server. This runs those
files with SecantusDB unimportable (the only way tests/conftest.py starts a server) and
``FWSPOOL_TEST_MONGODB_URI`` naming a closed port, so a test that needed a server would fail,
not start one; it records every process pytest starts and exits 1 if one was a server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The test files of the pure core: each test in them runs on values alone.
PURE_CORE = ("tests/test_runs.py", "tests/test_plan.py", "tests/test_imports.py", "tests/test_cli_options.py")


def main(argv: list[str]) -> int:
    import pytest

    from fwspool.devserver import free_port

    sys.modules["secantus"] = None  # type: ignore[assignment]  # `import secantus` now fails
    os.environ["FWSPOOL_TEST_MONGODB_URI"] = (
        f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=200"
    )
    started: list[list[str]] = []
    popen_init = subprocess.Popen.__init__

    def recording_init(self: subprocess.Popen[bytes], args: object, *rest: object, **kw: object) -> None:
        started.append([str(a) for a in args] if isinstance(args, list | tuple) else [str(args)])
        popen_init(self, args, *rest, **kw)  # type: ignore[arg-type]

    subprocess.Popen.__init__ = recording_init  # type: ignore[assignment,method-assign]
    t = time.perf_counter()
    code = pytest.main(["-q", "-p", "no:cacheprovider", *[str(REPO / f) for f in PURE_CORE], *argv])
    seconds = time.perf_counter() - t
    servers = [cmd for cmd in started if any("secantus" in word for word in cmd)]
    print(
        f"pure core: {seconds:.1f} s; processes started: {len(started)}; database servers started: {len(servers)}"
    )
    return int(code) or (1 if servers else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
