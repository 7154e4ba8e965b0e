"""Where a W step and a θ step spend their time, by op kind (not a test).

    python bench/where.py --d 256 --batch 32                 # a few seconds per step
    python bench/where.py --d 512 --batch 64 --arch rsa      # paper scale, one path
    python bench/where.py --precision bf16

The bench's supernet (bench/step.py) with one path pinned (`--arch mcan|rsa`) or drawn
(`sample`). Forward and backward hooks on the modules below time each one *exclusively*
(a module's time minus that of the hooked modules inside it), so the rows add up to the
step. Backward times come from full backward hooks (pre-hook: the output's gradient is
ready; hook: the inputs' gradients are done); the CPU autograd engine runs them on the
calling thread, so the wall clock between the two is that module's backward. What no
hook covers lands in "other (forward|backward)": the autograd graph's glue, the loss's
backward, the stems' weight gradients. The hooks add some overhead; the step total is
printed next to an unhooked step's time so the cost is visible.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from step import Bench, make_bench  # bench/step.py (run from the repository root)
from torch import nn

from mmnasdsl.compile.network import ObjectStem, RelationEmbedding, WordStem
from mmnasdsl.ops._layers import MultiHeadAttention, OpBlock

ATT_OPS = ("SA", "GA", "RSA")


def category(name: str, module: nn.Module, parent_op: str | None) -> str | None:
    """The row a module's exclusive time goes to, or None when it is not hooked."""
    if isinstance(module, WordStem):
        return "words stem (embedding, LSTM)"
    if isinstance(module, ObjectStem):
        return "objects stem (Linear 2048 -> d)"
    if isinstance(module, RelationEmbedding):
        return "RSA relations, shared layer (R -> 64)"
    if isinstance(module, OpBlock):
        if module.op.__name__ == "FeedForward":
            return "FFN (fc1, ReLU, dropout, fc2) + residual dropout/add"
        if module.op.__name__ == "RelationSelfAttention":
            return "RSA log-prior (relu, clamp, log, permute) + residual dropout/add"
        return "SA/GA residual dropout/add"
    if isinstance(module, MultiHeadAttention):
        return "attention core (masks, head split, SDPA, merge)"
    if isinstance(module, nn.Linear) and name.split(".")[-1] in ("q", "k", "v", "o"):
        return "attention projections Q K V O"
    if isinstance(module, nn.Linear) and name.endswith(".rel"):
        return "RSA relations, per-block Linear(64 -> h)"
    if isinstance(module, (nn.LayerNorm,)) or type(module).__name__ == "ReferenceLayerNorm":
        return "LayerNorm (blocks)" if parent_op else "LayerNorm (head)"
    if name == "head":
        return "head (AttFlat x2, fusion, classifier)"
    return None


class Clock:
    """Exclusive wall time per category: a stack of open modules; the time between two
    events goes to the category on top (or to `other <phase>`)."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.totals: dict[str, float] = defaultdict(float)
        self.phase = "forward"
        self.last = time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        top = self.stack[-1] if self.stack else f"other ({self.phase})"
        self.totals[top] += now - self.last
        self.last = now

    def enter(self, cat: str) -> None:
        self.tick()
        self.stack.append(cat)

    def leave(self, cat: str) -> None:
        self.tick()
        if cat in self.stack:  # remove the innermost occurrence
            idx = len(self.stack) - 1 - self.stack[::-1].index(cat)
            del self.stack[idx]

    def mark(self, phase: str) -> None:
        """Close the current phase's time and start another (loss, optimizer, ...)."""
        self.tick()
        self.stack.clear()
        self.phase = phase


def instrument(net: nn.Module, clock: Clock) -> list[torch.utils.hooks.RemovableHandle]:
    """Forward and full backward hooks on every categorised module of `net`."""
    handles = []
    for name, module in net.named_modules():
        op = None
        parts = name.split(".")
        if "blocks" in parts:
            op = "block"
        cat = category(name, module, op)
        if cat is None:
            continue
        handles.append(module.register_forward_pre_hook(lambda m, a, c=cat: clock.enter(c)))
        handles.append(module.register_forward_hook(lambda m, a, o, c=cat: clock.leave(c)))
        handles.append(module.register_full_backward_pre_hook(lambda m, g, c=cat: clock.enter(c)))
        handles.append(module.register_full_backward_hook(lambda m, gi, go, c=cat: clock.leave(c)))
    return handles


def profile_w(b: Bench, clock: Clock) -> None:
    """One W step with phase marks: forward, loss, backward, clip, optimizer."""
    b.set_w_routes()
    b.w_opt.zero_grad(set_to_none=True)
    clock.mark("forward")
    with b.autocast():
        out = b.net(b.batch)
        clock.mark("loss")
        loss = b.net.loss(out, b.batch)
    clock.mark("backward")
    loss.backward()
    clock.mark("clip")
    torch.nn.utils.clip_grad_norm_([p for p in b.net.parameters() if p.grad is not None], 1.0)
    clock.mark("optimizer")
    b.w_opt.step()
    clock.mark("end")


def profile_theta(b: Bench, clock: Clock) -> None:
    """One θ step: the searcher's own code; the loss phase is not split from the forward."""
    clock.mark("forward")
    b.theta_step()
    clock.mark("end")


def run(b: Bench, steps: int, body: Callable[[Bench, Clock], None]) -> dict:
    """Median exclusive seconds per category over `steps` hooked steps after a warm-up."""
    clock = Clock()
    handles = instrument(b.net, clock)
    body(b, clock)  # warm-up
    per_step: list[dict[str, float]] = []
    walls = []
    for _ in range(steps):
        clock.totals.clear()
        t = time.perf_counter()
        body(b, clock)
        walls.append(time.perf_counter() - t)
        per_step.append(dict(clock.totals))
    for h in handles:
        h.remove()
    cats = sorted({k for s in per_step for k in s if not k.startswith("other (end")})
    rows = {c: statistics.median(s.get(c, 0.0) for s in per_step) for c in cats}
    return {"hooked_wall_median": statistics.median(walls), "rows": rows}


def table(title: str, res: dict, plain: float) -> str:
    total = sum(res["rows"].values())
    lines = [
        f"### {title}",
        "",
        f"hooked step {res['hooked_wall_median']:.2f} s (unhooked {plain:.2f} s); rows sum to "
        f"{total:.2f} s",
        "",
        "| where | seconds | share |",
        "|---|---|---|",
    ]
    for cat, sec in sorted(res["rows"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {cat} | {sec:.3f} | {100 * sec / total:.1f} % |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--arch", choices=("mcan", "rsa", "sample"), default="rsa")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    b = make_bench(args.d, args.batch, args.arch, args.precision)
    plain_w = b.time_w(args.steps)
    plain_t = b.time_theta(args.steps)
    w = run(b, args.steps, profile_w)
    t = run(b, args.steps, profile_theta)
    head = f"d={args.d}, batch {args.batch}, arch {args.arch}, {args.precision}"
    print(table(f"W step ({head})", w, statistics.median(plain_w)))
    print()
    print(table(f"θ step ({head})", t, statistics.median(plain_t)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "w": w, "theta": t, "plain": [plain_w, plain_t]}, f)


if __name__ == "__main__":
    main()
