"""Benchmark of the search (issue 6): wall time of a W step, a θ step and an epoch.

Two scales:
- paper: specs/vqa.mmnas (12 + 18 blocks) at the reference's search width d = 256,
  batch 64, 14 words, 100 objects of 2048-d, 3129 answers, on synthetic batches;
- shapes: specs/shapes-vqa.mmnas at its search width and batch, on its generated data.

A W step = sample a path, forward, loss, backward, clip, Adam (Algorithm 1, line 4/7);
a θ step = the "two" estimator (two paths forward, one backward) + Adam on α (line 9).
Epoch time = |D_m|/B W steps + |D_m|/(B·u) θ steps (+ the D_a evaluation at shapes scale).

    python bench/search.py [--steps 4] [--threads 1] [--write]

`--write` replaces the "## Search" section of docs/performance.md (up to its hand-written
"### Main job" subsection, which it keeps).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import mmnasdsl
from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.supernet import Supernet
from mmnasdsl.lang.settings import search_settings
from mmnasdsl.search import OneShotSearcher, space_of
from mmnasdsl.search.driver import split_rows, theta_batch
from mmnasdsl.train.loop import w_optimizer, w_step

ROOT = Path(__file__).resolve().parent.parent
VQA2_TRAIN = 443_757  # VQA-v2 train questions (the paper's search set)


def timed(fn: Callable[[], object], steps: int) -> float:
    """Median seconds of `fn` over `steps` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paper_batch(b: int, words: int, objects: int, dim: int, answers: int) -> dict:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(b, objects, 2, generator=g) * 500
    wh = torch.rand(b, objects, 2, generator=g) * 100 + 10
    return {
        "words": torch.randint(2, 1000, (b, words), generator=g),
        "words_mask": torch.ones(b, words, dtype=torch.bool),
        "objects": torch.randn(b, objects, dim, generator=g),
        "objects_mask": torch.ones(b, objects, dtype=torch.bool),
        "boxes": torch.cat([xy, xy + wh], -1),
        "image_size": torch.full((b, 2), 640.0),
        "answer_scores": (torch.rand(b, answers, generator=g) > 0.999).float(),
        "index": torch.arange(b),
    }


def step_times(net: Supernet, batch: dict, settings, steps: int) -> tuple[float, float]:
    """(W step, θ step) median seconds on one batch."""
    opt = w_optimizer(list(net.parameters()), settings.lr)
    searcher = OneShotSearcher(space_of(net.spec), settings, seed=0)
    gen = torch.Generator().manual_seed(0)
    net.train()

    def w() -> None:
        net.set_routes(searcher.w_routes(gen, warmup=False))
        w_step(net, batch, opt, settings.clip)

    return timed(w, steps), timed(lambda: searcher.learn(theta_batch(net, batch), gen), steps)


def paper_scale(steps: int) -> dict:
    spec = mmnasdsl.load(ROOT / "specs/vqa.mmnas")
    s = search_settings(spec)
    torch.manual_seed(0)
    net = build_model(spec, vocab_size=20_000, num_answers=3129, d_model=s.d_model)
    batch = paper_batch(s.batch, 14, 100, 2048, 3129)
    w, theta = step_times(net, batch, s, steps)  # type: ignore[arg-type]
    n_m = round(VQA2_TRAIN * s.split[0] / sum(s.split))
    return {
        "scale": f"paper (vqa.mmnas, d={s.d_model}, 12+18 blocks, B={s.batch}, 100 objects)",
        "w": w,
        "theta": theta,
        "u": s.update_ratio,
        "epoch": n_m / s.batch * (w + theta / s.update_ratio),
        "eval": None,
        "epochs": s.warmup + s.epochs,
        "n_m": n_m,
    }


def shapes_scale(steps: int) -> dict:
    from mmnasdsl.data import open_split, resolve
    from mmnasdsl.train.loop import batch_iter, epoch_batches, evaluate, model_for

    spec = mmnasdsl.load(ROOT / "specs/shapes-vqa.mmnas")
    s = search_settings(spec)
    train = open_split(resolve(spec, "vqa"), "train", spec)
    d_m, d_a = split_rows(len(train), s.split, 0)
    torch.manual_seed(0)
    net = model_for(spec, train, s.d_model)
    batch = next(
        batch_iter(
            train, epoch_batches(d_m, s.batch, 0, 0)[:1], relations=True, device=torch.device("cpu")
        )
    )
    w, theta = step_times(net, batch, s, steps)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    evaluate(net, train, indices=d_a, device=torch.device("cpu"), relations=True)
    ev = time.perf_counter() - t0
    return {
        "scale": f"shapes (shapes-vqa.mmnas, d={s.d_model or spec.model}, 3+5 blocks, B={s.batch})",
        "w": w,
        "theta": theta,
        "u": s.update_ratio,
        "epoch": len(d_m) / s.batch * (w + theta / s.update_ratio) + ev,
        "eval": ev,
        "epochs": s.warmup + s.epochs,
        "n_m": len(d_m),
    }


def duration(seconds: float) -> str:
    return f"{seconds / 60:,.1f} min" if seconds < 3600 else f"{seconds / 3600:,.0f} h"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(rows: list[dict]) -> str:
    lines = [
        "| scale | W step (s) | θ step (s) | θ / W | epoch (s) | whole search |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        whole = r["epoch"] * r["epochs"]
        lines.append(
            f"| {r['scale']} | {r['w']:.3f} | {r['theta']:.3f} | "
            f"{r['theta'] / r['w']:.2f} | {r['epoch']:,.0f} | "
            f"{r['epochs']} epochs ≈ {duration(whole)} |"
        )
    return "\n".join(lines)


def section(rows: list[dict], args: argparse.Namespace) -> str:
    cpu = f"{cpu_name()} ({os.cpu_count()} cores)"
    return f"""## Search

Issue 6: wall time of Algorithm 1 per W step, per θ step (relative to a W step) and per
epoch, at the paper's scale and at the shapes scale.

Command: `python bench/search.py --steps {args.steps} --threads {args.threads} --write`

Machine: {cpu}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, CPU only,
Python {platform.python_version()}; shared with other jobs while measured, so the figures
are pessimistic. Median of {args.steps} steps after one warm-up step.

{table(rows)}

- Epoch = |D_m|/B W steps + |D_m|/(B·u) θ steps (u = {rows[0]["u"]}); at shapes scale plus
  the D_a evaluation of the argmax net. Paper scale: |D_m| = 4/5 of the {VQA2_TRAIN:,} VQA-v2
  train questions, one CPU process (the reference used 4 GPUs).
- A θ step runs two candidate paths forward (the idle one without autograd) and one
  backward, so it costs between one and two W steps, never all candidates' worth
  (ProxylessNAS "two" estimator; mmnasdsl/search/estimators.py).
"""


def write_section(text: str) -> None:
    path = ROOT / "docs/performance.md"
    doc = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    # a hand-written "### Main job" subsection (wall times of the real command) is kept
    pattern = re.compile(r"^## Search\n.*?(?=^### Main job|^## |\Z)", re.S | re.M)
    doc = (
        pattern.sub(lambda _: text + "\n", doc)
        if pattern.search(doc)
        else doc.rstrip("\n") + "\n\n" + text
    )
    path.write_text(doc, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    parser.add_argument("--skip-paper", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [shapes_scale(args.steps)]
    if not args.skip_paper:
        rows.append(paper_scale(args.steps))
    text = section(rows, args)
    sys.stdout.write(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
