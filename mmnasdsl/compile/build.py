"""Spec -> nn.Module: `build_model` picks a `Supernet` for a searchable spec, else a `Network`.

The `d_model` override (the search width; the reference searches at d = 256 and trains at
512) keeps the spec's head width d_h fixed, so heads = d / d_h (8 at 512, 4 at 256 with
d_h = 64, as REFERENCE.md). When d_h does not divide the new width (tiny test widths), the
spec's head count is kept instead. An explicit `fused` width scales with d; the FFN
multiple, dropout, norm, bias and relation width are unchanged.
"""

from __future__ import annotations

from typing import Any

from mmnasdsl.compile.network import Network
from mmnasdsl.compile.supernet import Supernet
from mmnasdsl.lang.errors import UsageError
from mmnasdsl.lang.settings import ModelSettings, model_settings
from mmnasdsl.lang.spec import Spec


def scaled_settings(spec: Spec, d_model: int | None = None) -> ModelSettings:
    """The spec's model settings, at width `d_model` when given (see the module docstring)."""
    base = model_settings(spec)
    if d_model is None or d_model == base.d_model:
        return base
    fused = None if base.fused is None else max(1, base.fused * d_model // base.d_model)
    if d_model % base.d_head == 0:
        heads = d_model // base.d_head
    elif d_model % base.n_heads == 0:
        heads = base.n_heads
    else:
        raise UsageError(
            f"d_model = {d_model} is divisible by neither the head width "
            f"{base.d_head} nor the head count {base.n_heads}"
        )
    return model_settings(spec, d_model=d_model, heads=heads, head_dim=None, fused=fused)


def build_model(
    spec: Spec,
    *,
    vocab_size: int,
    num_answers: int | None = None,
    glove: Any = None,
    d_model: int | None = None,
) -> Network:
    """Build the model of a (checked) spec.

    Args:
        spec: a checked spec.
        vocab_size: rows of the word embedding (the dataset's vocabulary, 0 = padding).
        num_answers: VQA answer count; defaults to the head's `answers` option.
        glove: optional (vocab_size, embed_dim) array to initialise the embedding.
        d_model: optional width override (search width).

    Returns:
        A `Supernet` when any block has more than one choice, else a fixed `Network`.
    """
    settings = scaled_settings(spec, d_model)
    cls = Network if spec.is_concrete else Supernet
    return cls(spec, settings, vocab_size=vocab_size, num_answers=num_answers, glove=glove)
