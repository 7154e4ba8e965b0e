"""The torch side of the fusion ops (`ops.fusion`): the module a fusion op runs in."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mmnasdsl.lang.bmnas_settings import BMNasModel
from mmnasdsl.ops._layers import DescribedModule


class FusionBlock(DescribedModule):
    """A fusion op as a module: its layers as submodules (named as it names them), its forward
    on two (B, C, L) tensors."""

    def __init__(self, op: Any, settings: BMNasModel) -> None:
        super().__init__(op.layers(settings))
        self.op = op

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # (B, C, L) x2 -> (B, C, L)
        return self.op.forward(self, x, y)

    def extra_repr(self) -> str:
        return f"op={self.op.__name__}"
