"""Loader throughput next to training-step throughput (issue 5: the loader must never be the
bottleneck; target >= 10x the training step's samples/s at the same batch size).

Two settings:
- shapes: the built-in VQA world at its default size (2000 scenes), features cached in memory,
  with the spec `specs/shapes-vqa.mmnas` (a supernet; one sampled path per step, as in search).
- paper: a synthetic paper-sized VQA store (100 objects x 2048-d per image, 14 tokens,
  3129 answers), features read from disk per item, with the concrete MMnasNet-VQA spec
  (`specs/mmnasnet-vqa.mmnas`, d = 512, 12 + 18 blocks).

Usage: python bench/data.py [--images 640] [--batches 20] [--steps 2] [--workers 0 2]
Prints a Markdown table (the one in docs/performance.md, "Data loader").
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mmnasdsl
from mmnasdsl.data import FeatureDataset, make_loader
from mmnasdsl.data.shapes import generate
from mmnasdsl.data.store import StoreWriter, TextData
from mmnasdsl.data.text import PAD, UNK

BATCH = 64
ROOT = Path(__file__).resolve().parent.parent


def paper_store(path: Path, images: int, seed: int = 0) -> None:
    """A VQA store of paper size: 100 x 2048 features per image, 5 questions per image."""
    rng = np.random.default_rng(seed)
    vocab = [PAD, UNK, *(f"w{i}" for i in range(2000))]
    answers = [f"a{i}" for i in range(3129)]
    n_q = images * 5
    with StoreWriter(path, "vqa", 2048, split="train", source="bench paper-sized") as w:
        for i in range(images):
            xy = rng.uniform(0, 500, (100, 2))
            boxes = np.concatenate([xy, xy + rng.uniform(10, 120, (100, 2))], 1)
            w.add_image(rng.standard_normal((100, 2048), dtype=np.float32), boxes, (640, 480), i)
        w.set_text(
            TextData(
                [rng.integers(2, len(vocab), 14).astype(np.int32) for _ in range(n_q)],
                ["q"] * n_q,
                np.repeat(np.arange(images), 5),
                np.arange(n_q),
                vocab,
            )
        )
        ids = rng.integers(0, 3129, (n_q, 3)).astype(np.int32)
        w.set_labels(
            {
                "vqa/answers": answers,
                "vqa/raw_answers": np.full((n_q, 10), "a0", dtype=object),
                "vqa/score_offsets": np.arange(n_q + 1) * 3,
                "vqa/score_ids": ids.ravel(),
                "vqa/score_values": np.tile(np.float32([1.0, 0.6, 0.3]), n_q),
                "vqa/answer_type": np.zeros(n_q, np.int8),
                "vqa/family": np.full(n_q, -1, np.int16),
                "vqa/family_names": np.array([], dtype=object),
            }
        )


def loader_rate(ds: FeatureDataset, batches: int, workers: int) -> float:
    """Samples/s of the loader alone (relations on, shuffled), after one warm-up batch."""
    loader = make_loader(ds, BATCH, shuffle=True, seed=0, num_workers=workers)
    it = iter(loader)
    next(it)
    t, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            n += len(next(it)["index"])
        except StopIteration:
            break
    rate = n / (time.perf_counter() - t)
    del it, loader
    return rate


def step_rate(spec_path: Path, ds: FeatureDataset, steps: int) -> float:
    """Samples/s of forward + backward + Adam step on fixed batches (one sampled path)."""
    from mmnasdsl.compile.build import build_model

    spec = mmnasdsl.load(spec_path)
    model = build_model(spec, vocab_size=len(ds.vocab), num_answers=len(ds.answers))
    if hasattr(model, "sample_arch"):
        model.set_arch(model.sample_arch(torch.Generator().manual_seed(0)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = next(iter(make_loader(ds, BATCH, shuffle=True, seed=0)))
    model.train()
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        loss = model.loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return BATCH / float(np.median(times[1:]))  # the first step warms up


def row(name: str, ds: FeatureDataset, spec: Path, args: argparse.Namespace) -> list[str]:
    loads = [loader_rate(ds, args.batches, w) for w in args.workers]
    step = step_rate(spec, ds, args.steps)
    cells = [f"{r:,.0f}" for r in loads]
    return [name, *cells, f"{step:,.1f}", f"{min(loads) / step:,.0f}x"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=640, help="paper-sized store images")
    ap.add_argument("--batches", type=int, default=50, help="batches timed per loader")
    ap.add_argument("--steps", type=int, default=2, help="training steps timed")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate("vqa", Path(tmp) / "shapes", 2000, 0)
        gen = time.perf_counter() - t
        t = time.perf_counter()
        paper_store(Path(tmp) / "paper.h5", args.images)
        write = time.perf_counter() - t
        shapes = FeatureDataset(Path(tmp) / "shapes" / "train.h5")
        paper = FeatureDataset(Path(tmp) / "paper.h5", cache=False)
        rows = [
            row(
                "shapes vqa (64-d, <=12 objects, cached)",
                shapes,
                ROOT / "specs/shapes-vqa.mmnas",
                args,
            ),
            row(
                f"paper-sized ({args.images} images x 100 x 2048, from disk)",
                paper,
                ROOT / "specs/mmnasnet-vqa.mmnas",
                args,
            ),
        ]
    head = [
        "store",
        *(f"loader, {w} workers (samples/s)" for w in args.workers),
        "train step (samples/s)",
        "loader / step",
    ]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"torch {torch.__version__}, {args.threads} torch threads, batch {BATCH}"
    )
    print(
        f"shapes vqa generation (2000 scenes, 3 splits): {gen:.1f} s; "
        f"paper-sized store write: {write:.1f} s\n"
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
