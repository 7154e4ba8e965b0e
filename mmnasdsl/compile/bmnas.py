"""BM-NAS as PyTorch modules (Yin et al., AAAI 2022; the official code's facts in notes §1-6).

- `Adapter`: a tap (B, C_in, *dims) -> adaptive max pool to (C_in, L) -> 1x1 conv to C ->
  BatchNorm -> ReLU -> dropout -> (B, C, L). `model { pooling = sequence }` pools the first axis
  to L and max-reduces the rest (NTU, Ego); `pooling = grid` pools the first two axes to a
  √L x √L grid and flattens it (MM-IMDB). A vector is replicated along L.
- `FusionCell`: its pair (x, y), then its steps, each a fusion op (`ops.fusion`) over two
  earlier inner states; the last `concat` steps concatenated (and mapped back to C by a 1x1
  conv, BatchNorm, ReLU, dropout when more than one), plus x, LayerNorm([C, L]).
- `FusionNetwork`: the adapters, the cells over the growing list of states (taps, then
  cell outputs), the last `model { concat }` cells concatenated into the task's head
  (`Task.fuse`).

A concrete spec's network has no choice points. A search space's network holds every
candidate, and like the MMnas `Supernet` it holds no architecture parameters: each step
the searcher sets a *route* per choice point (`lang.bmnas_spec.choice_points`: edges and
ops). An edge's route weights its candidates ("none" adds nothing, "skip" adds the state),
so DARTS' mixture, a sampled path and a derived architecture are all routes:

- a searched pair: x = y = Σ_j route_j · state_j over the states before the cell (the
  official code's shared sum, `model { op_inputs = shared }`); with `op_inputs = separate`,
  x and y are two separately weighted sums (edges `c1.x<-a2`, `c1.y<-a2`);
- a step with searched inputs: likewise over x, y and the earlier steps;
- a step with several ops: Σ_k route_k · op_k(x, y), as `compile.supernet.MixedBlock`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmnasdsl.compile.supernet import Leg, Route
from mmnasdsl.heads import build_head, make_task
from mmnasdsl.lang.bmnas_settings import BMNasModel, bmnas_model, fused_features, taps_of
from mmnasdsl.lang.bmnas_spec import (
    PAIR,
    BMNasSpec,
    CellPlan,
    ChoiceInfo,
    choice_points,
    inner_states,
    step_state,
)
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.ops import build_fusion_op

# ----------------------------------------------------------------------------- adapters


class Adapter(nn.Module):
    """One tap (B, C_in, *dims) -> (B, C, L): pool, 1x1 conv, BatchNorm, ReLU, dropout."""

    def __init__(self, channels_in: int, s: BMNasModel) -> None:
        super().__init__()
        self.kind, self.length, self.grid = s.pooling, s.length, s.grid
        self.conv = nn.Conv1d(channels_in, s.channels, 1)
        self.bn = nn.BatchNorm1d(s.channels)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(s.dropout)

    def pool(self, x: Tensor) -> Tensor:  # (B, C_in, *dims) -> (B, C_in, L)
        b, c = x.shape[:2]
        if self.kind == "grid":
            h = x.shape[2] if x.dim() > 2 else 1
            w = x.shape[3] if x.dim() > 3 else 1
            grid = x.reshape(b, c, h, w, -1).amax(-1)  # axes after the second max-reduced
            return F.adaptive_max_pool2d(grid, self.grid).reshape(b, c, self.length)
        t = x.shape[2] if x.dim() > 2 else 1
        seq = x.reshape(b, c, t, -1).amax(-1)  # axes after the first max-reduced
        return F.adaptive_max_pool1d(seq, self.length)  # (a shorter axis is replicated)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.act(self.bn(self.conv(self.pool(x)))))


# ------------------------------------------------------------------------------ routes

EDGE_SKIP = 1  # index of "skip" in an edge's candidates ("none", "skip")


def mix(states: Sequence[Tensor], routes: Sequence[Route]) -> Tensor:
    """Σ_j of each state's edge: a "skip" leg adds weight · state (a leg without gradient
    adds the value only), a "none" leg adds nothing."""
    out: Tensor | None = None
    for state, route in zip(states, routes, strict=True):
        for leg in route:
            if leg.index != EDGE_SKIP:
                continue
            value = state if leg.grad else state.detach()
            term = value if leg.weight is None else leg.weight * value
            out = term if out is None else out + term
    return out if out is not None else torch.zeros_like(states[0])


class OpChoice(nn.Module):
    """A step with several candidate ops: Σ over its route's legs of weight · op(x, y)."""

    def __init__(self, ops: Sequence[str], s: BMNasModel) -> None:
        super().__init__()
        self.names = tuple(ops)
        self.candidates = nn.ModuleList(build_fusion_op(op, s) for op in ops)

    def forward(self, x: Tensor, y: Tensor, route: Route) -> Tensor:
        if len(route) == 1 and route[0].weight is None and route[0].grad:
            return self.candidates[route[0].index](x, y)
        out: Tensor | None = None
        for leg in route:
            if leg.grad:
                o = self.candidates[leg.index](x, y)
            else:
                with torch.no_grad():
                    o = self.candidates[leg.index](x, y)
            term = o if leg.weight is None else leg.weight * o
            out = term if out is None else out + term
        assert out is not None, "a route has at least one leg"
        return out


def default_route(info: ChoiceInfo) -> Route:
    """Before the searcher sets one: every edge skips (a plain sum), the first op runs."""
    return (Leg(EDGE_SKIP),) if info.role == "edge" else (Leg(0),)


# ------------------------------------------------------------------------------- cells


class FusionCell(nn.Module):
    """One fusion cell (the module docstring); its choice points are `points`."""

    def __init__(
        self, plan: CellPlan, before: list[str], points: list[ChoiceInfo], s: BMNasModel
    ) -> None:
        super().__init__()
        self.plan, self.before, self.points = plan, before, points
        self.separate = any(p.slot is not None for p in points)
        self.pair = tuple(before.index(n) for n in plan.inputs) if plan.inputs else None
        self.steps = nn.ModuleList(
            OpChoice(st.ops, s) if len(st.ops) > 1 else build_fusion_op(st.ops[0], s)
            for st in plan.steps
        )
        c, nm = s.channels, plan.concat
        self.merge = (
            nn.Sequential(
                nn.Conv1d(nm * c, c, 1), nn.BatchNorm1d(c), nn.ReLU(), nn.Dropout(s.dropout)
            )
            if nm > 1
            else None
        )
        self.norm = nn.LayerNorm([c, s.length])
        self.routes: dict[tuple[Any, ...], Route] = {}
        self.set_routes([default_route(p) for p in points])

    def set_routes(self, routes: Sequence[Route]) -> None:
        self.routes = {
            (p.step, p.role, p.slot, p.source): tuple(r)
            for p, r in zip(self.points, routes, strict=True)
        }

    def inputs(
        self, states: list[Tensor], names: list[str], step: int | None
    ) -> tuple[Tensor, Tensor]:
        """The two inputs of the cell (step None) or of one of its steps: fixed, or mixed."""
        fixed = self.pair if step is None else self._fixed_step(step)
        if fixed is not None:
            return states[fixed[0]], states[fixed[1]]
        if not self.separate:
            s = mix(states, [self.routes[(step, "edge", None, n)] for n in names])
            return s, s
        x, y = (mix(states, [self.routes[(step, "edge", slot, n)] for n in names]) for slot in PAIR)
        return x, y

    def _fixed_step(self, k: int) -> tuple[int, int] | None:
        inputs = self.plan.steps[k].inputs
        if inputs is None:
            return None
        names = inner_states(k)
        return names.index(inputs[0]), names.index(inputs[1])

    def forward(self, states: list[Tensor | None]) -> Tensor:  # (B, C, L) -> (B, C, L)
        x, y = self.inputs(states, self.before, None)
        inner = [x, y]
        names = list(PAIR)
        for k, module in enumerate(self.steps):
            a, b = self.inputs(inner, names, k)
            if isinstance(module, OpChoice):
                inner.append(module(a, b, self.routes[(k, "op", None, None)]))
            else:
                inner.append(module(a, b))
            names.append(step_state(k))
        out = torch.cat(inner[2:][-self.plan.concat :], 1)
        if self.merge is not None:
            out = self.merge(out)
        return self.norm(out + x)


# ----------------------------------------------------------------------------- network


class FusionNetwork(nn.Module):
    """A BM-NAS network: adapters, cells, the head; routes set per choice point."""

    def __init__(self, spec: BMNasSpec, *, num_answers: int | None = None) -> None:
        super().__init__()
        self.spec, self.settings = spec, bmnas_model(spec)
        s = self.settings
        self.taps = spec.tap_names
        live = spec.live_taps()  # a derived net reads only the taps its cells fuse
        self.adapters = nn.ModuleDict(
            {name: Adapter(tap.channels, s) for name, tap in taps_of(spec).items() if name in live}
        )
        self.points = choice_points(spec, separate=s.op_inputs == "separate")
        cells, before = [], list(self.taps)
        for plan in spec.cells():
            own = [p for p in self.points if p.cell == plan.name]
            cells.append(FusionCell(plan, list(before), own, s))
            before.append(plan.name)
        self.cells = nn.ModuleList(cells)
        self.fused = fused_features(spec)
        self.task = make_task(spec, num_answers)
        self.head = build_head(self.task, self.fused)

    # -- routes ------------------------------------------------------------------------------

    @property
    def sizes(self) -> list[int]:
        """Candidates per choice point, in point order."""
        return [len(p.candidates) for p in self.points]

    def set_routes(self, routes: Sequence[Route]) -> None:
        """What every choice point computes in the next forward (one route per point)."""
        if len(routes) != len(self.points):
            raise ValueError(f"the space has {len(self.points)} choice points, got {len(routes)}")
        for p, route in zip(self.points, routes, strict=True):
            for leg in route:
                if not 0 <= int(leg.index) < len(p.candidates):
                    raise ValueError(f"choice {leg.index} out of range at {p.name}")
        start = 0
        for cell in self.cells:
            n = len(cell.points)
            cell.set_routes(routes[start : start + n])
            start += n

    def set_arch(self, indices: Sequence[int]) -> None:
        """One candidate per point (an edge: none or skip at weight 1)."""
        self.set_routes([(Leg(int(i)),) for i in indices])

    # -- forward ---------------------------------------------------------------------------

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        states = [  # (B, C, L) each; a tap no cell reads is never computed
            self.adapters[t](batch[f"tap/{t}"]) if t in self.adapters else None for t in self.taps
        ]
        for cell in self.cells:
            states.append(cell(states))
        z = torch.cat(states[-self.fused.cells :], 1)  # (B, m·C, L)
        return self.head.fused(z, batch)

    def loss(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        return self.task.loss(out, batch)

    def predict(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.task.predict(out, batch)


def build_bmnas(
    spec: BMNasSpec,
    *,
    vocab_size: int = 0,
    num_answers: int | None = None,
    glove: Any = None,
    d_model: int | None = None,
) -> FusionNetwork:
    """The network of a checked BM-NAS spec (`compile.build.MODELS["bmnas"]`).

    Args:
        num_answers: the number of classes (the data's; default the head's `classes`).
        vocab_size, glove: unused (no words); d_model: refused (the width is `channels`).
    """
    if d_model is not None:
        raise UsageError("BM-NAS spaces have no d_model; set `model { channels = C }`")
    return FusionNetwork(spec, num_answers=num_answers)
