"""Time one search W step and one θ step of the MMnas supernet on CPU (not a test).

    python bench/step.py                        # paper scale (d = 512) and search width (d = 256)
    python bench/step.py --quick                # smaller batch and fewer steps, for a smoke run
    python bench/step.py --widths 512 --arch mcan rsa --precision fp32 bf16 --json out.json

Setting: the VQA search space of the paper (M = 12 encoder blocks over {SA, FFN}, N = 18
decoder blocks over {SA, RSA, GA, FFN}), batch 64, 14 words, 100 objects of 2048 features,
3129 answers, a 20k vocabulary, torch.set_num_threads(2).

- W step: one op per block, forward, loss, backward, grad-norm clip 1.0, Adam on the
  weights (Algorithm 1, line 4/7). Only that path runs. `--arch sample` draws the path from
  softmax(α); `mcan` pins encoder (SA FFN)*6, decoder (SA GA FFN)*6; `rsa` the same with RSA
  in place of SA in the decoder (the two paths of issue 16). Both Adams use `fused=True`: on
  CPU the per-parameter loop of the default Adam costs ~8x more.
- θ step: `OneShotSearcher.learn` (ProxylessNAS "two"): forward of two candidates per block
  (one without autograd), a backward through one for the α gradients only, Adam on α. Its
  candidates are drawn from α (uniform: α = 0 here) whatever `--arch` says.
- `--precision fp32 bf16`: every precision runs on the same supernet in one process, the
  steps alternating between precisions (W: p1 p2 p1 p2 ..., then θ likewise), so their
  ratio is measured under the same load. bf16 = torch.autocast (mmnasdsl.train.precision);
  `tf32` (CUDA only) = fp32 weights and activations with TF32 matmuls allowed.
- `--device cuda` runs the same bench on the GPU (TF32 off for `fp32`, on for `tf32`),
  synchronising before every clock read, and reports the peak of
  `torch.cuda.max_memory_allocated` per record (`peak_gpu_mem_gb`). Without a GPU it says
  so and exits with status 2; CI never runs it.
- Peak: the best of several (N x N) @ (N x N) matmuls (N = 2048) in each precision at the
  same thread count, timed in the same process before each width and at the end; the
  highest is used, so a share is of that precision's own peak.
- Achieved GFLOP/s = FLOPs of the timed steps / their time. Step FLOPs = 3 x the forward
  FLOPs of the architecture from `graph.flops` (the backward of a matmul costs two
  matmuls of the forward's size: grad wrt input and wrt weight), times the batch. For the
  θ step: 2 x the active path (forward, grad wrt input) + about 1 x for the idle path's
  forward, so also 3 x the sampled path. Element-wise work
  (softmax, LayerNorm, dropout, Adam) is not counted, so the share of peak is a lower bound
  of how busy the matmul units are.
- peak_rss_gb of a record: the largest resident set sampled (every 10 ms, /proc/self/statm)
  while that record's steps ran (W and θ; `w_step.peak_rss_gb`: the W steps only, which
  run first); the process's ru_maxrss is reported too. Freed memory
  may stay mapped between cases, so for a memory figure run one case per process.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: sleeping (not spinning) idle threads. On a shared, busy machine
# the default spin-wait made a 2-thread step ~4x slower than this (see docs/performance.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import json
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.graph import build_graph
from mmnasdsl.compile.supernet import Supernet
from mmnasdsl.lang.parse import parse
from mmnasdsl.lang.settings import SearchSettings
from mmnasdsl.ops import get_op
from mmnasdsl.search import OneShotSearcher, Searcher, space_of
from mmnasdsl.search.driver import theta_batch
from mmnasdsl.train.precision import DTYPES, autocast

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


PRECISIONS = ("fp32", "tf32", "bf16")  # the bench's variants; tf32 is CUDA's fp32 with TF32


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a size, a count), else a clean error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock read after it times that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_device(device: torch.device, precisions: list[str]) -> str | None:
    """Why this bench cannot run as asked (no GPU, TF32 on a CPU), or None."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return "--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)"
    if device.type != "cuda" and "tf32" in precisions:
        return "--precision tf32 is a CUDA setting (TF32 matmuls); on a CPU use fp32 or bf16"
    return None


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """The arithmetic of one variant: autocast for bf16; on CUDA, TF32 matmuls only for
    `tf32` (torch's default would silently turn them on or off by version)."""
    if device.type == "cuda":
        allow = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow
    with autocast("fp32" if precision == "tf32" else precision, device):
        yield


def matmul_peak(
    n: int, repeats: int, precision: str = "fp32", device: torch.device | None = None
) -> float:
    """Best GFLOP/s of an n x n matmul in `precision` at the current thread count, over
    `a @ b` and `F.linear(a, b)` (= a @ bᵀ, what nn.Linear runs): on a CPU without native
    bf16 the two take very different kernels (0.2 vs 2.4 GFLOP/s in bf16 seen here)."""
    device = device or torch.device("cpu")
    dtype = DTYPES.get(precision, torch.float32)
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    best = float("inf")
    with precision_context(precision, device):
        for f in (lambda: a @ b, lambda: torch.nn.functional.linear(a, b)):
            f()
            for _ in range(repeats):
                sync(device)
                t = time.perf_counter()
                f()
                sync(device)
                best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def cpu_flags() -> list[str]:
    """The CPU's vector flags that decide bf16 speed (avx512*, amx*): none = no native bf16."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(x for x in flags if x.startswith(("avx512", "amx", "avx2")))
    except OSError:
        pass
    return []


def make_batch(
    batch: int, gen: torch.Generator, device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    """A random batch of the paper's sizes (drawn on the CPU, so every device sees the same)."""
    words = torch.randint(2, VOCAB, (batch, WORDS), generator=gen)
    xy = torch.rand(batch, OBJECTS, 2, generator=gen) * 500
    boxes = torch.cat([xy, xy + 10 + torch.rand(batch, OBJECTS, 2, generator=gen) * 200], -1)
    out = {
        "words": words,
        "words_mask": words != 0,
        "objects": torch.randn(batch, OBJECTS, 2048, generator=gen),
        "objects_mask": torch.ones(batch, OBJECTS, dtype=torch.bool),
        "boxes": boxes,
        "answer_scores": (torch.rand(batch, ANSWERS, generator=gen) > 0.999).float(),
    }
    return {k: v.to(device or "cpu") for k, v in out.items()}


# The two paths the issue pins (docs/performance.md), as indices into the pools above:
# enc = SA | FFN, dec = SA | RSA | GA | FFN.
PATHS = {
    "mcan": [0, 1] * 6 + [0, 2, 3] * 6,  # encoder (SA FFN)*6, decoder (SA GA FFN)*6
    "rsa": [0, 1] * 6 + [1, 2, 3] * 6,  # encoder (SA FFN)*6, decoder (RSA GA FFN)*6
}


@dataclass
class Bench:
    """One supernet, its optimisers and a batch: what a W or θ step needs, in a precision.

    `arch` pins the W step's path (`mcan`, `rsa`) or draws it from softmax(α) (`sample`);
    the θ step always draws its two candidates per block from α (uniform at α = 0).
    """

    net: Supernet
    w_opt: torch.optim.Optimizer
    searcher: Searcher
    batch: dict[str, torch.Tensor]
    gen: torch.Generator
    arch: str = "sample"
    precision: str = "fp32"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def autocast(self) -> contextlib.AbstractContextManager:
        return precision_context(self.precision, self.device)

    def set_w_routes(self) -> None:
        if self.arch == "sample":
            self.net.set_routes(self.searcher.w_routes(self.gen, warmup=False))
        else:
            self.net.set_arch(PATHS[self.arch])

    def w_step(self) -> list[int]:
        """Forward, loss, backward, clip 1.0, fused Adam: Algorithm 1's W update."""
        self.set_w_routes()
        self.w_opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.net.loss(self.net(self.batch), self.batch)
        loss.backward()
        params = [p for p in self.net.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        self.w_opt.step()
        sync(self.device)
        return self.net.arch

    def theta_step(self) -> list[int]:
        """`OneShotSearcher.learn`: two candidates per block, α's gradients only."""
        self.searcher.learn(theta_batch(self.net, self.batch, autocast=self.autocast), self.gen)
        sync(self.device)
        return self.net.arch  # the active candidate of each block

    def time_w(self, n: int) -> list[float]:
        return timed(self.w_step, n)[0]

    def time_theta(self, n: int) -> list[float]:
        return timed(self.theta_step, n)[0]


def make_bench(
    d: int,
    batch_size: int,
    arch: str = "sample",
    precision: str = "fp32",
    estimator: str = "two",
    device: torch.device | None = None,
) -> Bench:
    """The bench's supernet at width d with a random batch (seeded), on `device`."""
    device = device or torch.device("cpu")
    spec = parse(SPEC, "bench")
    torch.manual_seed(0)
    net = build_model(spec, vocab_size=VOCAB, num_answers=ANSWERS, d_model=d).to(device)
    assert isinstance(net, Supernet)
    net.train()
    w_opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9, fused=True)
    settings = SearchSettings(estimator=estimator)  # type: ignore[arg-type]
    searcher = OneShotSearcher(space_of(spec), settings, seed=0).to(device)
    batch = make_batch(batch_size, torch.Generator().manual_seed(0), device)
    gen = torch.Generator(device=device).manual_seed(0)  # paths are drawn where α lives
    return Bench(net, w_opt, searcher, batch, gen, arch, precision, device)


def timed(step: Callable[[], list[int]], n: int) -> tuple[list[float], list[list[int]]]:
    times, archs = [], []
    for _ in range(n):
        t = time.perf_counter()
        archs.append(step())
        times.append(time.perf_counter() - t)
    return times, archs


class RssSampler:
    """The largest resident set seen while a `with sampler.watch():` block runs."""

    def __init__(self, every: float = 0.01) -> None:
        self.every, self.page = every, os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    @contextlib.contextmanager
    def watch(self) -> Iterator[dict[str, float]]:
        out = {"peak_gb": 0.0}
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                out["peak_gb"] = max(out["peak_gb"], self.rss() / 1024**3)
                stop.wait(self.every)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        try:
            yield out
        finally:
            stop.set()
            t.join()


@contextlib.contextmanager
def rsa_unbatched(on: bool) -> Iterator[None]:
    """With `on`, RSA blocks compute their relation masks one by one (as before issue 16)
    instead of in one matmul per run (`RelationSelfAttention.prepare`): the A/B of that
    change inside one process."""
    if not on:
        yield
        return
    rsa = get_op("RSA")
    saved = rsa.__dict__["prepare"]
    rsa.prepare = staticmethod(lambda blocks, ctx: None)  # type: ignore[method-assign]
    try:
        yield
    finally:
        rsa.prepare = saved  # type: ignore[method-assign]


def gpu_reset(device: torch.device) -> None:
    """Start a fresh CUDA memory peak (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def bench_cases(b: Bench, graph: Any, steps: int, variants: list[str]) -> list[dict]:
    """W and θ steps of one (width, arch) in each variant (a precision, `+unbatched` for
    RSA's per-block masks), alternating variants step by step after one warm-up step each;
    one record per variant."""
    batch_size = b.batch["words"].shape[0]
    sampler = RssSampler()
    recs: dict[str, dict] = {}
    for v in variants:
        recs[v] = {"d_model": graph.settings.d_model, "heads": b.net.settings.n_heads}
        recs[v].update(batch=batch_size, arch=b.arch, precision=v.split("+")[0])
        recs[v].update(rsa_batched="+unbatched" not in v, variant=v, peak_rss_gb=0.0)
        recs[v]["checkpoint"] = b.net.checkpoint
        recs[v]["estimator"] = b.searcher.settings.estimator
        recs[v]["device"] = b.device.type
    for name in ("w_step", "theta_step"):
        runs: dict[str, tuple[list[float], list[list[int]]]] = {v: ([], []) for v in variants}
        phase_rss: dict[str, float] = {}  # W steps run first: their peak is the W step's
        for i in range(steps + 1):
            for v in variants:
                b.precision = recs[v]["precision"]
                step = b.w_step if name == "w_step" else b.theta_step
                gpu_reset(b.device)
                with sampler.watch() as seen, rsa_unbatched(not recs[v]["rsa_batched"]):
                    times, archs = timed(step, 1)
                recs[v]["peak_rss_gb"] = max(recs[v]["peak_rss_gb"], seen["peak_gb"])
                if b.device.type == "cuda":
                    gpu = torch.cuda.max_memory_allocated(b.device) / 1024**3
                    recs[v]["peak_gpu_mem_gb"] = max(recs[v].get("peak_gpu_mem_gb", 0.0), gpu)
                phase_rss[v] = max(phase_rss.get(v, 0.0), seen["peak_gb"])
                if i > 0:  # step 0 is the warm-up: allocator, Adam state
                    runs[v][0].extend(times)
                    runs[v][1].extend(archs)
        for v, (times, archs) in runs.items():
            per_pass = 3  # W: fwd + 2 x bwd; θ: 2 forwards + bwd w.r.t. activations only
            flops = [per_pass * graph.flops(a, WORDS, OBJECTS) * batch_size for a in archs]
            recs[v][name] = {
                "seconds_median": statistics.median(times),
                "seconds_all": times,
                "gflop": statistics.mean(flops) / 1e9,
                "gflops_per_s": sum(flops) / sum(times) / 1e9,
                "peak_rss_gb": phase_rss[v],
            }
    for rec in recs.values():
        rec["theta_over_w"] = rec["theta_step"]["seconds_median"] / rec["w_step"]["seconds_median"]
    return list(recs.values())


def process_rss_gb() -> float:
    """The process's peak resident set so far (ru_maxrss: it only grows)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report(results: list[dict], peaks: dict[str, float]) -> None:
    """Shares of each precision's own peak, printed one line per (case, step)."""
    for r in results:
        for name in ("w_step", "theta_step"):
            s = r[name]
            s["share_of_peak"] = s["gflops_per_s"] / peaks[r["precision"]]
            print(
                f"d={r['d_model']:4d} {r['arch']:6s} {r['variant']:14s} {name:10s} "
                f"{s['seconds_median']:7.2f} s  {s['gflop']:8.1f} GFLOP  "
                f"{s['gflops_per_s']:6.1f} GFLOP/s  {100 * s['share_of_peak']:5.1f}% of peak"
                + (
                    f"   θ/W {r['theta_over_w']:.2f}  RSS {r['peak_rss_gb']:.2f} GB"
                    if name == "theta_step"
                    else ""
                )
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 16, 2 steps, smaller peak test")
    ap.add_argument("--threads", type=positive, default=2)
    ap.add_argument("--steps", type=positive, default=None, help="timed steps per kind")
    ap.add_argument("--batch", type=positive, default=None, help="samples per step (default 64)")
    ap.add_argument("--widths", type=positive, nargs="+", default=[512, 256])
    ap.add_argument("--arch", nargs="+", choices=("mcan", "rsa", "sample"), default=["sample"])
    ap.add_argument(
        "--precision", nargs="+", choices=PRECISIONS, default=["fp32"], help="tf32: CUDA only"
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument(
        "--peak-size", type=positive, default=None, help="n of the n x n peak matmuls (2048)"
    )
    ap.add_argument("--checkpoint", action="store_true", help="per-block activation checkpointing")
    ap.add_argument(
        "--estimator", choices=("two", "full"), default="two", help="θ step: two or all candidates"
    )
    ap.add_argument(
        "--unbatched-too",
        action="store_true",
        help="also run each precision with RSA's masks computed block by block (A/B)",
    )
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    device = torch.device(args.device)
    problem = check_device(device, args.precision)
    if problem:
        ap.exit(2, f"bench/step.py: {problem}\n")
    torch.set_num_threads(args.threads)
    batch = args.batch or (16 if args.quick else 64)
    steps = args.steps or 2
    peak_n, peak_reps = (1024, 5) if args.quick else (2048, 10)
    peak_n = args.peak_size or peak_n
    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_before": os.getloadavg(),
        "device": args.device,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    print(
        f"{info['cpu']}, {info['nproc']} cpus, torch {info['torch']}, {args.threads} threads, "
        f"OMP_WAIT_POLICY={info['omp_wait_policy']}, flags {' '.join(info['cpu_flags'])}, "
        f"torch CPU capability {info['cpu_capability']}"
        + (f", GPU {info['gpu']}" if "gpu" in info else "")
    )
    samples: dict[str, list[float]] = {p: [] for p in args.precision}
    results: list[dict] = []

    def sample_peaks() -> None:
        for p in args.precision:
            samples[p].append(matmul_peak(peak_n, peak_reps, p, device))

    spec = parse(SPEC, "bench")
    for d in args.widths:
        sample_peaks()
        graph = build_graph(spec, vocab_size=VOCAB, num_answers=ANSWERS, d_model=d)
        for arch in args.arch:
            b = make_bench(d, batch, arch, estimator=args.estimator, device=device)
            b.net.checkpoint = args.checkpoint
            variants = list(args.precision)
            if args.unbatched_too:
                variants += [f"{p}+unbatched" for p in args.precision]
            cases = bench_cases(b, graph, steps, variants)
            for case in cases:  # as they finish: a run stopped later keeps these
                print(json.dumps(case), flush=True)
            results.extend(cases)
            del b
    sample_peaks()
    peaks = {p: max(v) for p, v in samples.items()}  # the best seen: shares are not flattered
    for p, v in samples.items():
        print(
            f"{p} matmul peak: {peaks[p]:.1f} GFLOP/s (samples {', '.join(f'{x:.1f}' for x in v)})"
        )
    print(f"load avg before {info['load_before'][0]:.2f}")
    report(results, peaks)
    rss = process_rss_gb()
    info.update(peak_gflops=peaks, peak_samples=samples)
    info.update(process_peak_rss_gb=rss, load_after=os.getloadavg(), results=results)
    print(f"process peak RSS {rss:.2f} GB   load avg after {info['load_after'][0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
