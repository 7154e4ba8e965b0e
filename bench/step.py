"""Time one search W step and one θ step of the MMnas supernet on CPU (not a test).

    python bench/step.py            # paper scale (d = 512) and search width (d = 256)
    python bench/step.py --quick    # smaller batch and fewer steps, for a smoke run

Setting: the VQA search space of the paper (M = 12 encoder blocks over {SA, FFN}, N = 18
decoder blocks over {SA, RSA, GA, FFN}), batch 64, 14 words, 100 objects of 2048 features,
3129 answers, a 20k vocabulary, torch.set_num_threads(2).

- W step: sample one op per block from softmax(α), forward, loss, backward, grad-norm clip
  1.0, Adam on the weights (Algorithm 1, line 4/7). Only the sampled path runs. Both Adams
  use `fused=True`: on CPU the per-parameter loop of the default Adam costs ~8x more.
- θ step: `OneShotSearcher.learn` (ProxylessNAS "two"): forward of two candidates per block
  (one without autograd), a backward through one for the α gradients only, Adam on α.
- Peak: the best of several fp32 (N x N) @ (N x N) matmuls (N = 2048) at the same thread
  count, timed in the same process before each width and at the end; the highest is used.
- Achieved GFLOP/s = FLOPs of the timed steps / their time. Step FLOPs = 3 x the forward
  FLOPs of the sampled architecture from `graph.flops` (the backward of a matmul costs two
  matmuls of the forward's size: grad wrt input and wrt weight), times the batch. For the
  θ step: 2 x the active path (forward, grad wrt input) + about 1 x for the idle path's
  forward, so also 3 x the sampled path. Element-wise work
  (softmax, LayerNorm, dropout, Adam) is not counted, so the share of peak is a lower bound
  of how busy the matmul units are.
- Peak RSS: resource.getrusage(RUSAGE_SELF).ru_maxrss (the whole process, all scales run).
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: sleeping (not spinning) idle threads. On a shared, busy machine
# the default spin-wait made a 2-thread step ~4x slower than this (see docs/performance.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable

import torch

from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.graph import build_graph
from mmnasdsl.compile.supernet import Supernet
from mmnasdsl.lang.parse import parse
from mmnasdsl.lang.settings import SearchSettings
from mmnasdsl.search import OneShotSearcher, Searcher, space_of
from mmnasdsl.search.driver import theta_batch

SPEC = """
model vqa { d_model = 512 head_dim = 64 ffn = 4x dropout = 0.1 }
input text = words(max_len = 14, embed = glove(300), lstm)
input image = objects(max = 100, dim = 2048, relations = box4)
pool enc = SA | FFN
pool dec = SA | RSA | GA | FFN
encoder text = enc * 12
decoder image(guide = text) = dec * 18
head vqa(answers = 3129, loss = bce)
"""
VOCAB, ANSWERS, WORDS, OBJECTS = 20000, 3129, 14, 100


def matmul_peak(n: int, repeats: int) -> float:
    """Best fp32 GFLOP/s of an n x n matmul at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def make_batch(batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    words = torch.randint(2, VOCAB, (batch, WORDS), generator=gen)
    xy = torch.rand(batch, OBJECTS, 2, generator=gen) * 500
    boxes = torch.cat([xy, xy + 10 + torch.rand(batch, OBJECTS, 2, generator=gen) * 200], -1)
    return {
        "words": words,
        "words_mask": words != 0,
        "objects": torch.randn(batch, OBJECTS, 2048, generator=gen),
        "objects_mask": torch.ones(batch, OBJECTS, dtype=torch.bool),
        "boxes": boxes,
        "answer_scores": (torch.rand(batch, ANSWERS, generator=gen) > 0.999).float(),
    }


def timed(step: Callable[[], list[int]], n: int) -> tuple[list[float], list[list[int]]]:
    times, archs = [], []
    for _ in range(n):
        t = time.perf_counter()
        archs.append(step())
        times.append(time.perf_counter() - t)
    return times, archs


def w_step(net: Supernet, opt: torch.optim.Optimizer, searcher: Searcher, batch: dict, gen):
    def step() -> list[int]:
        net.set_routes(searcher.w_routes(gen, warmup=False))
        opt.zero_grad(set_to_none=True)
        net.loss(net(batch), batch).backward()
        torch.nn.utils.clip_grad_norm_(list(net.parameters()), 1.0)
        opt.step()
        return net.arch

    return step


def theta_step(net: Supernet, opt: torch.optim.Optimizer, searcher: Searcher, batch: dict, gen):
    def step() -> list[int]:
        searcher.learn(theta_batch(net, batch), gen)  # α gradients only
        return net.arch  # the active candidate of each block

    return step


def bench_width(d: int, batch_size: int, steps: int) -> dict:
    spec = parse(SPEC, "bench")
    gen = torch.Generator().manual_seed(0)
    net = build_model(spec, vocab_size=VOCAB, num_answers=ANSWERS, d_model=d)
    assert isinstance(net, Supernet)
    graph = build_graph(spec, vocab_size=VOCAB, num_answers=ANSWERS, d_model=d)
    batch = make_batch(batch_size, gen)
    net.train()
    w_opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9, fused=True)
    searcher = OneShotSearcher(space_of(spec), SearchSettings(), seed=0)
    out: dict = {"d_model": d, "heads": net.settings.n_heads, "batch": batch_size}
    for name, make in (("w_step", w_step), ("theta_step", theta_step)):
        step = make(net, w_opt, searcher, batch, gen)
        step()  # warm-up: allocator, Adam state
        times, archs = timed(step, steps)
        per_pass = 3  # W: fwd + 2 x bwd; θ: 2 forwards + bwd w.r.t. activations only
        flops = [per_pass * graph.flops(a, WORDS, OBJECTS) * batch_size for a in archs]
        out[name] = {
            "seconds_median": statistics.median(times),
            "seconds_all": times,
            "gflop": statistics.mean(flops) / 1e9,
            "gflops_per_s": sum(flops) / sum(times) / 1e9,
        }
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 16, 2 steps, smaller peak test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per kind")
    ap.add_argument("--widths", type=int, nargs="+", default=[512, 256])
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batch = 16 if args.quick else 64
    steps = args.steps or 2
    peak_n, peak_reps = (1024, 5) if args.quick else (2048, 10)
    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_before": os.getloadavg(),
    }
    print(
        f"{info['cpu']}, {info['nproc']} cpus, torch {info['torch']}, {args.threads} threads, "
        f"OMP_WAIT_POLICY={info['omp_wait_policy']}"
    )
    peaks, results = [], []
    for d in args.widths:
        peaks.append(matmul_peak(peak_n, peak_reps))
        results.append(bench_width(d, batch, steps))
    peaks.append(matmul_peak(peak_n, peak_reps))
    peak = max(peaks)  # the machine's best seen in this run: the share is not flattered
    print(
        f"fp32 matmul peak: {peak:.1f} GFLOP/s (samples {', '.join(f'{p:.1f}' for p in peaks)})"
        f"   load avg before {info['load_before'][0]:.2f}"
    )
    for r in results:
        for name in ("w_step", "theta_step"):
            s = r[name]
            s["share_of_peak"] = s["gflops_per_s"] / peak
            print(
                f"d={r['d_model']:4d} {name:10s} {s['seconds_median']:7.2f} s  "
                f"{s['gflop']:8.1f} GFLOP  {s['gflops_per_s']:6.1f} GFLOP/s  "
                f"{100 * s['share_of_peak']:5.1f}% of peak"
            )
    info.update(peak_gflops=peak, peak_samples=peaks)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    info.update(peak_rss_gb=rss, load_after=os.getloadavg(), results=results)
    print(f"peak RSS {rss:.2f} GB   load avg after {info['load_after'][0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
