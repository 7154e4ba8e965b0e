"""Issue 18's cost figures: an ITM epoch against a VQA epoch of the same net, and the share
of an ITM epoch spent mining hard negatives.

    nice python bench/itm_cost.py runs/R/arch.mmnas                 # every configuration
    nice python bench/itm_cost.py runs/R/arch.mmnas --only random,vqa-30k

Each configuration trains the concrete spec's net (its blocks, width and train section)
for one epoch in a fresh process with 1 torch thread, so that the process's CPU time is
the work whatever else the machine runs; it reports the CPU seconds of the training pass
(the epoch without its validation), of choosing the negatives (`data_cpu_seconds`, inside
the pass) and of the validation, and the wall seconds of the whole epoch. ITM trains
10 000 captions as 30 000 pairs (positive, negative caption, negative image); the VQA
configurations put the same net on the shapes VQA world with `head vqa(loss = bce)`: 2000
scenes (10 000 questions, the same number of captions) and 6000 scenes (30 000 questions,
the same number of pairs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# name -> (what, head line, scenes)
CONFIGS: dict[str, tuple[str, str, int]] = {
    "random": ("ITM, random negatives (the default)", "head itm(negatives_from = 0)", 2000),
    "mine-c16": (
        "ITM, mining every epoch: top 3 of 16 candidates (the spec before issue 18)",
        "head itm(negatives_from = 1, candidates = 16, top_k = 3)",
        2000,
    ),
    "mine-c8": (
        "ITM, mining every epoch: top 2 of 8 candidates",
        "head itm(negatives_from = 1, candidates = 8, top_k = 2)",
        2000,
    ),
    "mine-c4": (
        "ITM, mining every epoch: top 2 of 4 candidates",
        "head itm(negatives_from = 1, candidates = 4, top_k = 2)",
        2000,
    ),
    "mine-c16-plain": (
        "as mine-c16, each pair's words through the word stream (no sharing)",
        "head itm(negatives_from = 1, candidates = 16, top_k = 3)",
        2000,
    ),
    "vqa-10k": ("VQA, 10 000 questions (= ITM captions)", "head vqa(loss = bce)", 2000),
    "vqa-30k": ("VQA, 30 000 questions (= ITM pairs)", "head vqa(loss = bce)", 6000),
}


def variant(arch: str, head: str, scenes: int) -> str:
    """The arch spec with another head line and number of scenes."""
    text = re.sub(r"^head .*$", head, arch, count=1, flags=re.M)
    text = re.sub(r"scenes = \d+", f"scenes = {scenes}", text, count=1)
    return text if head.startswith("head itm") else text.replace("model itm", "model vqa", 1)


def run_unit(spec_path: Path, run: Path, plain: bool) -> dict[str, Any]:
    """One epoch of `mmnasdsl train`'s Trainer with the validation timed apart."""
    import torch

    import mmnasdsl
    from mmnasdsl.data.resolve import resolve
    from mmnasdsl.lang.settings import train_settings
    from mmnasdsl.train import loop
    from mmnasdsl.train.progress import NullReporter
    from mmnasdsl.train.trainer import Trainer, TrainJob

    times: dict[str, float] = {}

    class TimedTrainer(Trainer):
        def evaluate(self, dataset: Any, rows: Any = None) -> dict[str, Any]:
            clock = loop.Clock()
            metrics = super().evaluate(dataset, rows)
            clock.lap(times, "val_")
            return metrics

    if plain:  # the runner ignores share_words: every pair runs its own word stream
        outputs = loop.NetRunner.outputs
        loop.NetRunner.outputs = lambda self, *a, share_words=False, **k: outputs(self, *a, **k)  # type: ignore[method-assign]
    torch.set_num_threads(1)
    spec = mmnasdsl.load(spec_path)
    data = resolve(spec, loop.require_head(spec))
    run.mkdir(parents=True, exist_ok=True)
    settings = train_settings(spec, epochs=1)
    job = TrainJob(spec=spec, data=data, run_dir=run, settings=settings, reporter=NullReporter())
    epoch = TimedTrainer(job).fit()["epochs"][0]
    train_cpu = epoch["cpu_seconds"] - times["val_cpu_seconds"]
    return {
        "train_cpu": train_cpu,
        "data_cpu": epoch["data_cpu_seconds"],
        "val_cpu": times["val_cpu_seconds"],
        "wall": epoch["seconds"],
        "samples": len(job_rows(data, spec)),
    }


def job_rows(data: Path, spec: Any) -> Any:
    from mmnasdsl.data import open_split

    return open_split(data, "train", spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "arch", type=Path, nargs="?", help="a concrete ITM spec (a search's arch.mmnas)"
    )
    ap.add_argument("--results", type=Path, default=ROOT / "runs" / "itm-cost")
    ap.add_argument("--only", default="", help="comma-separated configurations")
    ap.add_argument("--unit", nargs=3, metavar=("SPEC", "RUN", "PLAIN"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.unit:
        out = run_unit(Path(a.unit[0]), Path(a.unit[1]), a.unit[2] == "1")
        Path(a.unit[1], "cost.json").write_text(json.dumps(out))
        return
    if a.arch is None:
        ap.error("give the arch spec")
    arch = a.arch.read_text()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    rows = {}
    for name in [n for n in a.only.split(",") if n] or list(CONFIGS):
        what, head, scenes = CONFIGS[name]
        run = a.results / name
        run.mkdir(parents=True, exist_ok=True)
        spec = run / "spec.mmnas"
        spec.write_text(variant(arch, head, scenes))
        t0 = time.perf_counter()
        plain = "1" if name.endswith("-plain") else "0"
        cmd = [sys.executable, __file__, "--unit", str(spec), str(run / "run"), plain]
        subprocess.run(cmd, env=env, check=True, cwd=ROOT)
        r = json.loads((run / "run" / "cost.json").read_text())
        rows[name] = r
        share = r["data_cpu"] / r["train_cpu"] if r["train_cpu"] else 0.0
        print(
            f"{name:15s} {what}: {r['samples']} samples; CPU s: train pass {r['train_cpu']:.1f}"
            f" (negatives {r['data_cpu']:.1f}, {100 * share:.0f} %), val {r['val_cpu']:.1f};"
            f" epoch wall {r['wall']:.0f} s (process wall {time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    (a.results / f"cost-{int(time.time())}.json").write_text(json.dumps(rows, indent=1))
    for itm in ("random", "mine-c16", "mine-c8", "mine-c4"):
        for vqa in ("vqa-10k", "vqa-30k"):
            if itm in rows and vqa in rows:
                ratio = rows[itm]["train_cpu"] / rows[vqa]["train_cpu"]
                print(f"{itm} / {vqa}: {ratio:.2f}x (training pass CPU)")


if __name__ == "__main__":
    main()
