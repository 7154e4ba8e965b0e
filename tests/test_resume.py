"""Kill a search with SIGKILL at an arbitrary step, resume it, and get the uninterrupted run.

Both runs are subprocesses with one torch thread; their run directories share a basename
(arch.mmnas's header names the run), so arch.mmnas must match byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _runkit import cli, make_data, tiny_spec_text, write_spec

from mmnasdsl.commands.run import search_cmd
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.train.runs import load_checkpoint

SEARCH = "warmup = 1  epochs = 2  update_ratio = 2  batch = 8  patience = 9"


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mmnasdsl", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after_a_checkpoint(proc: subprocess.Popen[str], ckpt: Path, delay: float) -> bool:
    """SIGKILL `proc` `delay` seconds after its first checkpoint; False if it ended first.

    A process killed after writing its final checkpoint (done) did not die mid-run either.
    """
    while not ckpt.exists():
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
            return False
        time.sleep(0.02)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return not load_checkpoint(ckpt)["state"]["done"]


def epochs_without_time(run: Path) -> list[dict]:
    epochs = json.loads((run / "history.json").read_text())["epochs"]
    return [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in epochs]


def test_sigkill_and_resume_match_an_uninterrupted_run(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", "vqa")
    spec, _ = write_spec(tmp_path, tiny_spec_text("vqa", search=SEARCH))
    args = [
        "search",
        str(spec),
        "--data",
        str(data),
        "--device",
        "cpu",
        "--quiet",
        "--checkpoint-every",
        "1",
        "--seed",
        "7",
    ]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = start([*args, "-o", "a/run"], tmp_path)
    killed = False
    for delay in (random.Random(0).uniform(0.05, 0.5), 0.02, 0.0):
        victim = start([*args, "-o", "b/run"], tmp_path)
        killed = kill_after_a_checkpoint(victim, tmp_path / "b/run/checkpoint.pt", delay)
        if killed:
            break
        (tmp_path / "b/run").rename(tmp_path / f"b/finished-{delay}")
    assert full.wait(timeout=300) == 0, full.stderr.read() if full.stderr else ""
    if not killed:
        pytest.skip("the search finished before it could be killed")
    state = load_checkpoint(tmp_path / "b/run/checkpoint.pt")["state"]
    assert not state["done"]  # it really died mid-run
    cli(*args, "-o", "b/run", "--resume", cwd=tmp_path)

    a, b = tmp_path / "a/run", tmp_path / "b/run"
    assert (a / "arch.mmnas").read_bytes() == (b / "arch.mmnas").read_bytes()
    assert epochs_without_time(a) == epochs_without_time(b)
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    for key in [k for k in ca["model"] if k.endswith("alpha")]:
        assert torch.allclose(ca["model"][key], cb["model"][key], atol=1e-6), key
    assert all(torch.allclose(ca["model"][k], cb["model"][k], atol=1e-6) for k in ca["model"])


def test_resume_refuses_other_flags(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", "vqa")
    spec, _ = write_spec(tmp_path, tiny_spec_text("vqa", search="warmup = 1  epochs = 0"))
    flags = {"data": str(data), "device": "cpu", "quiet": True, "out": tmp_path / "run"}
    search_cmd(spec, **flags)
    with pytest.raises(UsageError, match="seed differs"):
        search_cmd(spec, **flags, resume=True, seed=3)
    proc = cli("search", str(spec), "--data", str(data), "-o", "run", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "not empty" in proc.stderr and "Traceback" not in proc.stderr
