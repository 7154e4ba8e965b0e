"""Spec -> supernet graph (networkx), with the sizes `info`, `render` and the bench read.

Nodes and edges follow docs/interfaces.md ("Graph"): `input:<name>` -> `stem:<name>` ->
`block:<stack>:<i>` ... -> `head` (flow edges, stream order); `guide` edges from the last
node of a guide stream to every block with a guide-needing candidate (GA); `relations`
edges from the `relations` node to every block with a relation-needing candidate (RSA).

Sizes:
- search-space size: the product of the candidates of every block (2^M·4^N in the paper).
- parameters: from the formulas of the ops (`Op.params`), the heads (`Task.params`) and the
  stems here, so `info` needs no torch and allocates nothing at any size; an op or head
  without a formula is built once on the `meta` device and counted (tests/test_graph.py
  checks every formula against the built modules). `params(arch)` splits a network into
  `embedding` (the input stems: word embedding + LSTM, object projection, and the shared
  relation layer), `encoder`, `decoder` and `head`; `params()` (no arch) is the whole
  supernet, every candidate, which is what
  `sum(p.numel() for p in build_model(spec).parameters())` gives (the searcher's
  architecture logits, one per candidate, are not the network's).
- FLOPs: forward FLOPs per sample, 2 per multiply-add of every matmul (projections,
  QKᵀ, AV, FFN, LSTM, stems, head); softmax, LayerNorm, ReLU and dropout are left out
  (< 2% at the paper's sizes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import networkx as nx

from mmnasdsl.compile.bmnas_graph import build_bmnas_graph
from mmnasdsl.heads import Task, build_head, make_task
from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.settings import (
    DEFAULT_VOCAB,
    InputSettings,
    ModelSettings,
    WordsInput,
    scaled_settings,
    spec_inputs,
)
from mmnasdsl.lang.spec import Block, Spec
from mmnasdsl.ops import build_op, get_op
from mmnasdsl.ops._registry import block_params as op_formula
from mmnasdsl.ops._registry import linear_params


def meta_count(build: Any) -> int:
    """Parameters of the module `build()` makes, built on the meta device (no memory)."""
    import torch

    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


@functools.lru_cache(maxsize=256)
def op_params(op: str, settings: ModelSettings) -> int:
    """Parameters of one op's block at these settings."""
    formula = op_formula(op, settings)
    return formula if formula is not None else meta_count(lambda: build_op(op, settings))


def stem_params(cfg: InputSettings, d: int, vocab_size: int) -> int:
    """Words: embedding, then a one-layer LSTM (two biases per gate) or a Linear; objects:
    a Linear from the feature width."""
    if isinstance(cfg, WordsInput):
        e = cfg.embed.dim
        body = 4 * (e * d + d * d + 2 * d) if cfg.lstm else linear_params(e, d)
        return vocab_size * e + body
    return linear_params(cfg.dim, d)


def relation_params(relation_dim: int) -> int:
    """The shared first layer of RSA's relation MLP: Linear(4 -> relation_dim)."""
    return linear_params(4, relation_dim)


def head_params(task: Task, settings: ModelSettings) -> int:
    formula = task.params(settings)
    return formula if formula is not None else meta_count(lambda: build_head(task, settings))


def stem_flops(cfg: InputSettings, d: int, n: int) -> int:
    if isinstance(cfg, WordsInput):
        e = cfg.embed.dim
        return 2 * n * (4 * (e * d + d * d) if cfg.lstm else e * d)
    return 2 * n * cfg.dim * d


class SupernetGraph:
    """The supernet of a spec as a graph, with search-space size, parameters and FLOPs."""

    def __init__(
        self,
        spec: Spec,
        *,
        vocab_size: int = DEFAULT_VOCAB,
        num_answers: int | None = None,
        d_model: int | None = None,
    ) -> None:
        self.spec = spec
        self.settings = scaled_settings(spec, d_model)
        self.vocab_size = vocab_size
        self.inputs = spec_inputs(spec)
        self.blocks: list[Block] = spec.blocks()
        self.search_space_size = spec.search_space_size()
        self.task = make_task(spec, num_answers)
        self.task_name = spec.task
        self.g = self._graph()

    # -- the graph ----------------------------------------------------------------------

    def _graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        last: dict[str, str] = {}
        for name, cfg in self.inputs.items():
            g.add_node(f"input:{name}", kind="input", label=name, input_kind=cfg.kind)
            label = "LSTM" if isinstance(cfg, WordsInput) and cfg.lstm else "Linear"
            g.add_node(
                f"stem:{name}",
                kind="stem",
                label=label,
                params=stem_params(cfg, self.settings.d_model, self.vocab_size),
            )
            g.add_edge(f"input:{name}", f"stem:{name}", kind="flow")
            last[name] = f"stem:{name}"
        for b in self.blocks:
            node = block_id(b)
            g.add_node(
                node,
                kind="block",
                stack=b.stack,
                stream=b.stream,
                index=b.index,
                choices=tuple(b.choices),
                guide=b.guide,
                params=self.block_params(b),
                flops={op: self.op_flops(b, op) for op in b.choices},
            )
            g.add_edge(last.get(b.stream, f"input:{b.stream}"), node, kind="flow")
            last[b.stream] = node
        self._side_edges(g, last)
        g.add_node("head", kind="head", label=self.task_name, params=self.head_params())
        for stream in self.head_streams():
            g.add_edge(last[stream], "head", kind="flow")
        return g

    def _side_edges(self, g: nx.DiGraph, last: dict[str, str]) -> None:
        """Guide edges from each guide stream's last node; the relations node and its edges."""
        if self.relation_blocks():
            g.add_node("relations", kind="relations", label="box4")
        for b in self.blocks:
            ops = [get_op(op).needs for op in b.choices]
            if b.guide and any("guide" in needs for needs in ops):
                g.add_edge(last.get(b.guide, f"input:{b.guide}"), block_id(b), kind="guide")
            if any("relations" in needs for needs in ops):
                g.add_edge("relations", block_id(b), kind="relations")

    def head_streams(self) -> list[str]:
        kinds = {cfg.kind: name for name, cfg in reversed(self.inputs.items())}
        return [kinds[k] for k in self.task.requires if k in kinds]

    def relation_blocks(self, arch: Sequence[int] | None = None) -> bool:
        """Whether the network (of this arch, or the supernet) needs the shared relation layer."""
        for i, b in enumerate(self.blocks):
            ops = b.choices if arch is None else (b.choices[arch[i]],)
            if any("relations" in get_op(op).needs for op in ops):
                return True
        return False

    # -- parameters ---------------------------------------------------------------------

    def block_params(self, block: Block) -> dict[str, int]:
        return {op: op_params(op, self.settings) for op in block.choices}

    def head_params(self) -> int:
        return head_params(self.task, self.settings)

    def embedding_params(self, arch: Sequence[int] | None) -> int:
        d = self.settings.d_model
        n = sum(stem_params(cfg, d, self.vocab_size) for cfg in self.inputs.values())
        if self.relation_blocks(arch):
            n += relation_params(self.settings.relation_dim)
        return n

    def params(self, arch: Sequence[int] | None = None) -> dict[str, int]:
        """Parameters of the network of `arch` (one index per block), or of the whole supernet.

        Returns: {"total", "embedding", "encoder", "decoder", "head"}.
        """
        out = {
            "embedding": self.embedding_params(arch),
            "encoder": 0,
            "decoder": 0,
            "head": self.head_params(),
        }
        for i, b in enumerate(self.blocks):
            per_op = self.block_params(b)
            if arch is None:
                out[b.stack] += sum(per_op.values())
            else:
                out[b.stack] += per_op[b.choices[arch[i]]]
        out["total"] = sum(out.values())
        return {"total": out.pop("total"), **out}

    def largest_arch(self) -> list[int]:
        """Per block, the candidate with the most parameters (ties: the first)."""
        arch = []
        for b in self.blocks:
            per_op = self.block_params(b)
            arch.append(max(range(len(b.choices)), key=lambda i: per_op[b.choices[i]]))
        return arch

    # -- FLOPs --------------------------------------------------------------------------

    def lengths(self, words: int | None = None, objects: int | None = None) -> dict[str, int]:
        """Stream name -> positions per sample (default: the inputs' max_len / max)."""
        out = {}
        for name, cfg in self.inputs.items():
            if isinstance(cfg, WordsInput):
                out[name] = words if words is not None else cfg.max_len
            else:
                out[name] = objects if objects is not None else cfg.max
        return out

    def op_flops(
        self, block: Block, op: str, words: int | None = None, objects: int | None = None
    ) -> int:
        n = self.lengths(words, objects)
        m = n.get(block.guide, 0) if block.guide else 0
        return int(get_op(op).flops(n[block.stream], m, self.settings))

    def flops(
        self,
        arch: Sequence[int] | None = None,
        words: int | None = None,
        objects: int | None = None,
    ) -> int:
        """Forward FLOPs per sample of `arch` (default: `largest_arch()`) at these input sizes."""
        arch = self.largest_arch() if arch is None else arch
        n = self.lengths(words, objects)
        d = self.settings.d_model
        total = sum(stem_flops(cfg, d, n[name]) for name, cfg in self.inputs.items())
        if self.relation_blocks(arch):
            n_obj = max((n[k] for k, c in self.inputs.items() if c.kind == "objects"), default=0)
            total += 2 * n_obj * n_obj * 4 * self.settings.relation_dim
        for i, b in enumerate(self.blocks):
            total += self.op_flops(b, b.choices[arch[i]], words, objects)
        n_w = max((n[k] for k, c in self.inputs.items() if c.kind == "words"), default=0)
        n_o = max((n[k] for k, c in self.inputs.items() if c.kind == "objects"), default=0)
        return total + int(self.task.flops(self.settings, n_w, n_o))


def block_id(block: Block) -> str:
    return f"block:{block.stack}:{block.index}"


GRAPHS: Registry[Callable[..., Any]] = Registry("space kind")  # kind -> graph builder


def build_graph(spec: Spec, **sizes: Any) -> Any:
    """The supernet graph of a checked spec, by its kind's builder (`GRAPHS`)."""
    return GRAPHS.get(spec.kind)(spec, **sizes)


@GRAPHS.register("mmnas")
def build_mmnas_graph(
    spec: Spec,
    *,
    vocab_size: int = DEFAULT_VOCAB,
    num_answers: int | None = None,
    d_model: int | None = None,
) -> SupernetGraph:
    """The supernet graph of a checked MMnas spec.

    Args:
        spec: a checked spec.
        vocab_size: word-embedding rows for the parameter count (default 20000).
        num_answers: VQA answer count; defaults to the head's `answers` option.
        d_model: optional width override, as in `build_model`.
    """
    return SupernetGraph(spec, vocab_size=vocab_size, num_answers=num_answers, d_model=d_model)


GRAPHS.register("bmnas")(build_bmnas_graph)

__all__ = ["DEFAULT_VOCAB", "SupernetGraph", "build_graph", "op_params"]
