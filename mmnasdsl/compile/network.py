"""The MMnas backbone as PyTorch modules (paper §3): stems, stacks, a fixed `Network` and the
searchable `Supernet`.

A spec's inputs get stems (words: Embedding -> one-layer LSTM, or a Linear when
`lstm = false`; objects: Linear(dim -> d)); its stacks run over the streams in
dependency order (a stack guided by another stream runs after every stack over that
stream, so the decoder's GA reads the encoder's final output); the head reads the final
word and object streams. Blocks are kept in `spec.blocks()` order, the one block order
of the project.

`Network` is a concrete spec's model: each block is one op, no search machinery.
`Supernet` replaces every block by a `MixedBlock` holding all its candidate ops and
its architecture logits α. Outside `theta_step_mode`, only the op chosen by `set_arch`
runs, so a W step costs one sampled subnet.

θ gradient estimator (ProxylessNAS "two" mode; Cai et al., ICLR 2019, §3.2.1)
---------------------------------------------------------------------------
Under `theta_step_mode(generator)`, each searchable block with candidates p = softmax(α):

1. draws two distinct candidates i, j from p (without replacement);
2. renormalises them, q = softmax((α_i, α_j)) = (p_i, p_j) / (p_i + p_j), and draws the
   active one a ∈ {i, j} from q; the binary gate g is one-hot on a;
3. outputs out = g_i·o_i + g_j·o_j with the straight-through gates g = onehot + q - sg(q)
   (sg = stop-gradient), so the forward value is exactly o_a while
   ∂L/∂g_k = <∂L/∂out, o_k> and, through the two-way softmax Jacobian,
   ∂L/∂α_k = Σ_l ∂L/∂g_l · q_l (δ_kl − q_k) for k ∈ {i, j}; the other α get no gradient.

That is ProxylessNAS's update. The inactive candidate has gate value 0, so it contributes
nothing to ∂L/∂x or to its weights' gradients: it runs under `torch.no_grad()` and only
its output value enters ∂L/∂g. A θ step therefore costs two forward paths and one
backward path; `Supernet.theta_backward(loss)` makes that backward skip the weight
gradients. Single-choice blocks just run their op (their α stays constant).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmnasdsl.data.geometry import relation_features
from mmnasdsl.heads import get_head
from mmnasdsl.lang.settings import (
    InputSettings,
    ModelSettings,
    ObjectsInput,
    WordsInput,
    head_options,
    input_settings,
    objects_stream,
    words_stream,
)
from mmnasdsl.lang.spec import Block, InputDecl, Spec
from mmnasdsl.ops import BlockContext, get_op

# ----------------------------------------------------------------------------- stems


class WordStem(nn.Module):
    """Token ids (B, T) -> Embedding(vocab, e) -> LSTM(e -> d) or Linear(e -> d) -> (B, T, d)."""

    def __init__(self, cfg: WordsInput, d: int, vocab_size: int, glove: Any = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed.dim, padding_idx=0)
        if glove is not None:
            load_vectors(self.embed, glove)
        self.lstm = nn.LSTM(cfg.embed.dim, d, batch_first=True) if cfg.lstm else None
        self.proj = None if cfg.lstm else nn.Linear(cfg.embed.dim, d)

    def forward(self, words: Tensor) -> Tensor:
        e = self.embed(words)  # (B, T, e)
        if self.lstm is not None:
            return self.lstm(e)[0]  # (B, T, d); right padding never reaches a real token
        return self.proj(e)  # (B, T, d)


def load_vectors(embed: nn.Embedding, vectors: Any) -> None:
    """Initialise an embedding from a (vocab, dim) array (GloVe rows aligned with the vocab)."""
    v = torch.as_tensor(np.asarray(vectors), dtype=embed.weight.dtype)
    if v.shape != embed.weight.shape:
        raise ValueError(
            f"word vectors have shape {tuple(v.shape)}, "
            f"the embedding needs {tuple(embed.weight.shape)}"
        )
    with torch.no_grad():
        embed.weight.copy_(v)


class ObjectStem(nn.Module):
    """Region features (B, N, F) -> Linear(F -> d) -> (B, N, d)."""

    def __init__(self, cfg: ObjectsInput, d: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.dim, d)

    def forward(self, objects: Tensor) -> Tensor:
        return self.proj(objects)


class RelationEmbedding(nn.Module):
    """The shared first layer of RSA's relation MLP: R (B, N, N, 4) -> ReLU(Linear(4 -> r))."""

    def __init__(self, relation_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, relation_dim)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:  # -> (B, N, N, relation_dim)
        rel = batch.get("relations")
        if rel is None:
            rel = relation_features(batch["boxes"])
        return torch.relu(self.fc(rel))


def input_mask(batch: dict[str, Tensor], key: str) -> Tensor:
    """`words_mask` / `objects_mask` (B, n) bool, or all-real (words: id != 0) when absent."""
    mask = batch.get(f"{key}_mask")
    if mask is not None:
        return mask
    x = batch[key]
    return x != 0 if key == "words" else x.new_ones(x.shape[:2], dtype=torch.bool)


def make_stem(cfg: InputSettings, d: int, vocab_size: int, glove: Any = None) -> nn.Module:
    if isinstance(cfg, WordsInput):
        return WordStem(cfg, d, vocab_size, glove)
    return ObjectStem(cfg, d)


# ------------------------------------------------------------------------- the stacks


@dataclass(frozen=True)
class StackRun:
    """One stack as run: its stream, its guide stream, and its blocks' indices in block order."""

    stream: str
    guide: str | None
    blocks: tuple[int, ...]


def stack_runs(spec: Spec) -> list[StackRun]:
    """The stacks in an order that runs every stack over a guide stream before its users.

    Stable: among ready stacks, spec order (encoders before decoders in the paper's specs).
    Raises ValueError on a guide cycle (graph.build_graph reports it as a SpecError).
    """
    runs, start = [], 0
    for st in spec.stacks:
        n = len(spec.blocks(st))
        runs.append(StackRun(st.stream, st.guide, tuple(range(start, start + n))))
        start += n
    ordered: list[StackRun] = []
    while runs:
        ready = [r for r in runs if not any(o.stream == r.guide for o in runs if o is not r)]
        if not ready:
            raise ValueError("the stacks' guides form a cycle")
        ordered.append(ready[0])
        runs.remove(ready[0])
    return ordered


def spec_inputs(spec: Spec) -> dict[str, InputSettings]:
    """Input name -> typed settings, in source order."""
    names = dict.fromkeys(d.name for d in spec.of_type(InputDecl))
    return {name: input_settings(spec, name) for name in names}


def needs_relations(blocks: Sequence[Block]) -> bool:
    return any("relations" in get_op(op).needs for b in blocks for op in b.choices)


def task_name(spec: Spec) -> str:
    if spec.head is None:
        raise ValueError("the spec has no head")
    return spec.head.call.name


class Network(nn.Module):
    """A concrete spec's network: stems, one op per block, the task head."""

    def __init__(
        self,
        spec: Spec,
        settings: ModelSettings,
        *,
        vocab_size: int,
        num_answers: int | None = None,
        glove: Any = None,
    ) -> None:
        super().__init__()
        self.spec, self.settings = spec, settings
        self.block_specs = spec.blocks()
        self.runs = stack_runs(spec)
        self.words, self.objects = words_stream(spec), objects_stream(spec)
        d = settings.d_model
        self.stems = nn.ModuleDict(
            {name: make_stem(cfg, d, vocab_size, glove) for name, cfg in spec_inputs(spec).items()}
        )
        has_rel = needs_relations(self.block_specs)
        self.relation = RelationEmbedding(settings.relation_dim) if has_rel else None
        self.blocks = nn.ModuleList(self.make_block(b) for b in self.block_specs)
        sizes = {"num_answers": num_answers} if num_answers else {}
        self.head = get_head(task_name(spec))(settings, head_options(spec), **sizes)

    def make_block(self, block: Block) -> nn.Module:
        return get_op(block.choices[0])(self.settings)

    def stream_inputs(
        self, batch: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Each input through its stem -> stream states {name: (B, n, d)}, masks {name: (B, n)}."""
        states: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for name, stem in self.stems.items():
            key = "words" if isinstance(stem, WordStem) else "objects"
            states[name] = stem(batch[key])
            masks[name] = input_mask(batch, key)
        return states, masks

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        states, masks = self.stream_inputs(batch)
        relation = self.relation(batch) if self.relation is not None else None
        for run in self.runs:
            ctx = BlockContext(
                mask=masks[run.stream],
                guide=states.get(run.guide or ""),
                guide_mask=masks.get(run.guide or ""),
                relation=relation if run.stream == self.objects else None,
            )
            x = states[run.stream]
            for i in run.blocks:
                x = self.blocks[i](x, ctx)  # (B, n, d)
            states[run.stream] = x
        w, o = self.words, self.objects
        return self.head(states[w], masks[w], states[o], masks[o], batch)

    def loss(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        return self.head.loss(out, batch)

    def predict(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.head.predict(out, batch)


# ------------------------------------------------------------------------- the search


class MixedBlock(nn.Module):
    """One searchable block: all candidate ops, their logits α, and the chosen op."""

    def __init__(self, ops: Sequence[str], settings: ModelSettings) -> None:
        super().__init__()
        self.names = tuple(ops)
        self.candidates = nn.ModuleList(get_op(op)(settings) for op in ops)
        self.alpha = nn.Parameter(torch.zeros(len(ops)))  # uniform p at the start (paper)
        self.chosen = 0
        self.theta_generator: torch.Generator | None = None  # set by theta_step_mode

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:
        if self.theta_generator is None or len(self.names) == 1:
            return self.candidates[self.chosen](x, ctx)
        return self.two_path(x, ctx, self.theta_generator)

    def two_path(self, x: Tensor, ctx: BlockContext, gen: torch.Generator) -> Tensor:
        """ProxylessNAS "two": two sampled candidates, straight-through binary gates (see top)."""
        pair = torch.multinomial(self.alpha.detach().softmax(-1), 2, generator=gen)  # (2,)
        q = self.alpha[pair].softmax(-1)  # (2,) renormalised, differentiable in α
        active = int(torch.multinomial(q.detach(), 1, generator=gen))
        gates = nn.functional.one_hot(torch.tensor(active), 2).to(q) + q - q.detach()  # (2,)
        self.chosen = int(pair[active])
        with torch.no_grad():
            idle = self.candidates[int(pair[1 - active])](x, ctx)  # gate 0: value only
        out = self.candidates[self.chosen](x, ctx)
        return gates[active] * out + gates[1 - active] * idle


class Supernet(Network):
    """The one-shot supernet of a searchable spec (paper §4): one MixedBlock per block."""

    def make_block(self, block: Block) -> nn.Module:
        return MixedBlock(block.choices, self.settings)

    @property
    def mixed(self) -> list[MixedBlock]:
        return list(self.blocks)  # type: ignore[arg-type]

    def arch_parameters(self) -> list[nn.Parameter]:
        """α per block, in block order (θ rows)."""
        return [b.alpha for b in self.mixed]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the α: what the W optimiser updates."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def sample_arch(
        self, generator: torch.Generator | None = None, uniform: bool = False
    ) -> list[int]:
        """Draw one op per block from softmax(α) (or uniformly), set it and return it."""
        arch = []
        for b in self.mixed:
            p = torch.ones(len(b.names)) if uniform else b.alpha.detach().softmax(-1)
            arch.append(int(torch.multinomial(p, 1, generator=generator)))
        self.set_arch(arch)
        return arch

    def set_arch(self, indices: Sequence[int]) -> None:
        if len(indices) != len(self.mixed):
            raise ValueError(f"an architecture has {len(self.mixed)} blocks, got {len(indices)}")
        for b, i in zip(self.mixed, indices, strict=True):
            if not 0 <= int(i) < len(b.names):
                raise ValueError(f"choice {i} out of range for a block of {b.names}")
            b.chosen = int(i)

    @property
    def arch(self) -> list[int]:
        return [b.chosen for b in self.mixed]

    def argmax_arch(self) -> list[int]:
        return [int(b.alpha.detach().argmax()) for b in self.mixed]

    def probabilities(self) -> list[list[float]]:
        return [b.alpha.detach().softmax(-1).tolist() for b in self.mixed]

    def arch_names(self, indices: Sequence[int] | None = None) -> dict[str, list[str]]:
        """{"encoder": [op, ...], "decoder": [...]} for an architecture (default: the current)."""
        indices = self.arch if indices is None else indices
        out: dict[str, list[str]] = {}
        for spec_block, b, i in zip(self.block_specs, self.mixed, indices, strict=True):
            out.setdefault(spec_block.stack, []).append(b.names[int(i)])
        return out

    def theta_backward(self, loss: Tensor) -> None:
        """Fill α.grad from a θ-mode loss without computing any weight gradient.

        `loss.backward()` works too, but also computes ∂L/∂W for the active path, which a θ
        step throws away; `torch.autograd.grad` w.r.t. the α alone skips those matmuls
        (about a third of the backward) and their memory.
        """
        alphas = [a for a in self.arch_parameters() if a.requires_grad]
        grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        for a, g in zip(alphas, grads, strict=True):
            if g is not None:
                a.grad = g if a.grad is None else a.grad + g

    @contextlib.contextmanager
    def theta_step_mode(self, generator: torch.Generator | None = None) -> Iterator[None]:
        """Forwards inside sample two candidates per block and fill α.grad on backward."""
        gen = generator if generator is not None else torch.default_generator
        for b in self.mixed:
            b.theta_generator = gen
        try:
            yield
        finally:
            for b in self.mixed:
                b.theta_generator = None
