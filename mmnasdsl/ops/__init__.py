"""Op registry: SA, GA, RSA (attention.py) and FFN (ffn.py); importing this package registers them.

See `_registry.py` for the op interface and how to add an op.
"""

from mmnasdsl.ops import attention, ffn  # noqa: F401  (registers the paper's ops)
from mmnasdsl.ops._norm import ReferenceLayerNorm, make_norm
from mmnasdsl.ops._registry import OPS, BlockContext, Op, get_op, list_ops, register_op
from mmnasdsl.ops.attention import MultiHeadAttention

__all__ = [
    "OPS",
    "BlockContext",
    "MultiHeadAttention",
    "Op",
    "ReferenceLayerNorm",
    "get_op",
    "list_ops",
    "make_norm",
    "register_op",
]
