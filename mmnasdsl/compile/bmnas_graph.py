"""A BM-NAS spec as a graph (networkx), with the sizes `info` and `render` read; no torch.

Nodes (by `kind`):

- `input:<modality>` (`input`): `label`, `taps` (its tap names);
- `tap:<name>` (`tap`): `modality`, `channels`, `dims`, `params`, `flops` (its adapter; 0
  for a tap a derived network does not read, which gets none);
- `cell:<name>` (`cell`, the cell's output): `index`, `inputs` (the pair, or None:
  searched), `candidates` (the states it may fuse), `concat`, `params` (merge conv and
  norm), `flops`;
- `pair:<cell>:x`, `pair:<cell>:y` (`slot`): the cell's two inputs inside it;
- `step:<cell>:<k>` (`step`): `cell`, `index`, `name` (s1, ...), `choices` (ops), `inputs`
  (None: searched), `params` and `flops` ({op: n});
- `head` (`head`): `label` (the task), `params`, `flops`.

Edges (`kind`): `tap` (input -> its taps), `pair` (a fixed input of a cell -> its slot),
`candidate` (every state a searched cell may fuse -> its slot x), `inner` (an inner state ->
a step, with `slot` x or y; a searched step's edges come from every earlier inner state,
`slot` None), `output` (a concatenated step -> its cell), `residual` (slot x -> its cell),
`head` (the last cells -> the head).

Parameters and FLOPs come from formulas (the fusion ops' `params`/`flops`, the head's, and
the adapters' and cells' below); `tests/test_bmnas_model.py` checks them against the built
modules. FLOPs count 2 per multiply-add of the 1x1 convs, attention products and linears;
pooling, norms and activations are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import networkx as nx

from mmnasdsl.heads import make_task
from mmnasdsl.lang.bmnas_settings import (
    BMNasModel,
    TapSettings,
    bmnas_model,
    fused_features,
    taps_of,
)
from mmnasdsl.lang.bmnas_spec import PAIR, BMNasSpec, CellPlan, inner_states
from mmnasdsl.ops.fusion import get_fusion_op


def adapter_params(tap: TapSettings, s: BMNasModel) -> int:
    """1x1 conv C_in -> C (with bias) and BatchNorm(C)."""
    return tap.channels * s.channels + s.channels + 2 * s.channels


def adapter_flops(tap: TapSettings, s: BMNasModel) -> int:
    return 2 * tap.channels * s.channels * s.length


def cell_params(plan: CellPlan, s: BMNasModel) -> int:
    """The cell's own layers: the merge (1x1 conv nm·C -> C, BatchNorm) when it concatenates
    more than one step, and LayerNorm([C, L])."""
    c, nm = s.channels, plan.concat
    merge = nm * c * c + c + 2 * c if nm > 1 else 0
    return merge + 2 * c * s.length


def cell_flops(plan: CellPlan, s: BMNasModel) -> int:
    return 2 * plan.concat * s.channels * s.channels * s.length if plan.concat > 1 else 0


class FusionGraph:
    """The network (or supernet) of a BM-NAS spec as a graph, with its sizes."""

    def __init__(self, spec: BMNasSpec, *, num_answers: int | None = None) -> None:
        self.spec = spec
        self.settings = bmnas_model(spec)
        self.taps = taps_of(spec)
        self.live = spec.live_taps()  # the taps with an adapter
        self.cells = spec.cells()
        self.fused = fused_features(spec)
        self.task = make_task(spec, num_answers)
        self.task_name = spec.task
        self.search_space_size = spec.search_space_size()
        self.g = self._graph()

    # -- the graph ----------------------------------------------------------------------

    def _graph(self) -> nx.DiGraph:
        g, s = nx.DiGraph(), self.settings
        for modality, names in self.spec.modalities.items():
            g.add_node(f"input:{modality}", kind="input", label=modality, taps=tuple(names))
            for name in names:
                tap = self.taps[name]
                g.add_node(
                    f"tap:{name}",
                    kind="tap",
                    label=name,
                    modality=modality,
                    channels=tap.channels,
                    dims=tap.dims,
                    params=adapter_params(tap, s) if name in self.live else 0,
                    flops=adapter_flops(tap, s) if name in self.live else 0,
                )
                g.add_edge(f"input:{modality}", f"tap:{name}", kind="tap")
        before = [f"tap:{t}" for t in self.taps]
        for plan in self.cells:
            self._cell(g, plan, before)
            before.append(f"cell:{plan.name}")
        g.add_node(
            "head",
            kind="head",
            label=self.task_name,
            params=self.head_params(),
            flops=int(self.task.flops(self.fused)),
        )
        for plan in self.cells[len(self.cells) - self.fused.cells :]:
            g.add_edge(f"cell:{plan.name}", "head", kind="head")
        return g

    def _cell(self, g: nx.DiGraph, plan: CellPlan, before: list[str]) -> None:
        s, cell = self.settings, f"cell:{plan.name}"
        g.add_node(
            cell,
            kind="cell",
            label=plan.name,
            index=plan.index,
            inputs=plan.inputs,
            candidates=tuple(n.split(":", 1)[1] for n in before),
            concat=plan.concat,
            params=cell_params(plan, s),
            flops=cell_flops(plan, s),
        )
        for slot in PAIR:
            g.add_node(_inner_id(plan.name, slot), kind="slot", cell=plan.name, label=slot)
        if plan.inputs is not None:
            for slot, name in zip(PAIR, plan.inputs, strict=True):
                g.add_edge(_state_id(name, before), _inner_id(plan.name, slot), kind="pair")
        else:
            for node in before:
                g.add_edge(node, _inner_id(plan.name, "x"), kind="candidate")
        g.add_edge(_inner_id(plan.name, "x"), cell, kind="residual")
        for step in plan.steps:
            node = step_id(plan.name, step.index)
            g.add_node(
                node,
                kind="step",
                cell=plan.name,
                index=step.index,
                name=step.name,
                label=step.name,
                choices=step.ops,
                inputs=step.inputs,
                params={op: get_fusion_op(op).params(s) for op in step.ops},
                flops={op: get_fusion_op(op).flops(s) for op in step.ops},
            )
            if step.inputs is not None:
                for slot, name in zip(PAIR, step.inputs, strict=True):
                    g.add_edge(_inner_id(plan.name, name), node, kind="inner", slot=slot)
            else:
                for name in inner_states(step.index):
                    g.add_edge(_inner_id(plan.name, name), node, kind="inner", slot=None)
            if step.index in plan.concat_steps:
                g.add_edge(node, cell, kind="output")

    # -- sizes --------------------------------------------------------------------------

    def head_params(self) -> int:
        return int(self.task.params(self.fused))

    def largest_arch(self) -> list[tuple[str, ...]]:
        """Per cell, per step, the candidate op with the most parameters (ties: the first)."""
        s = self.settings
        return [
            tuple(max(st.ops, key=lambda op: get_fusion_op(op).params(s)) for st in plan.steps)
            for plan in self.cells
        ]

    def params(self, ops: Sequence[Sequence[str]] | None = None) -> dict[str, int]:
        """Parameters of the network with these ops per cell and step, or (None) of the
        supernet, every candidate: {"total", "adapters", "cells", "head"}."""
        s = self.settings
        out = {
            "adapters": sum(adapter_params(self.taps[t], s) for t in self.live),
            "cells": 0,
            "head": self.head_params(),
        }
        for i, plan in enumerate(self.cells):
            out["cells"] += cell_params(plan, s)
            for k, st in enumerate(plan.steps):
                chosen = st.ops if ops is None else (ops[i][k],)
                out["cells"] += sum(get_fusion_op(op).params(s) for op in chosen)
        return {"total": sum(out.values()), **out}

    def flops(self, ops: Sequence[Sequence[str]] | None = None) -> int:
        """Forward FLOPs per sample of the network with these ops (default: the largest)."""
        ops = self.largest_arch() if ops is None else ops
        s = self.settings
        total = sum(adapter_flops(self.taps[t], s) for t in self.live)
        for i, plan in enumerate(self.cells):
            total += cell_flops(plan, s)
            total += sum(get_fusion_op(ops[i][k]).flops(s) for k in range(len(plan.steps)))
        return total + int(self.task.flops(self.fused))

    def summary(self) -> dict[str, Any]:
        """What `mmnasdsl info` shows of a BM-NAS spec, as JSON-able Python."""
        s, ops = self.settings, self.largest_arch()
        params = self.params(ops)
        params["supernet_total"] = self.params()["total"]
        cells = []
        for plan in self.cells:
            node = self.g.nodes[f"cell:{plan.name}"]
            steps = [
                {
                    "name": st.name,
                    "inputs": list(st.inputs) if st.inputs else None,
                    "choices": list(st.ops),
                    "params": dict(self.g.nodes[step_id(plan.name, st.index)]["params"]),
                    "flops": dict(self.g.nodes[step_id(plan.name, st.index)]["flops"]),
                }
                for st in plan.steps
            ]
            cells.append(
                {
                    "name": plan.name,
                    "inputs": list(plan.inputs) if plan.inputs else None,
                    "candidates": list(node["candidates"]) if plan.inputs is None else None,
                    "concat": plan.concat,
                    "params": node["params"],
                    "steps": steps,
                }
            )
        return {
            "spec": self.spec.source,
            "kind": "bmnas",
            "task": self.task_name,
            "concrete": self.spec.is_concrete,
            "search_space_size": self.search_space_size,
            "settings": s.model_dump(),
            "taps": [
                {
                    "name": name,
                    "modality": self.g.nodes[f"tap:{name}"]["modality"],
                    "shape": [tap.channels, *tap.dims],
                    "params": self.g.nodes[f"tap:{name}"]["params"],
                    "flops": self.g.nodes[f"tap:{name}"]["flops"],
                }
                for name, tap in self.taps.items()
            ],
            "cells": cells,
            "head": {"reads": [c.name for c in self.cells[len(self.cells) - self.fused.cells :]]},
            "params": params,
            "flops_per_sample": self.flops(ops),
        }


def step_id(cell: str, k: int) -> str:
    return f"step:{cell}:{k}"


def _inner_id(cell: str, name: str) -> str:
    """An inner state's node: a step's, or the cell's own pair slots (`pair:<cell>:x`)."""
    if name in PAIR:
        return f"pair:{cell}:{name}"
    return step_id(cell, int(name[1:]) - 1)


def _state_id(name: str, before: list[str]) -> str:
    return next(n for n in before if n.split(":", 1)[1] == name)


def build_bmnas_graph(spec: BMNasSpec, *, num_answers: int | None = None, **_: Any) -> FusionGraph:
    """The graph of a checked BM-NAS spec (`compile.graph.GRAPHS["bmnas"]`); the MMnas
    sizes (`vocab_size`, `d_model`) mean nothing here and are ignored."""
    return FusionGraph(spec, num_answers=num_answers)
