"""The position-wise feed-forward op of MMnas (paper Eq. 7): FC_d ∘ Drop ∘ ReLU ∘ FC_4d."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.ops._registry import BlockContext, Op, linear_params, register_op

if TYPE_CHECKING:
    from torch import Tensor, nn


@register_op("FFN")
class FeedForward(Op):
    """Linear(d -> d_ffn), ReLU, Dropout, Linear(d_ffn -> d); no mixing across positions."""

    @staticmethod
    def layers(s: ModelSettings) -> dict[str, nn.Module]:
        from torch import nn

        return {
            "fc1": nn.Linear(s.d_model, s.d_ffn),
            "act": nn.ReLU(),
            "inner_drop": nn.Dropout(s.dropout),
            "fc2": nn.Linear(s.d_ffn, s.d_model),
        }

    @staticmethod
    def transform(m: Any, x: Tensor, ctx: BlockContext) -> Tensor:  # (B, n, d) -> (B, n, d)
        return m.fc2(m.inner_drop(m.act(m.fc1(x))))

    @staticmethod
    def flops(n: int, m: int, s: ModelSettings) -> int:
        return 2 * 2 * n * s.d_model * s.d_ffn

    @staticmethod
    def params(s: ModelSettings) -> int:
        return linear_params(s.d_model, s.d_ffn) + linear_params(s.d_ffn, s.d_model)
