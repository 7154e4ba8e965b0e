"""Ops: the registry of block ops (SA, GA, RSA in attention.py, FFN in ffn.py) and that of
BM-NAS's two-input fusion ops (fusion.py), torch-free.

An op is a descriptor (`_registry.Op`): what it needs, its layers, what it computes, its
FLOPs; `build_op` makes the torch block (`_layers.OpBlock`). Importing this package
registers the paper's ops without importing torch; plug-ins arrive through the entry-point
group `mmnasdsl.ops`.
"""

from mmnasdsl.ops import attention, ffn  # noqa: F401  (registers the paper's ops)
from mmnasdsl.ops._registry import (
    OPS,
    BlockContext,
    Op,
    build_op,
    get_op,
    list_ops,
    register_op,
)
from mmnasdsl.ops.fusion import FUSION_OPS, FusionOp, build_fusion_op, register_fusion_op

__all__ = [
    "FUSION_OPS",
    "OPS",
    "BlockContext",
    "FusionOp",
    "Op",
    "build_fusion_op",
    "build_op",
    "get_op",
    "list_ops",
    "register_fusion_op",
    "register_op",
]
