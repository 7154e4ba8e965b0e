"""Time one W step of the reference implementation (MILVLG/mmnas) on CPU (not a test).

    git -C <mmnas clone> archive HEAD | tar -x -C /tmp/mmnas      # a snapshot, not a copy
    python bench/reference_step.py --mmnas /tmp/mmnas --arch rsa --steps 2 --json ref.json
    python bench/step.py --widths 512 --arch rsa --steps 2 --json ours.json   # next process

The other half of the side by side of issue 16 (docs/performance.md): the reference's own
modules, imported from a snapshot the user points at (none of its code is in this
project), driven through its own search W step on a random batch of the paper's sizes.
What it does, in the reference's own terms:

- config `search_vqa.CfgSearch` with HSIZE = 512 (8 heads x 64, FFN 2048), its optimiser
  (`Execution.get_optim`: warm-up Adam over every supernet weight) and loss
  (BCEWithLogits, reduction 'sum'), network `hygr_vqa.Net_Search`;
- the path pinned through the reference's own sampler: each block's α logits are 0 on the
  path's op and -1e4 elsewhere, so its `torch.multinomial` always draws that op (checked
  on the first step);
- one W step = reset_binary_gates, unused_modules_off, forward, loss (+ 0 x the sums of
  every parameter, as the reference adds so that DDP sees them), zero_grad, backward,
  clip 1.0 over the weights, optimiser step, unused_modules_back; timed per phase.

What it leaves out, knowingly: DDP and its all-reduce (one process); the data loader (one
fixed random batch, relation features computed once, untimed, as in bench/step.py);
masking (all 14 words and 100 objects present); the α step (the reference starts it at
epoch 20); the warm-up schedule's steps per epoch are a guess (it sets the rate's value,
not the cost). Imports that a W step never calls (torchvision, tqdm, spacy,
en_vectors_web_lg, the Cython bbox module) are stubbed, and
`torch.distributed.init_process_group` is a no-op.

Output: one JSON object with `w_step.seconds_median`, `w_step.seconds_all`, the phases'
medians and `peak_rss_gb` in GiB (2^30 bytes, as bench/step.py), sampled every 10 ms.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench/step.py: before torch loads

import argparse
import contextlib
import importlib.machinery
import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from step import RssSampler, cpu_flags, positive  # bench/step.py (run from the repository root)

TOKENS, ANSWERS, WORDS, OBJECTS, IMAGE = 20000, 3129, 14, 100, 500
# The reference's op names and the two paths of issue 16, per block of encoder and decoder.
SA, RSA, GA, FFN = "self_att_64", "rel_self_att_64", "guided_att_64", "feed_forward"
PATHS = {
    "mcan": {"enc": [SA, FFN] * 6, "dec": [SA, GA, FFN] * 6},
    "rsa": {"enc": [SA, FFN] * 6, "dec": [RSA, GA, FFN] * 6},
}
# Steps per epoch for the reference's warm-up schedule: VQA-v2 train (443,757 questions),
# 4/5 of it for W, 4 ranks, batch 64. Only the learning rate's value depends on it.
EPOCH_STEPS = 1386
STUBBED = ("torchvision", "tqdm", "spacy", "en_vectors_web_lg", "yaml")


def stub(name: str, **attrs: Any) -> None:
    """Register an empty module `name` (with a spec: torch._dynamo looks some names up)."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    sys.modules[name] = module


@contextlib.contextmanager
def inside(root: Path) -> Iterator[None]:
    """Import from `root` with it as the working directory (the reference opens relative
    paths at import time)."""
    cwd = os.getcwd()
    sys.path.insert(0, str(root))
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)


def import_reference(root: Path) -> types.SimpleNamespace:
    """The reference's config, network, mixed op, optimiser factory and data helpers."""
    for name in STUBBED:
        try:
            __import__(name)
        except ImportError:
            stub(name, load=lambda *a, **k: None, tqdm=lambda x=None, *a, **k: x)
    stub("mmnas.utils.bbox")  # a Cython extension the VQA step never calls
    try:
        import tkinter  # noqa: F401  (search_vqa imports tkinter._flatten)
    except ImportError:
        stub("tkinter", _flatten=lambda x: x)
    import torch.distributed as dist

    dist.init_process_group = lambda *a, **k: None  # type: ignore[assignment]
    with inside(root):
        import search_vqa  # type: ignore[import-not-found]
        from mmnas.loader import load_data_vqa  # type: ignore[import-not-found]
        from mmnas.model.hygr_vqa import Net_Search  # type: ignore[import-not-found]
        from mmnas.model.mixed import MixedOp  # type: ignore[import-not-found]
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)  # search_vqa sets it at import
    return types.SimpleNamespace(
        CfgSearch=search_vqa.CfgSearch,
        Execution=search_vqa.Execution,
        Net_Search=Net_Search,
        MixedOp=MixedOp,
        data=load_data_vqa,
    )


def config(ref: types.SimpleNamespace, batch: int) -> Any:
    """CfgSearch at the paper's width (HSIZE 512; the flattened size follows it)."""
    cfg = ref.CfgSearch(rank=0, world_size=1)
    cfg.HSIZE = 512
    cfg.ATTFLAT_OUT_SIZE = 2 * cfg.HSIZE
    cfg.BATCH_SIZE = cfg.EVAL_BATCH_SIZE = batch
    return cfg


def mixed_ops(ref: types.SimpleNamespace, net: torch.nn.Module) -> dict[str, list[Any]]:
    """The network's choice blocks, encoder and decoder, in order."""
    out: dict[str, list[Any]] = {"enc": [], "dec": []}
    for name, module in net.named_modules():
        if isinstance(module, ref.MixedOp):
            out["enc" if ".cells_enc." in name else "dec"].append(module)
    return out


def pin_path(blocks: dict[str, list[Any]], arch: str) -> None:
    """α = 0 on the path's op and -1e4 elsewhere: the reference's sampler draws the path."""
    with torch.no_grad():
        for part, ops in PATHS[arch].items():
            if len(blocks[part]) != len(ops):
                raise SystemExit(f"{part}: {len(blocks[part])} blocks, the path has {len(ops)}")
            for block, op in zip(blocks[part], ops, strict=True):
                logits = torch.full((block.n_choices,), -1e4)
                logits[block.Used_OPS.index(op)] = 0.0
                block.alpha_prob.data.copy_(logits)


def drawn_path(blocks: dict[str, list[Any]]) -> dict[str, list[str]]:
    return {p: [b.Used_OPS[b.active_index[0]] for b in ops] for p, ops in blocks.items()}


def make_batch(
    ref: types.SimpleNamespace, batch: int, seed: int, emb: np.ndarray
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """The reference's five inputs and its soft answer scores, random, at the paper's sizes;
    box and relation features through the reference's own helpers."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.RandomState(seed)
    words = torch.randint(1, TOKENS, (batch, WORDS), generator=g)
    feats = torch.rand(batch, OBJECTS, 2048, generator=g)
    x1, y1 = (torch.rand(batch, OBJECTS, generator=g) * 450 for _ in range(2))
    x2 = x1 + 1 + torch.rand(batch, OBJECTS, generator=g) * (IMAGE - 1 - x1)
    y2 = y1 + 1 + torch.rand(batch, OBJECTS, generator=g) * (IMAGE - 1 - y1)
    boxes = torch.stack([x1, y1, x2, y2], -1)
    data = ref.data
    bbox = torch.stack(
        [
            torch.from_numpy(
                data.DataSet.proc_img_feat(
                    None, data.DataSet.proc_bbox_feat(None, b.numpy(), (IMAGE, IMAGE)), OBJECTS
                )
            )
            for b in boxes
        ]
    )
    rel_img = torch.stack([data.relation_embedding(b) for b in boxes])
    rel_words = torch.stack(
        [
            data.semantic_embedding(
                {"question": " ".join(f"w{t}" for t in w.tolist())}, w.numpy(), emb, WORDS
            )
            for w in words
        ]
    )
    scores = torch.zeros(batch, ANSWERS)
    for row in scores:
        k = int(rng.randint(1, 4))
        picked = torch.from_numpy(rng.choice(ANSWERS, k, replace=False))
        row[picked] = torch.from_numpy(rng.choice([0.3, 0.6, 0.9, 1.0], k).astype(np.float32))
    return (feats, bbox, rel_img, words, rel_words), scores


def w_step(
    ref: types.SimpleNamespace,
    net: Any,
    opt: Any,
    loss_fn: Any,
    batch: tuple[tuple[torch.Tensor, ...], torch.Tensor],
    clip: float,
) -> dict[str, float]:
    """The reference's network step, phase by phase; returns the phases' seconds."""
    inputs, scores = batch
    t0 = time.perf_counter()
    ref.MixedOp.MODE = None  # a W step: one sampled op per block, no binary-gate mode
    net.reset_binary_gates()
    net.unused_modules_off()
    loss = loss_fn(net(inputs), scores)
    for params in (net.alpha_prob_parameters(), net.alpha_gate_parameters(), net.net_parameters()):
        loss = loss + 0 * sum(p.sum() for p in params)
    t1 = time.perf_counter()
    net.zero_grad()
    loss.backward()
    loss.item()
    t2 = time.perf_counter()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(net.net_parameters(), clip)
    t3 = time.perf_counter()
    opt.step()
    net.unused_modules_back()
    t4 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "clip": t3 - t2, "optimizer": t4 - t3}


def snapshot_commit(root: Path) -> str | None:
    """The snapshot's commit if it is a git work tree (an exported archive is not)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mmnas", type=Path, required=True, help="a snapshot of MILVLG/mmnas")
    ap.add_argument("--arch", choices=tuple(PATHS), default="mcan")
    ap.add_argument("--batch", type=positive, default=64)
    ap.add_argument("--steps", type=positive, default=2, help="timed W steps after one warm-up")
    ap.add_argument("--threads", type=positive, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random batch")
    ap.add_argument("--json", default=None, help="also write the result to this file")
    ap.add_argument("--commit", default=None, help="the snapshot's commit (an archive has no git)")
    args = ap.parse_args()
    root = args.mmnas.resolve()
    if not (root / "search_vqa.py").is_file():
        ap.exit(2, f"bench/reference_step.py: {root} has no search_vqa.py (no mmnas snapshot)\n")
    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    ref = import_reference(root)
    cfg = config(ref, args.batch)
    emb = np.random.RandomState(args.seed).randn(TOKENS, 300).astype(np.float32)
    net = ref.Net_Search(cfg, {"token_size": TOKENS, "ans_size": ANSWERS, "pretrained_emb": emb})
    net.train()
    blocks = mixed_ops(ref, net)
    pin_path(blocks, args.arch)
    batch = make_batch(ref, args.batch, args.seed, emb)
    holder = types.SimpleNamespace(module=net)  # what get_optim expects of a DDP wrapper
    opt, _ = ref.Execution(cfg).get_optim(holder, search=True, epoch_steps=EPOCH_STEPS)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction=cfg.REDUCTION)
    sampler, phases = RssSampler(), []
    with sampler.watch() as seen:
        for i in range(args.steps + 1):
            t = time.perf_counter()
            phase = w_step(ref, net, opt, loss_fn, batch, cfg.NET_GRAD_CLIP)
            if i == 0 and drawn_path(blocks) != PATHS[args.arch]:
                raise SystemExit(f"the sampler drew {drawn_path(blocks)}, not the pinned path")
            print(f"step {i}{' (warm-up)' if i == 0 else ''}: {time.perf_counter() - t:.2f} s")
            if i > 0:
                phases.append(phase)
    seconds = [sum(p.values()) for p in phases]
    out = {
        "impl": "reference",
        "commit": args.commit or snapshot_commit(root),
        "arch": args.arch,
        "d_model": cfg.HSIZE,
        "batch": args.batch,
        "threads": args.threads,
        "cpu_flags": cpu_flags(),
        "w_step": {
            "seconds_median": statistics.median(seconds),
            "seconds_all": seconds,
            "phases_median": {k: statistics.median(p[k] for p in phases) for k in phases[0]},
        },
        "peak_rss_gb": seen["peak_gb"],
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
