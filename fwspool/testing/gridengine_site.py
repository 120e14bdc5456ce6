"""A FireWorks user's site on the private Grid Engine cell (fwspool.testing.gridengine): the
launchpad and FWorker files as for Slurm (:class:`fwspool.testing.slurm_site.Site`), and the
SGE queue adapter and job template of docs/batch-systems.md, word for word but for the home directory."""

from __future__ import annotations

from pathlib import Path

from fwspool.testing.docs import code_blocks, doc_section
from fwspool.testing.gridengine import DevGridEngine
from fwspool.testing.slurm_site import Site

__all__ = ["README_HOME", "GridEngineSite", "readme_sge_files"]

#: How the documented SGE queue adapter spells the user's home directory.
README_HOME = "/home/you"


def readme_sge_files() -> tuple[str, str]:
    """The documented SGE ``my_qadapter.yaml`` and its ``SGE_template.txt`` ("Batch systems",
    docs/batch-systems.md)."""
    section = doc_section("Batch systems")
    [qadapter] = code_blocks(section, "yaml")
    [template] = [block for block in code_blocks(section, "sh") if block.startswith("#!/bin/bash\n#$ ")]
    return qadapter, template


class GridEngineSite(Site):
    """A user's ``$HOME/fw``, as for Slurm, whose queue adapter is the documented SGE one
    (with ``rocket_launch_line`` appended, as docs/batch-systems.md says), and its job template beside it."""

    def __init__(
        self,
        tmp_path: Path,
        uri: str,
        db: str,
        cell: DevGridEngine,
        rocket_launch_line: str,
        qadapter_text: str,
        template_text: str,
        *,
        inbox: bool = False,
    ) -> None:
        self.cell = cell
        self.qadapter_text = qadapter_text
        self.template_text = template_text
        super().__init__(tmp_path, uri, db, cell, rocket_launch_line, inbox=inbox)

    def write_qadapter(self, pre_rocket: str | None = None, name: str = "my_qadapter.yaml") -> Path:
        (self.fw / "SGE_template.txt").write_text(self.template_text)
        text = self.qadapter_text.replace(README_HOME, str(self.home))
        if pre_rocket is not None:
            text = text.replace("pre_rocket: null", f"pre_rocket: {pre_rocket}")
        path = self.fw / name
        path.write_text(text + self.rocket_launch_line + "\n")
        return path
