"""The position-wise feed-forward op of MMnas (paper Eq. 7): FC_d ∘ Drop ∘ ReLU ∘ FC_4d."""

from __future__ import annotations

from torch import Tensor, nn

from mmnasdsl.lang.settings import ModelSettings
from mmnasdsl.ops._registry import BlockContext, Op, register_op


@register_op("FFN")
class FeedForward(Op):
    """Linear(d -> d_ffn), ReLU, Dropout, Linear(d_ffn -> d); no mixing across positions."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        d, h = settings.d_model, settings.d_ffn
        self.fc1 = nn.Linear(d, h)
        self.act = nn.ReLU()
        self.inner_drop = nn.Dropout(settings.dropout)
        self.fc2 = nn.Linear(h, d)

    def transform(self, x: Tensor, ctx: BlockContext) -> Tensor:  # (B, n, d) -> (B, n, d)
        return self.fc2(self.inner_drop(self.act(self.fc1(x))))

    @staticmethod
    def flops(n: int, m: int, settings: ModelSettings) -> int:
        return 2 * 2 * n * settings.d_model * settings.d_ffn
