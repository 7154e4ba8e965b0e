"""BM-NAS's fusion ops: two (B, C, L) tensors -> one, the inner steps of a fusion cell.

They are a registry of their own (`FUSION_OPS`, entry-point group `mmnasdsl.fusion_ops`)
rather than MMnas ops with an arity: an MMnas op is a residual block over one stream of
(B, n, d) with a context (guide, relations), sized by `ModelSettings`; a fusion op reads two
equal-shaped (B, C, L) tensors, is sized by the BM-NAS model (`lang.bmnas_settings.
BMNasModel`: C, L, dropout) and has no residual of its own (the cell adds one). Sharing one
interface would make every op say what it does with the other's arguments.

A fusion op is a torch-free descriptor like an MMnas op: `layers(s)` (torch imported inside),
`forward(m, x, y)`, `flops(s)` and `params(s)` (formulas, so `info` needs no torch; a test
compares them with the built modules). The four of the official code (notes §2.2):

- `Sum`: x + y.
- `ScaleDotAttn`: one head, no projections, query x, key = value y, over the L positions:
  LayerNorm([C, L])(Dropout(0.1)((softmax(xᵀy / √C) yᵀ)ᵀ)).
- `LinearGLU`: Dropout(GLU(BN(Conv1d 1x1 (2C -> 2C)(cat[x, y])))).
- `ConcatFC`: Dropout(ReLU(BN(Conv1d 1x1 (2C -> C)(cat[x, y])))).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mmnasdsl.lang.bmnas_settings import BMNasModel
from mmnasdsl.lang.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor, nn

ATTN_DROPOUT = 0.1  # ScaleDotAttn's dropout, fixed in the official code (not the model's)


class FusionOp:
    """Base of the fusion-op descriptors; subclasses define `layers` and `forward`."""

    @staticmethod
    def layers(s: BMNasModel) -> dict[str, nn.Module]:
        """The op's modules (none for a parameter-free op)."""
        return {}

    @staticmethod
    def forward(m: Any, x: Tensor, y: Tensor) -> Tensor:
        """x, y (B, C, L) -> (B, C, L); m holds the modules of `layers` as attributes."""
        raise NotImplementedError

    @staticmethod
    def flops(s: BMNasModel) -> int:
        """Forward FLOPs per sample (2 x multiply-adds of the matmuls and 1x1 convs)."""
        return 0

    @staticmethod
    def params(s: BMNasModel) -> int:
        return 0


FUSION_OPS: Registry[type[FusionOp]] = Registry("fusion op", group="mmnasdsl.fusion_ops")


def register_fusion_op(name: str) -> Callable[[type[FusionOp]], type[FusionOp]]:
    """Class decorator: make a fusion op usable by `name` in a BM-NAS spec."""
    return FUSION_OPS.register(name)


def get_fusion_op(name: str) -> type[FusionOp]:
    return FUSION_OPS.get(name)


def build_fusion_op(name: str, s: BMNasModel) -> nn.Module:
    """The module of fusion op `name` (`_fusion_layers.FusionBlock`)."""
    from mmnasdsl.ops._fusion_layers import FusionBlock

    return FusionBlock(get_fusion_op(name), s)


def batchnorm_params(c: int) -> int:
    return 2 * c


@register_fusion_op("Sum")
class Sum(FusionOp):
    """x + y."""

    @staticmethod
    def forward(m: Any, x: Tensor, y: Tensor) -> Tensor:
        return x + y


@register_fusion_op("ScaleDotAttn")
class ScaleDotAttn(FusionOp):
    """x attends to y over the L positions (one head, no projections), LayerNorm([C, L])."""

    @staticmethod
    def layers(s: BMNasModel) -> dict[str, nn.Module]:
        from torch import nn

        return {"drop": nn.Dropout(ATTN_DROPOUT), "norm": nn.LayerNorm([s.channels, s.length])}

    @staticmethod
    def forward(m: Any, x: Tensor, y: Tensor) -> Tensor:
        scores = x.transpose(1, 2) @ y / x.shape[1] ** 0.5  # (B, L, L): query x, key y
        out = scores.softmax(-1) @ y.transpose(1, 2)  # (B, L, C): value y
        return m.norm(m.drop(out.transpose(1, 2)))  # (B, C, L)

    @staticmethod
    def flops(s: BMNasModel) -> int:
        return 2 * 2 * s.length * s.length * s.channels

    @staticmethod
    def params(s: BMNasModel) -> int:
        return 2 * s.channels * s.length


@register_fusion_op("LinearGLU")
class LinearGLU(FusionOp):
    """cat[x, y] -> 1x1 conv 2C -> 2C -> BatchNorm -> GLU (a ⊙ σ(b)) -> dropout."""

    @staticmethod
    def layers(s: BMNasModel) -> dict[str, nn.Module]:
        from torch import nn

        c = s.channels
        return {
            "conv": nn.Conv1d(2 * c, 2 * c, 1),
            "bn": nn.BatchNorm1d(2 * c),
            "drop": nn.Dropout(s.dropout),
        }

    @staticmethod
    def forward(m: Any, x: Tensor, y: Tensor) -> Tensor:
        import torch
        import torch.nn.functional as F

        return m.drop(F.glu(m.bn(m.conv(torch.cat([x, y], 1))), dim=1))

    @staticmethod
    def flops(s: BMNasModel) -> int:
        return 2 * s.length * (2 * s.channels) ** 2

    @staticmethod
    def params(s: BMNasModel) -> int:
        c = s.channels
        return 4 * c * c + 2 * c + batchnorm_params(2 * c)


@register_fusion_op("ConcatFC")
class ConcatFC(FusionOp):
    """cat[x, y] -> 1x1 conv 2C -> C -> BatchNorm -> ReLU -> dropout."""

    @staticmethod
    def layers(s: BMNasModel) -> dict[str, nn.Module]:
        from torch import nn

        c = s.channels
        return {
            "conv": nn.Conv1d(2 * c, c, 1),
            "bn": nn.BatchNorm1d(c),
            "act": nn.ReLU(),
            "drop": nn.Dropout(s.dropout),
        }

    @staticmethod
    def forward(m: Any, x: Tensor, y: Tensor) -> Tensor:
        import torch

        return m.drop(m.act(m.bn(m.conv(torch.cat([x, y], 1)))))

    @staticmethod
    def flops(s: BMNasModel) -> int:
        return 2 * s.length * 2 * s.channels * s.channels

    @staticmethod
    def params(s: BMNasModel) -> int:
        c = s.channels
        return 2 * c * c + c + batchnorm_params(c)


# The names of the official code before its rename (old pickles, notebooks; notes §2.2).
OFFICIAL_ALIASES = {
    "sum": "Sum",
    "scale_dot_attn": "ScaleDotAttn",
    "cat_conv_glu": "LinearGLU",
    "cat_conv_relu": "ConcatFC",
}
