"""Ops: the registry of block ops (SA, GA, RSA in attention.py, FFN in ffn.py), torch-free.

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

__all__ = ["OPS", "BlockContext", "Op", "build_op", "get_op", "list_ops", "register_op"]
