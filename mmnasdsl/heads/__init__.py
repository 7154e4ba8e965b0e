"""Heads: the task registry (vqa.py, itm.py, vg.py; classify.py for BM-NAS spaces), one
torch-free file per task.

A task owns its head network, loss, predictions, metric, evaluation and per-epoch training
data (`_task.Task`); `_layers.py` holds the torch modules they share (AttFlat, fusion, the
module a head runs in), `_metrics.py` the paper's metrics. Importing this package
registers the three tasks without importing torch; plug-ins arrive through the
entry-point group `mmnasdsl.heads`.
"""

from mmnasdsl.heads import classify, itm, vg, vqa  # noqa: F401  (registers the tasks)
from mmnasdsl.heads._task import (
    HEADS,
    EpochData,
    EpochRequest,
    Runner,
    Task,
    get_head,
    list_heads,
    register_head,
)
from mmnasdsl.lang.catalog import Catalog
from mmnasdsl.lang.settings import head_options
from mmnasdsl.lang.spec import Spec

__all__ = [
    "HEADS",
    "EpochData",
    "EpochRequest",
    "Runner",
    "Task",
    "build_head",
    "catalog",
    "get_head",
    "list_heads",
    "make_task",
    "register_head",
]


def make_task(spec: Spec, num_answers: int | None = None) -> Task:
    """The task of a spec's head, with its options and the data's sizes."""
    if spec.task is None:
        raise ValueError("the spec has no head")
    return get_head(spec.task)(head_options(spec), num_answers=num_answers)


def build_head(task: Task, settings: object) -> object:
    """The torch module of a task's head (`_layers.HeadModule`)."""
    from mmnasdsl.heads._layers import HeadModule

    return HeadModule(task, settings)


def catalog() -> Catalog:
    """The registered ops and heads: what the language checks a spec against.

    It lives here because heads are the lowest stage that sees both registries; the
    package facade re-exports it as `mmnasdsl.catalog()`.
    """
    from mmnasdsl.ops import FUSION_OPS, OPS

    return Catalog(ops=OPS, heads=HEADS, fusion=FUSION_OPS)
