"""The reference implementation's weights (MILVLG/mmnas): its tensor names for a concrete
spec's network, and the conversion of a state dict both ways.

The reference saves `{"state_dict": net.state_dict(), ...}` with torch.save, where `net`
is its fixed network (`Net_Full`) wrapped in DistributedDataParallel, so every name
starts with `module.`. Its network is one encoder over the words and one decoder over the
objects guided by them, so a spec of that shape names the same tensors:

    embedding.weight                        stems.<words>.embed.weight
    lstm.<w>                                stems.<words>.lstm.<w>
    imgfeat_linear.<w|b>                    stems.<objects>.proj.<w|b>
    linear_y_rel.<w|b>                      relation.fc.<w|b>          (RSA's shared layer)
    backnone.cells_enc.0.dag.<i>.0.<op>     blocks.<i>.<op'>           (encoder block i)
    backnone.cells_dec.0.dag.<j>.0.<op>     blocks.<n_enc + j>.<op'>   (decoder block j)
    attflat_x / attflat_y / proj_norm / proj ...  the head's (HEADS, per task)

Every pair has the same layout (nn.Linear, nn.LSTM, nn.Embedding; heads split as
view(B, n, heads, 64) on both sides), so a tensor moves unchanged; the reference's
LayerNorm calls its scale and shift `a_2` and `b_2`. Only the reference's attention heads
are always 64 wide, so a spec must say `head_dim = 64` for its heads to be the same ones.

Names are worked out from our side: each tensor of the built network gets its reference
name, and the conversion is strict in both directions (every tensor found once, the same
shape), so a layout this map does not know is an error that names the tensors, never a
silently half-loaded network. Known here from the reference's source (its model/full_*.py
and modules.py; docs/reference.md lists the table) and checked against its code by the
harness of docs/reference.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from mmnasdsl.lang.errors import MmnasError
from mmnasdsl.lang.settings import (
    input_settings,
    model_settings,
    objects_stream,
    words_stream,
)
from mmnasdsl.lang.spec import Block, Spec

DDP_PREFIX = "module."  # DistributedDataParallel's, on every name the reference saves
REFERENCE_HEAD_DIM = 64  # the reference's MHAtt: heads = d / 64 (modules.py, `base`)

OP_PARTS = {  # our module inside a block -> the reference's (SelfAtt, GuidedAtt, ...)
    "att.q": "mhatt.linear_q",
    "att.k": "mhatt.linear_k",
    "att.v": "mhatt.linear_v",
    "att.o": "mhatt.linear_merge",
    "rel": "mhatt.linear_r",  # RSA's per-head relation layer
    "fc1": "mlp.fc.linear",  # FFN
    "fc2": "mlp.linear",
    "norm": "ln",  # the post-norm of every op
}
ATTFLAT_PARTS = {"mlp.0": "mlp.fc.linear", "mlp.3": "mlp.linear", "proj": "linear_merge"}
HEADS = {  # task -> our head module -> the reference's
    "vqa": {
        "head.fusion.flat_x": "attflat_x",
        "head.fusion.flat_y": "attflat_y",
        "head.fusion.norm": "proj_norm",
        "head.classify": "proj",
    },
    "itm": {
        "head.fusion.flat_x": "attflat_x",
        "head.fusion.flat_y": "attflat_y",
        "head.fusion.norm": "proj_norm",
        "head.score": "proj",
    },
    "vg": {
        "head.flat_x": "attflat_x",
        "head.proj_y": "attfc_y",
        "head.norm": "proj_norm",
        "head.score": "proj_scores",
        "head.delta": "proj_reg",
    },
}
NORM_LEAVES = {"weight": "a_2", "bias": "b_2"}  # the reference LayerNorm's parameter names
# Reference tensors no spec network holds, and why they may be left behind.
UNUSED = {
    "linear_x_rel": "the search nets' question relations, read by no op",
    "linear_y_rel": "built by every reference net, read only by RSA",
}


class WeightsError(MmnasError):
    """A checkpoint whose tensors do not fit a spec's network (or cannot be read)."""


@dataclass(frozen=True)
class Layout:
    """What names a concrete spec's tensors: its input names, blocks and task."""

    words: str
    objects: str
    blocks: tuple[Block, ...]
    task: str

    def block_name(self, index: int) -> str:
        """`backnone.cells_enc.0.dag.<i>.0`: where block `index` lives in the reference."""
        block = self.blocks[index]
        cell = "enc" if block.stack == "encoder" else "dec"
        return f"backnone.cells_{cell}.0.dag.{block.index}.0"


def layout(spec: Spec) -> Layout:
    """The spec's layout, or a WeightsError saying why the reference has no such network:
    it has one encoder over the words, one decoder over the objects guided by them, heads
    of width 64, and one of the three tasks."""
    if spec.kind != "mmnas":
        raise WeightsError(f"{spec.source}: the reference's weights are for `space mmnas` specs")
    if not spec.is_concrete:
        raise WeightsError(f"{spec.source} is a search space; convert weights for a concrete spec")
    words, objects, task = words_stream(spec), objects_stream(spec), spec.task
    stacks = [(s.kind, s.stream, s.guide) for s in spec.stacks]
    expected = [("encoder", words, None), ("decoder", objects, words)]
    if words is None or objects is None or stacks != expected:
        raise WeightsError(
            f"{spec.source}: the reference's networks are `encoder <words> = ...` and "
            "`decoder <objects>(guide = <words>) = ...`, one of each; this spec has "
            + ", ".join(f"{k} {s}" + (f"(guide = {g})" if g else "") for k, s, g in stacks)
        )
    if task not in HEADS:
        raise WeightsError(f"{spec.source}: the reference has no `{task}` head (vqa, itm, vg)")
    settings = model_settings(spec)
    if settings.d_head != REFERENCE_HEAD_DIM:
        raise WeightsError(
            f"{spec.source}: the reference's attention heads are {REFERENCE_HEAD_DIM} wide "
            f"(d_model / 64 heads); this spec has {settings.n_heads} heads of "
            f"{settings.d_head}: write `head_dim = 64` in its model"
        )
    return Layout(words, objects, tuple(spec.blocks()), task)


def reference_name(key: str, lay: Layout) -> str | None:
    """Our state-dict key -> the reference's (without `module.`), None if it has none."""
    module, _, leaf = key.rpartition(".")
    ref = _reference_module(module, lay)
    if ref is None:
        return None
    if ref == "ln" or ref.endswith((".ln", "proj_norm")):
        leaf = NORM_LEAVES.get(leaf, leaf)
    return f"{ref}.{leaf}"


def _reference_module(module: str, lay: Layout) -> str | None:
    """Our module path -> the reference's, None if it has none."""
    stems = {
        f"stems.{lay.words}.embed": "embedding",
        f"stems.{lay.words}.lstm": "lstm",
        f"stems.{lay.objects}.proj": "imgfeat_linear",
        "relation.fc": "linear_y_rel",
    }
    if module in stems:
        return stems[module]
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", module)
    if m is not None:
        part = OP_PARTS.get(m.group(2))
        return None if part is None else f"{lay.block_name(int(m.group(1)))}.{part}"
    for ours, ref in HEADS[lay.task].items():
        if module == ours:
            return ref
        if module.startswith(ours + "."):
            sub = ATTFLAT_PARTS.get(module[len(ours) + 1 :])
            return None if sub is None else f"{ref}.{sub}"
    return None


def reference_names(net: nn.Module, spec: Spec) -> dict[str, str]:
    """{our key: reference key} for every tensor of `net` (built from `spec`); a
    WeightsError naming the tensors the reference has no place for (a stem or head module
    this map does not know). Tensors with a place the reference leaves empty (the
    attention biases of `bias = true`) are reported missing when converting."""
    lay = layout(spec)
    names = {key: reference_name(key, lay) for key in net.state_dict()}
    orphans = [k for k, v in names.items() if v is None]
    if orphans:
        raise WeightsError(
            f"{spec.source}: the reference's network has no tensor for "
            + ", ".join(f"{k} ({where(k, spec, lay)})" for k in orphans)
        )
    return {k: v for k, v in names.items() if v is not None}


def where(key: str, spec: Spec, lay: Layout) -> str:
    """The spec line a tensor belongs to: `file:line: encoder text block 2 (FFN)`."""
    m = re.match(r"blocks\.(\d+)\.", key)
    if m is not None:
        b = lay.blocks[int(m.group(1))]
        what = f"{b.stack} {b.stream} block {b.index + 1} ({b.choices[0]})"
        return f"{spec.source}:{b.span.line}: {what}"
    if key.startswith("stems."):
        decl = spec.inputs.get(key.split(".")[1])
        line = decl.span.line if decl is not None else 0
        return f"{spec.source}:{line}: input {key.split('.')[1]}"
    if key.startswith("relation."):
        return f"{spec.source}: the relation layer shared by RSA blocks"
    head = spec.head
    return f"{spec.source}:{head.span.line if head is not None else 0}: head {lay.task}"


def strip_ddp(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The names without DistributedDataParallel's `module.` (present or not)."""
    return {k.removeprefix(DDP_PREFIX): v for k, v in state.items()}


def from_reference(
    ref_state: Mapping[str, Tensor], net: nn.Module, spec: Spec
) -> dict[str, Tensor]:
    """A reference state dict as `net`'s: every tensor of `net` found under its reference
    name with its shape, every reference tensor used (or in UNUSED); otherwise one
    WeightsError listing each missing, mis-shaped and left-over tensor."""
    ref = strip_ddp(ref_state)
    names = reference_names(net, spec)
    problems = _problems(names, ref, net, spec)
    if problems:
        raise WeightsError(
            "the checkpoint does not fit the spec's network:\n  " + "\n  ".join(problems)
        )
    return {ours: ref[theirs] for ours, theirs in names.items()}


def _problems(
    names: dict[str, str], ref: dict[str, Tensor], net: nn.Module, spec: Spec
) -> list[str]:
    """Each missing, mis-shaped and left-over tensor, one line each."""
    lay, ours = layout(spec), net.state_dict()
    out = []
    for key, name in names.items():
        if name not in ref:
            out.append(f"missing {name} (for {key}, {where(key, spec, lay)})")
        elif tuple(ref[name].shape) != tuple(ours[key].shape):
            out.append(
                f"{name} is {_shape(ref[name])}, but {key} ({where(key, spec, lay)}) "
                f"is {_shape(ours[key])}"
            )
    used = set(names.values())
    for name in ref:
        if name not in used and name.split(".")[0] not in UNUSED:
            out.append(f"left over: {name} {_shape(ref[name])}, which the spec's network lacks")
    if any(".candidate_ops." in name for name in ref):
        out.insert(0, SEARCH_NET_HINT)
    return out


SEARCH_NET_HINT = (
    "this is a search network's checkpoint (`candidate_ops`, from search_*.py); "
    "convert --weights reads the fixed networks that train_*.py saves (`Net_Full`)"
)


def _shape(t: Tensor) -> str:
    return "x".join(map(str, t.shape)) or "a scalar"


def to_reference(state: Mapping[str, Tensor], net: nn.Module, spec: Spec) -> dict[str, Tensor]:
    """`net`'s state dict in the reference's names, with `module.` as its code saves and
    loads them. A net without RSA gets `linear_y_rel` as zeros: the reference builds that
    layer in every network (and loads strictly), and without RSA nothing reads it."""
    import torch

    names = reference_names(net, spec)
    out = {DDP_PREFIX + names[k]: v for k, v in state.items()}
    if "linear_y_rel.weight" not in names.values():
        r = model_settings(spec).relation_dim
        out[DDP_PREFIX + "linear_y_rel.weight"] = torch.zeros(r, 4)
        out[DDP_PREFIX + "linear_y_rel.bias"] = torch.zeros(r)
    return out


def reference_sizes(ref_state: Mapping[str, Tensor], task: str) -> dict[str, int]:
    """The vocabulary and answer counts a reference checkpoint's network was built with
    (embedding rows, classifier rows): what `build_model` needs besides the spec."""
    ref = strip_ddp(ref_state)
    if "embedding.weight" not in ref or (task == "vqa" and "proj.weight" not in ref):
        raise WeightsError(
            "the checkpoint holds no `embedding.weight`"
            + (" or `proj.weight`" if task == "vqa" else "")
            + ": not a reference network"
        )
    return {
        "vocab_size": int(ref["embedding.weight"].shape[0]),
        "num_answers": int(ref["proj.weight"].shape[0]) if task == "vqa" else 0,
    }


def convention_notes(spec: Spec) -> list[str]:
    """The spec's options under which the moved weights compute another function than
    the reference's (docs/reference.md, "Conventions")."""
    notes = []
    s = model_settings(spec)
    if s.norm != "reference":
        notes.append(f"model norm = {s.norm}: not the reference's LayerNorm")
    name = objects_stream(spec)
    if name is not None:
        box = getattr(input_settings(spec, name), "box_convention", "pixel")
        if box != "pixel":
            notes.append(f"objects box_convention = {box}: not the reference's relation features")
    return notes
