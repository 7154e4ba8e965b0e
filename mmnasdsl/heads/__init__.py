"""Task-head registry: vqa, itm, vg (one module each); importing this package registers them.

A head turns the final word stream x and object stream y into task outputs, a loss and
predictions (docs/interfaces.md, "Registries"); `_common.py` holds the shared AttFlat
reduction and fusion.
"""

from mmnasdsl.heads import itm, vg, vqa  # noqa: F401  (registers the heads)
from mmnasdsl.heads._common import (
    HEADS,
    AttFlat,
    Fusion,
    Head,
    get_head,
    list_heads,
    register_head,
)

__all__ = ["HEADS", "AttFlat", "Fusion", "Head", "get_head", "list_heads", "register_head"]
