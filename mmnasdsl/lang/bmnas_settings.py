"""Typed views of a BM-NAS spec's options: one pydantic schema per construct.

As for MMnas specs (`lang.settings`), these schemas are the one table of what an option may
be: the BM-NAS checker validates against them, docs/language.md lists them
(`lang.optiondoc`), and the compiler, data and search code read `bmnas_model(spec)`,
`taps_of(spec)` & co. instead of raw option lists. The `search`, `train` and `data h5`
sections are the MMnas ones (`lang.settings`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, model_validator

from mmnasdsl.lang.settings import Settings, options_dict

if TYPE_CHECKING:
    from mmnasdsl.lang.bmnas_spec import BMNasSpec


class BMNasModel(Settings):
    """`model NAME { ... }`: the fusion network's sizes (BM-NAS §3; notes §1.2, §4)."""

    related: ClassVar[tuple[str, ...]] = ("pooling", "length")
    hint: ClassVar[str] = "expected a length that is a square (4, 9, 16, ...) with pooling = grid"

    channels: int = Field(
        128, ge=1, le=8192, description="C: channels of every tap after the adapter"
    )
    length: int = Field(8, ge=1, le=4096, description="L: positions of every tap after the adapter")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout of the adapters and fusion ops")
    pooling: Literal["sequence", "grid"] = Field(
        "sequence",
        description="adapter pooling: the first axis to L, the rest max-reduced (NTU, Ego), or "
        "the first two axes to a √L x √L grid, flattened (MM-IMDB)",
    )
    concat: int | None = Field(
        None, ge=1, description="the head reads the last `concat` cells, concatenated (default all)"
    )
    op_inputs: Literal["shared", "separate"] = Field(
        "shared",
        description="search supernet: each op reads one weighted sum of its predecessors as "
        "both inputs (the official code), or two separately weighted sums",
    )

    @model_validator(mode="after")
    def _grid_square(self) -> BMNasModel:
        if self.pooling == "grid" and math.isqrt(self.length) ** 2 != self.length:
            raise ValueError(f"pooling = grid needs a square length, got length = {self.length}")
        return self

    @property
    def grid(self) -> int:
        """The side of the grid (pooling = grid): L = grid²."""
        return math.isqrt(self.length)


class TapSettings(Settings):
    """`NAME = tap(channels = C, length = n)` inside `input MODALITY { ... }`: one backbone
    layer's features per sample, (C, n), or (C, *shape) for maps, or (C,) for a vector."""

    related: ClassVar[tuple[str, ...]] = ("shape", "length")
    hint: ClassVar[str] = (
        "expected tap(channels = C, length = n) or tap(channels = C, shape = [...])"
    )

    channels: int = Field(ge=1, le=1_000_000, description="C_in: the tap's channels")
    length: int | None = Field(None, ge=1, description="positions of a 1-D tap (omit: a vector)")
    shape: tuple[int, ...] | None = Field(
        None, description="the axes after the channels of a map, e.g. [8, 7, 7] (instead of length)"
    )

    @model_validator(mode="after")
    def _one_shape(self) -> TapSettings:
        if self.length is not None and self.shape is not None:
            raise ValueError("give length or shape, not both")
        if self.shape is not None and (not self.shape or min(self.shape) < 1):
            raise ValueError(f"shape needs positive sizes, got {list(self.shape)}")
        return self

    @property
    def dims(self) -> tuple[int, ...]:
        """The axes after the channels: `shape`, `(length,)` or `()` for a vector."""
        if self.shape is not None:
            return tuple(self.shape)
        return (self.length,) if self.length is not None else ()


class CellOptions(Settings):
    """The keyword options of `cell NAME(x, y, concat = n) = ...`."""

    concat: int | None = Field(
        None, ge=1, description="the cell concatenates its last `concat` steps (default all)"
    )


class XorData(Settings):
    """`data xor(pair = [a2, b0], ...)`: the built-in planted-pair task (data/xor.py)."""

    source: Literal["xor"] = "xor"
    pair: tuple[str, str] = Field(description="the two taps whose projections' signs are XORed")
    samples: int = Field(4000, ge=10, le=10_000_000, description="train samples (val, test: 1/4)")
    seed: int = Field(0, ge=0, description="generator seed of features, projections and labels")


# ---------------------------------------------------------------- typed views of a spec


def bmnas_model(spec: BMNasSpec) -> BMNasModel:
    decl = spec.model
    return BMNasModel(**(options_dict(decl.options) if decl else {}))


def taps_of(spec: BMNasSpec) -> dict[str, TapSettings]:
    """Tap name -> settings, in state order (modalities in source order, then their taps)."""
    return {name: tap_settings(opt.value) for name, (_, opt) in spec.tap_decls().items()}


def tap_settings(call: object) -> TapSettings:
    """A `tap(...)` call value as settings (the checker has validated it)."""
    from mmnasdsl.lang.spec import Call

    assert isinstance(call, Call)
    return TapSettings(**options_dict(call.args))


def xor_data(spec: BMNasSpec) -> XorData:
    decl = spec.data
    assert decl is not None and decl.call.name == "xor"
    return XorData(**options_dict(decl.call.args))


class FusedFeatures(Settings):
    """What the head of a BM-NAS network reads: its last `cells` outputs, each (C, L),
    concatenated to (cells·C, L) (`Task.fuse`)."""

    channels: int
    length: int
    cells: int

    @property
    def width(self) -> int:
        """Features per sample after flattening: cells·C·L."""
        return self.cells * self.channels * self.length


def fused_features(spec: BMNasSpec) -> FusedFeatures:
    model = bmnas_model(spec)
    n = len(spec.cell_decls())
    cells = min(model.concat or n, n)
    return FusedFeatures(channels=model.channels, length=model.length, cells=cells)
