"""`mmnasdsl convert --weights`: the reference implementation's checkpoints to mmnasdsl's
and back, for a concrete spec (the names: `compile.reference`).

A reference checkpoint is what its train scripts save: a torch pickle of
`{"state_dict": ..., "net_optim": ..., "epoch": N}` whose `state_dict` holds the network,
with DistributedDataParallel's `module.` in front of every name. It is read with
`weights_only=True`, so no pickled code runs; the network's vocabulary and answer counts
are read off the shapes of its embedding and classifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmnasdsl.compile.build import build_model
from mmnasdsl.compile.reference import (
    WeightsError,
    from_reference,
    reference_sizes,
    to_reference,
)
from mmnasdsl.lang.format import format_spec
from mmnasdsl.lang.spec import Spec
from mmnasdsl.train import runs


def read_reference(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(the network's state dict, the rest of the file) of a reference checkpoint; a
    WeightsError naming the file when it is not one."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except runs.UNREADABLE as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise WeightsError(f"{path}: not a torch checkpoint ({reason[:200]})") from None
    if isinstance(obj, dict) and obj.get("kind") == "model" and "model" in obj:
        raise WeightsError(
            f"{path} is an mmnasdsl checkpoint; `--to reference` converts it the other way"
        )
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())
    ):
        raise WeightsError(
            f"{path}: expected the reference's checkpoint, a dict whose `state_dict` maps "
            "tensor names to tensors"
        )
    rest = {k: v for k, v in obj.items() if k != "state_dict"} if state is not obj else {}
    return state, rest


def import_reference(spec: Spec, path: Path) -> dict[str, Any]:
    """The mmnasdsl checkpoint (what `eval` reads) of the reference checkpoint at `path`,
    for the concrete `spec`."""
    state, rest = read_reference(path)
    sizes = reference_sizes(state, spec.task or "")
    net = build_model(
        spec, vocab_size=sizes["vocab_size"], num_answers=sizes["num_answers"] or None
    )
    net.load_state_dict(from_reference(state, net, spec))
    epoch = rest.get("epoch", 0)
    return {
        "kind": "model",
        "spec": format_spec(spec),
        "sizes": sizes,
        "model": net.state_dict(),
        "epoch": epoch if isinstance(epoch, int) else 0,
        "metrics": {},
        "converted_from": str(path),
    }


def export_reference(spec: Spec, path: Path) -> dict[str, Any]:
    """The reference checkpoint (`{"state_dict": ..., "epoch": ...}`, `module.` names, as
    its train scripts load it) of the mmnasdsl checkpoint at `path` of `spec`."""
    from mmnasdsl.train.trainer import checkpoint_sizes

    ckpt = runs.load_checkpoint(path)
    if "model" not in ckpt or "sizes" not in ckpt:
        raise WeightsError(f"{path} holds no trained model (expected best.pt or last.pt)")
    vocab_size, num_answers = checkpoint_sizes(ckpt, path)
    net = build_model(spec, vocab_size=vocab_size, num_answers=num_answers or None)
    try:
        net.load_state_dict(ckpt["model"])
    except runs.DAMAGED as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path} does not fit {spec.source}: {reason}") from None
    epoch = ckpt.get("epoch", 0)
    return {
        "state_dict": to_reference(net.state_dict(), net, spec),
        "epoch": epoch if isinstance(epoch, int) else 0,
    }
