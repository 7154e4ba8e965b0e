"""Issue 18's floor for "ITM learns": a bag-of-words caption against mean-pooled objects,
trained by `mmnasdsl train`'s Trainer with the spec's ITM head (same loss, negatives,
schedule and evaluation as a searched net), so that an ITM figure has something to beat.

    nice python bench/itm_baseline.py --seeds 0,1                  # random negatives
    nice python bench/itm_baseline.py --seeds 0,1 --name bow-hard-e1 \
        --head "candidates = 16, top_k = 3, negatives_from = 1"      # mined from epoch 1

Each (head options, seed) unit trains in a fresh process (1 torch thread) into
RESULTS/<name>/<seed>/ and prints its best val (the first 100 val images, 500 captions),
wall and CPU seconds. Ported from the old-layout bench/itm.py (branch itm, 946fc8e), whose
`bow-*` configurations this reproduces: 8 epochs, lr 0.001, warm-up 1, x0.2 from epoch 6.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def spec_text(head: str, epochs: int) -> str:
    """A concrete ITM spec whose net the baseline replaces: only the head options, the data
    and the train section are read (the inputs shape the batches)."""
    decay = max(1, epochs - 2)
    return f"""# bench/itm_baseline.py: the spec whose net the bag-of-words baseline replaces
model itm {{ d_model = 64  heads = 4  ffn = 4x  dropout = 0.1 }}
input text = words(max_len = 16, embed = learned(64), lstm)
input image = objects(max = 12, dim = 64, relations = box4)
encoder text = (SA FFN) * 2
decoder image(guide = text) = (SA GA FFN) * 2
head itm({head})
data shapes(scenes = 2000, seed = 0)
train {{ epochs = {epochs}  batch = 64  lr = 0.001  warmup = 1  decay_at = [{decay}]  decay = 0.2 }}
"""


def bow_model(vocab_size: int, task: Any, d: int = 128, dropout: float = 0.1) -> Any:
    """The plain floor: a caption is the mean of its learned word embeddings, an image the
    mean of Linear(objects); the logit is an MLP over [t, v, t*v]; the ITM head's loss."""
    import torch
    from torch import nn

    class BowBaseline(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.task = task  # what the Trainer asks for: epoch data, evaluation, metric
            self.embed = nn.Embedding(vocab_size, d, padding_idx=0)
            self.obj = nn.Linear(64, d)
            self.mlp = nn.Sequential(
                nn.Linear(3 * d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, 1)
            )

        def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            wm = batch["words_mask"].float().unsqueeze(-1)
            t = (self.embed(batch["words"]) * wm).sum(1) / wm.sum(1).clamp(min=1)
            om = batch["objects_mask"].float().unsqueeze(-1)
            v = (self.obj(batch["objects"]) * om).sum(1) / om.sum(1).clamp(min=1)
            return {"logits": self.mlp(torch.cat([t, v, t * v], -1)).squeeze(-1)}

        def loss(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> Any:
            return self.task.loss(out, batch)

    return BowBaseline()


def run_unit(spec_path: Path, run: Path, seed: int) -> None:
    """`mmnasdsl train`'s Trainer with the baseline in place of the spec's net."""
    import torch

    import mmnasdsl
    from mmnasdsl.data.resolve import resolve
    from mmnasdsl.heads import get_head
    from mmnasdsl.lang.settings import head_options, train_settings
    from mmnasdsl.train.progress import NullReporter
    from mmnasdsl.train.trainer import Trainer, TrainJob

    class BowTrainer(Trainer):
        def build_model(self) -> Any:
            task = get_head("itm")(head_options(self.job.spec))
            return bow_model(len(self.train_set.vocab), task)

    torch.set_num_threads(1)
    spec = mmnasdsl.load(spec_path)
    data = resolve(spec, "itm")
    run.mkdir(parents=True, exist_ok=True)
    job = TrainJob(
        spec=spec,
        data=data,
        run_dir=run,
        settings=train_settings(spec),
        seed=seed,
        reporter=NullReporter(),
    )
    BowTrainer(job).fit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "runs" / "itm-baseline")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--head", default="negatives_from = 0", help="head itm(...) options")
    ap.add_argument("--name", default="", help="folder of the runs (default: from --head)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--unit", nargs=3, metavar=("SPEC", "RUN", "SEED"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.unit:
        run_unit(Path(a.unit[0]), Path(a.unit[1]), int(a.unit[2]))
        return
    name = a.name or "bow-" + re.sub(r"[^a-z0-9]+", "-", a.head).strip("-")
    spec = a.results / name / "spec.mmnas"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(spec_text(a.head, a.epochs))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for seed in (int(s) for s in a.seeds.split(",")):
        run = spec.parent / str(seed)
        t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        cmd = [sys.executable, __file__, "--unit", str(spec), str(run), str(seed)]
        subprocess.run(cmd, env=env, check=True, cwd=ROOT)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
        m = json.loads((run / "metrics.json").read_text())
        b = m["best"]
        print(
            f"{name} seed {seed}: best epoch {m['best_epoch']}, i2t R@1 {b['i2t_r1']:.1f}, "
            f"t2i R@1 {b['t2i_r1']:.1f}, rsum {b['rsum']:.1f}; "
            f"wall {time.perf_counter() - t0:.0f} s, CPU {cpu:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
