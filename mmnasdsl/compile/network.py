"""The MMnas backbone as PyTorch modules (paper §3): stems, stacks and a concrete `Network`.

A spec's inputs get stems (words: Embedding -> one-layer LSTM, or a Linear when
`lstm = false`; objects: Linear(dim -> d)); its stacks run over the streams in
dependency order (`lang.spec.stack_order`: a stack guided by another stream runs after
every stack over that stream, so the decoder's GA reads the encoder's final output); the
head reads the final word and object streams. Blocks are kept in `spec.blocks()` order,
the one block order of the project.

`Network` is a concrete spec's model: each block is one op (`ops.build_op`). The supernet
of a search space (`compile.supernet`) is a `Network` whose blocks hold every candidate.

Shared word stream: when no stack over the words reads a guide (`words_alone`: an
encoder-decoder as MMnas' shapes, not a net whose text attends to the image), the word
stream's final states depend on the sentence only. `encode_words` computes them, `forward(
batch, words=...)` takes them instead of recomputing, and `forward_sharing_words` runs the
word stream once per distinct sentence of a batch: ITM scores one caption against many
images (evaluation, hard negatives), and only the image stream and the head need to run
per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mmnasdsl.data.geometry import relation_features
from mmnasdsl.heads import build_head, catalog, make_task
from mmnasdsl.lang.settings import (
    InputSettings,
    ModelSettings,
    ObjectsInput,
    WordsInput,
    input_settings,
    objects_stream,
    spec_inputs,
    words_stream,
)
from mmnasdsl.lang.spec import Block, Spec, stack_order
from mmnasdsl.ops import BlockContext, build_op

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
            # fp32 even under autocast: oneDNN's bf16 LSTM refuses some shapes (no primitive
            # for 8 -> 16), and 14 steps of it are < 1 % of a step (docs/performance.md)
            with torch.autocast(e.device.type, enabled=False):
                out, _ = self.lstm(e.float())
            return out  # (B, T, d); right padding never reaches a real token
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
    """The shared first layer of RSA's relation MLP: R (B, N, N, 4) -> ReLU(Linear(4 -> r)).

    R comes from the batch (the collate computes it with the spec's box convention), or,
    for a batch without it, from the boxes in the same `convention`, so both paths give
    the same function.
    """

    def __init__(self, relation_dim: int, convention: str = "pixel") -> None:
        super().__init__()
        self.fc = nn.Linear(4, relation_dim)
        self.convention = convention

    def forward(self, batch: dict[str, Tensor]) -> Tensor:  # -> (B, N, N, relation_dim)
        rel = batch.get("relations")
        if rel is None:
            rel = relation_features(batch["boxes"], self.convention)
        return torch.relu(self.fc(rel))

    def extra_repr(self) -> str:
        return f"box_convention={self.convention}"


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


# ---------------------------------------------------------------------------- the network


def needs_relations(spec: Spec) -> bool:
    """Whether any block may run an op that reads the relation features (RSA)."""
    return "relations" in catalog().spec_needs(spec)


def relation_convention(spec: Spec) -> str | None:
    """How this spec's batches measure boxes for R (`objects(box_convention)`), or None
    when no block reads R: what the loaders' `relations` argument takes."""
    if not needs_relations(spec):
        return None
    name = objects_stream(spec)
    if name is None:
        return None
    return input_settings(spec, name).box_convention  # type: ignore[union-attr]


class Network(nn.Module):
    """A concrete spec's network: stems, one op per block, the task head.

    `checkpoint = True` (`train { checkpoint = true }`) runs each block under
    `torch.utils.checkpoint`: only its input is kept for the backward, which recomputes
    the rest (dropout masks included, from the saved RNG state), trading about a third
    more compute for the activation memory of every block but the one being recomputed.
    """

    checkpoint: bool = False

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
        order = stack_order(spec)
        assert order is not None, "a checked spec has no guide cycle"
        self.runs = order
        self.words, self.objects = words_stream(spec), objects_stream(spec)
        d = settings.d_model
        self.stems = nn.ModuleDict(
            {name: make_stem(cfg, d, vocab_size, glove) for name, cfg in spec_inputs(spec).items()}
        )
        convention = relation_convention(spec)
        self.relation = (
            RelationEmbedding(settings.relation_dim, convention) if convention is not None else None
        )
        self.blocks = nn.ModuleList(self.make_block(b) for b in self.block_specs)
        self.task = make_task(spec, num_answers)
        self.head = build_head(self.task, settings)

    def make_block(self, block: Block) -> nn.Module:
        return build_op(block.choices[0], self.settings)

    def stream_inputs(
        self, batch: dict[str, Tensor], skip: str | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Each input (but `skip`) through its stem -> stream states {name: (B, n, d)}, masks
        {name: (B, n)}."""
        states: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for name, stem in self.stems.items():
            if name == skip:
                continue
            key = "words" if isinstance(stem, WordStem) else "objects"
            states[name] = stem(batch[key])
            masks[name] = input_mask(batch, key)
        return states, masks

    @property
    def words_alone(self) -> bool:
        """Whether the word stream's final states depend on the sentence alone (no stack over
        it reads a guide), so that pairs with one sentence can share them."""
        return self.words is not None and not any(
            run.guide for run in self.runs if run.stream == self.words
        )

    def encode_words(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The word stream's final states (B, T, d) and mask (B, T) from `words` (and
        `words_mask`) alone: the stem and every stack over the words, in run order."""
        if not self.words_alone:
            raise ValueError("a stack over the word stream reads a guide: no sentence-only states")
        name = self.words
        x, mask = self.stems[name](batch["words"]), input_mask(batch, "words")
        ctx = BlockContext(mask=mask)
        for run in self.runs:
            if run.stream == name:
                self.prepare(run.blocks, ctx)
                for i in run.blocks:
                    x = self.run_block(self.blocks[i], x, ctx)
        return x, mask

    def forward(
        self, batch: dict[str, Tensor], words: tuple[Tensor, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """The head's outputs for a batch. `words`: `encode_words`' (states, mask) of the
        batch's sentences, computed beforehand; the word stem and stacks are then skipped."""
        if words is not None and not self.words_alone:
            raise ValueError("word states given to a net whose word stream reads a guide")
        skip = self.words if words is not None else None
        states, masks = self.stream_inputs(batch, skip=skip)
        if skip is not None and words is not None:
            states[skip], masks[skip] = words
        relation = self.relation(batch) if self.relation_needed() else None
        for run in self.runs:
            if run.stream == skip:
                continue
            ctx = BlockContext(
                mask=masks[run.stream],
                guide=states.get(run.guide or ""),
                guide_mask=masks.get(run.guide or ""),
                relation=relation if run.stream == self.objects else None,
            )
            self.prepare(run.blocks, ctx)
            x = states[run.stream]
            for i in run.blocks:
                x = self.run_block(self.blocks[i], x, ctx)  # (B, n, d)
            states[run.stream] = x
        w, o = self.words, self.objects
        return self.head(states[w], masks[w], states[o], masks[o], batch)

    def running_ops(self) -> list[nn.Module]:
        """Every op block the next forward runs (with or without autograd)."""
        return list(self.blocks)

    def relation_needed(self) -> bool:
        """Whether the next forward runs an op that reads the relation features: a path
        without RSA skips the (B, n, n, r) relation layer and its gradient."""
        if self.relation is None:
            return False
        return any("relations" in b.op.needs for b in self.running_ops())

    def live_ops(self, indices: Sequence[int]) -> list[nn.Module]:
        """The op blocks among blocks `indices` that the next forward runs with autograd."""
        return [self.blocks[i] for i in indices]

    def prepare(self, indices: Sequence[int], ctx: BlockContext) -> None:
        """Each op's shared work for a run, once, over its live blocks (`Op.prepare`)."""
        by_op: dict[Any, list[nn.Module]] = {}
        for block in self.live_ops(indices):
            by_op.setdefault(block.op, []).append(block)
        for op, blocks in by_op.items():
            op.prepare(blocks, ctx)

    def run_block(self, block: nn.Module, x: Tensor, ctx: BlockContext) -> Tensor:
        """One block, checkpointed when asked and when a backward may follow."""
        if self.checkpoint and torch.is_grad_enabled():
            return checkpoint(block, x, ctx, use_reentrant=False)
        return block(x, ctx)

    def forward_sharing_words(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """`forward(batch)` with the word stream run once per distinct sentence of the batch
        (rows with equal `words`), then given to every row that reads it. Equal to the plain
        forward up to float rounding; the plain forward when the words read a guide."""
        if not self.words_alone:
            return self(batch)
        words = batch["words"]
        unique, inverse = torch.unique(words, dim=0, return_inverse=True)  # (U, T), (B,)
        if len(unique) == len(words):
            return self(batch)
        first = torch.full((len(unique),), len(words), dtype=torch.long, device=words.device)
        first = first.scatter_reduce(
            0, inverse, torch.arange(len(words), device=words.device), "amin"
        )
        sentences = {"words": words[first]}
        if "words_mask" in batch:
            sentences["words_mask"] = batch["words_mask"][first]
        states, mask = self.encode_words(sentences)  # (U, T, d), (U, T)
        return self(batch, words=(states[inverse], mask[inverse]))

    def loss(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        return self.task.loss(out, batch)

    def predict(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.task.predict(out, batch)
