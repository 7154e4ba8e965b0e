"""bench/step.py: its JSON holds what issue 16 asks of it, and it refuses what it cannot run.

The bench itself is not a test (it times paper-scale steps); here it runs at a toy width
so that its records' shape, the alternation of precisions and the refusals are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._specs import ROOT

STEP = ROOT / "bench" / "step.py"
REFERENCE_STEP = ROOT / "bench" / "reference_step.py"


def run_step(*args: str, script: Path = STEP) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's package, installed or not
        timeout=600,
    )


def test_json_has_one_record_per_width_arch_precision(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    r = run_step(
        *("--widths", "32", "--batch", "2", "--steps", "1", "--threads", "1"),
        *("--arch", "mcan", "rsa", "--peak-size", "128", "--json", str(out)),
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(out.read_text())
    recs = info["results"]
    assert [(x["d_model"], x["arch"], x["precision"]) for x in recs] == [
        (32, "mcan", "fp32"),
        (32, "rsa", "fp32"),
    ]
    for rec in recs:
        for step in ("w_step", "theta_step"):
            assert rec[step]["seconds_median"] > 0
            assert rec[step]["share_of_peak"] > 0
        assert rec["peak_rss_gb"] >= rec["w_step"]["peak_rss_gb"] > 0
        assert rec["device"] == "cpu"
    assert info["peak_gflops"]["fp32"] > 0
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_cleanly() -> None:
    r = run_step("--device", "cuda", "--widths", "32", "--batch", "2")
    assert r.returncode == 2
    assert "no CUDA device" in r.stderr
    assert "Traceback" not in r.stderr


def test_tf32_on_a_cpu_is_refused_cleanly() -> None:
    r = run_step("--precision", "tf32", "--widths", "32", "--batch", "2")
    assert r.returncode == 2
    assert "CUDA setting" in r.stderr
    assert "Traceback" not in r.stderr


def test_reference_bench_without_a_snapshot_says_so(tmp_path: Path) -> None:
    """The reference's harness needs a snapshot of MILVLG/mmnas (never shipped here)."""
    r = run_step("--mmnas", str(tmp_path), script=REFERENCE_STEP)
    assert r.returncode == 2
    assert "no mmnas snapshot" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("flag", ["--peak-size", "--batch", "--steps", "--widths", "--threads"])
def test_a_size_below_one_is_refused_cleanly(flag: str) -> None:
    r = run_step(flag, "-3")
    assert r.returncode == 2
    assert "whole number >= 1" in r.stderr
    assert "Traceback" not in r.stderr
