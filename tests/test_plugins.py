"""Ops and searchers from another package load through entry points (`mmnasdsl.ops`,
`mmnasdsl.searchers`): a spec names the op, `--searcher` the searcher."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLUGIN = '''
from torch import nn
from mmnasdsl.ops import Op
from mmnasdsl.search.random import RandomSearcher


class Half(Op):
    """x / 2 (a plug-in op)."""

    @staticmethod
    def layers(s):
        return {}

    @staticmethod
    def transform(m, x, ctx):
        return x / 2

    @staticmethod
    def params(s):
        return 0


class FirstOnly(RandomSearcher):
    """Always the first candidate (a plug-in searcher)."""

    def candidate(self, generator):
        return [0] * len(self.space.sizes)
'''

ENTRY_POINTS = """[mmnasdsl.ops]
Half = halfplug:Half

[mmnasdsl.searchers]
firstonly = halfplug:FirstOnly
"""

SPEC = """model m { d_model = 16 heads = 2 }
input text = words(max_len = 16, embed = learned(8), lstm)
input image = objects(max = 12, dim = 64, relations = box4)
encoder text = SA | Half
decoder image(guide = text) = GA Half
head vqa
data shapes(scenes = 10, seed = 0)
search { warmup = 1  epochs = 0  batch = 16 }
"""


def plugin_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    (site / "halfplug-0.1.dist-info").mkdir(parents=True, exist_ok=True)
    (site / "halfplug.py").write_text(PLUGIN)
    (site / "halfplug-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: halfplug\nVersion: 0.1\n"
    )
    (site / "halfplug-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    return {
        **os.environ,
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": "1",
        "MMNASDSL_DATA": str(tmp_path),
    }


def run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmnasdsl", *args],
        cwd=tmp_path,
        env=plugin_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_plugin_op_and_searcher_load_by_entry_point(tmp_path: Path) -> None:
    (tmp_path / "p.mmnas").write_text(SPEC)
    ops = run(["ops"], tmp_path)
    assert ops.returncode == 0 and "Half" in ops.stdout and "a plug-in op" in ops.stdout
    check = run(["check", "p.mmnas"], tmp_path)
    assert check.returncode == 0, check.stderr
    assert "ok, 3 blocks (1 searchable)" in check.stdout, check.stdout
    search = run(["search", "p.mmnas", "-o", "run", "--searcher", "firstonly", "-q"], tmp_path)
    assert search.returncode == 0, search.stderr
    arch = (tmp_path / "run" / "arch.mmnas").read_text()
    assert "search (firstonly)" in arch and "encoder text = SA\n" in arch


def test_without_the_plugin_the_op_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "p.mmnas").write_text(SPEC)
    proc = subprocess.run(
        [sys.executable, "-m", "mmnasdsl", "check", "p.mmnas"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "unknown op or pool 'Half'" in proc.stderr
