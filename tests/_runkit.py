"""Tiny specs and data for the search / train / resume / DDP tests (seconds on 2 cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mmnasdsl
from mmnasdsl.data.shapes import generate
from mmnasdsl.lang.spec import Spec

HEADS = {
    "vqa": "head vqa(loss = bce)",
    "itm": "head itm(candidates = 6, top_k = 2)",
    "vg": "head vg",
}


def tiny_spec_text(
    task: str = "vqa", *, searchable: bool = True, search: str = "", train: str = ""
) -> str:
    """A width-16 model: 2 encoder and 2 decoder blocks (searchable: 2^2 * 4^2 archs)."""
    enc, dec = ("enc * 2", "dec * 2") if searchable else ("SA FFN", "GA RSA")
    search = search or "warmup = 1  epochs = 2  update_ratio = 2  batch = 16  patience = 3"
    train = train or "epochs = 2  batch = 16  lr = 0.002  warmup = 1  decay_at = [1]"
    return f"""model tiny {{ d_model = 16  heads = 2  ffn = 2x  dropout = 0.1 }}
input text = words(max_len = 16, embed = learned(8), lstm)
input image = objects(max = 12, dim = 64, relations = box4)
pool enc = SA | FFN
pool dec = SA | RSA | GA | FFN
encoder text = {enc}
decoder image(guide = text) = {dec}
{HEADS[task]}
data shapes(scenes = 10, seed = 0)
search {{ {search} }}
train {{ {train} }}
"""


def write_spec(folder: Path, text: str, name: str = "tiny.mmnas") -> tuple[Path, Spec]:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path, mmnasdsl.load(path)


def make_data(folder: Path, task: str, scenes: int = 10) -> Path:
    """Tiny shapes stores (10 scenes -> ~50 VQA questions), generated once per folder."""
    if not (folder / "test.h5").is_file():
        generate(task, folder, scenes=scenes, seed=0)
    return folder


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m mmnasdsl ...` in a subprocess with one torch thread (deterministic sums)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mmnasdsl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mmnasdsl {' '.join(args)} failed:\n{proc.stderr}")
    return proc
