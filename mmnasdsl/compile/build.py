"""Spec -> nn.Module, dispatched on the spec's space kind (`MODELS`).

For `mmnas`, a `Supernet` for a searchable spec, else a `Network`; a width override
(`d_model`, the search width) goes through `lang.settings.scaled_settings`. For `bmnas`,
a `compile.bmnas.FusionNetwork` (its choice points take routes when the spec searches).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from mmnasdsl.compile.bmnas import build_bmnas
from mmnasdsl.compile.network import Network
from mmnasdsl.compile.supernet import Supernet
from mmnasdsl.lang.registry import Registry
from mmnasdsl.lang.settings import scaled_settings
from mmnasdsl.lang.spec import Spec

MODELS: Registry[Callable[..., nn.Module]] = Registry("space kind")  # kind -> model builder


def build_model(spec: Spec, **sizes: Any) -> nn.Module:
    """The model of a checked spec, by its kind's builder (`MODELS`)."""
    return MODELS.get(spec.kind)(spec, **sizes)


@MODELS.register("mmnas")
def build_mmnas(
    spec: Spec,
    *,
    vocab_size: int,
    num_answers: int | None = None,
    glove: Any = None,
    d_model: int | None = None,
) -> Network:
    """Build the model of a (checked) MMnas spec.

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


MODELS.register("bmnas")(build_bmnas)
