"""`mmnasdsl convert --weights`: the reference implementation's checkpoints to mmnasdsl's
and back, for a concrete spec (the names: `compile.reference`).

A reference checkpoint is what its train scripts save: a torch pickle of
`{"state_dict": ..., "net_optim": ..., "epoch": N}` whose `state_dict` holds the network,
with DistributedDataParallel's `module.` in front of every name. It is read with
`weights_only=True`, so no pickled code runs; the network's vocabulary and answer counts
are read off the shapes of its embedding and classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
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


# Our special tokens -> the reference's (its `token_to_ix` starts PAD 0, UNK 1, CLS 2).
REFERENCE_TOKENS = {"<pad>": "PAD", "<unk>": "UNK"}
MISSING_ANSWER_BIAS = -1e4  # an answer the reference never learnt is never predicted


@dataclass(frozen=True)
class Rows:
    """The reference's token and answer lists (`token_to_ix`, `ans_to_ix` of its VQA
    `DataSet`), and ours (a store's), to put the reference's embedding and classifier rows
    in our order. The reference builds its lists in memory; docs/reference.md shows how to
    dump them."""

    token_to_ix: dict[str, int]
    ans_to_ix: dict[str, int]
    vocab: list[str]
    answers: list[str]

    def token_rows(self) -> tuple[list[int], int]:
        """The reference's row for each of our tokens (UNK when it has none), and how many
        of ours it lacks."""
        unk = self.token_to_ix.get("UNK", 1)
        ref = [self.token_to_ix.get(REFERENCE_TOKENS.get(t, t)) for t in self.vocab]
        return [unk if r is None else r for r in ref], sum(r is None for r in ref)

    def answer_rows(self) -> list[int | None]:
        """The reference's row for each of our answers, None where it has none."""
        return [self.ans_to_ix.get(a) for a in self.answers]


def read_rows(path: Path, vocab: list[str], answers: list[str]) -> Rows:
    """Rows from a JSON file `{"token_to_ix": {...}, "ans_to_ix": {...}}`."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: cannot read the reference's lists: {exc}") from None
    tables = [
        data.get(k, {} if k == "ans_to_ix" else None) if isinstance(data, dict) else None
        for k in ("token_to_ix", "ans_to_ix")  # no answers: ITM, VG
    ]
    if not all(
        isinstance(t, dict) and all(isinstance(i, int) and i >= 0 for i in t.values())
        for t in tables
    ):
        raise WeightsError(
            f'{path}: expected {{"token_to_ix": {{word: row}}, "ans_to_ix": {{answer: row}}}}'
        )
    return Rows(tables[0], tables[1], list(vocab), list(answers))  # type: ignore[arg-type]


def reorder(state: dict[str, Tensor], rows: Rows, task: str) -> tuple[dict[str, Tensor], list[str]]:
    """The reference state dict with its embedding (and VQA classifier) rows in our
    order, and notes on what had no row."""
    out, notes = {k.removeprefix("module."): v for k, v in state.items()}, []
    if "embedding.weight" not in out:
        raise WeightsError("the checkpoint holds no `embedding.weight`: not a reference network")
    index, missing = rows.token_rows()
    out["embedding.weight"] = _take(out["embedding.weight"], index, "embedding.weight")
    if missing:
        notes.append(
            f"{missing} of {len(rows.vocab)} tokens are not in the reference's list: UNK's row"
        )
    if task == "vqa" and "proj.weight" in out and "proj.bias" in out:
        if not rows.ans_to_ix:
            raise WeightsError("a VQA checkpoint's rows need the reference's `ans_to_ix` too")
        ans = rows.answer_rows()
        weight = _take(out["proj.weight"], [a or 0 for a in ans], "proj.weight")
        bias = _take(out["proj.bias"], [a or 0 for a in ans], "proj.bias")
        lost = torch.tensor([a is None for a in ans])
        out["proj.weight"] = weight.masked_fill(lost[:, None], 0.0)
        out["proj.bias"] = bias.masked_fill(lost, MISSING_ANSWER_BIAS)
        if lost.any():
            notes.append(
                f"{int(lost.sum())} of {len(ans)} answers are not in the reference's list: "
                "never predicted"
            )
    return out, notes


def _take(t: Tensor, index: list[int], name: str) -> Tensor:
    """Rows `index` of `t`; a WeightsError when the lists point past its rows."""
    if index and max(index) >= t.shape[0]:
        raise WeightsError(
            f"the reference's lists name row {max(index)}, but {name} has {t.shape[0]} rows: "
            "lists and checkpoint are not from the same run"
        )
    return t[torch.tensor(index, dtype=torch.long)]


def import_reference(spec: Spec, path: Path, rows: Rows | None = None) -> dict[str, Any]:
    """The mmnasdsl checkpoint (what `eval` reads) of the reference checkpoint at `path`,
    for the concrete `spec`; with `rows`, its vocabulary and answers in a store's order."""
    state, rest = read_reference(path)
    notes: list[str] = []
    if rows is not None:
        state, notes = reorder(state, rows, spec.task or "")
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
        "notes": notes,
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
