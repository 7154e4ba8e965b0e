"""Interchange with the reference implementation's architecture files (MILVLG/mmnas).

Its searched architectures are JSON: `{"epoch<N>": {"enc": [[op], ...], "dec": [[op], ...]}}`,
one list of op names per block (REFERENCE.md, "Community data formats"). It names ops
`self_att_64`, `guided_att_64`, `rel_self_att_64` and `feed_forward` (the number is the
head width); we also accept our registry names in any case (`sa`, `Ga`, ...).

- `arch_to_spec(data, space)`: the architecture of one epoch as a concrete spec, with
  every other statement (model, inputs, head, data, search, train) taken from a
  search-space spec. The result is checked like any spec.
- `spec_to_arch(spec)`: a concrete spec as that JSON, in the reference's op names so its
  code can load it.

A reference block with several ops sums them; a spec block is one op, so such a block is
an error. Bad JSON raises `ConvertError` (a `MmnasError`), never a traceback.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mmnasdsl.lang.errors import MmnasError
from mmnasdsl.lang.settings import model_settings
from mmnasdsl.lang.spec import Spec

# reference op-name stem (without the `_<head width>` suffix) -> registry name
REFERENCE_OPS = {"self_att": "SA", "guided_att": "GA", "rel_self_att": "RSA", "feed_forward": "FFN"}
STACK_KEYS = {"enc": "encoder", "dec": "decoder"}


class ConvertError(MmnasError):
    """An architecture file that cannot be read or expressed as a spec (or the reverse)."""


def read_arch_json(text: str, source: str = "<arch>") -> dict[str, Any]:
    """Parse the JSON text of an architecture file; ConvertError with the position if bad."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConvertError(
            f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
        ) from None
    if not isinstance(data, dict) or not data:
        raise ConvertError(
            f'{source}: expected an object like {{"epoch0": {{"enc": [...], "dec": [...]}}}}'
        )
    return data


def pick_epoch(data: dict[str, Any], epoch: int | None, source: str = "<arch>") -> tuple[str, Any]:
    """The requested `epoch<N>` entry, or the one with the highest N."""
    epochs = {}
    for key in data:
        m = re.fullmatch(r"epoch(\d+)", key)
        if m is None:
            raise ConvertError(f"{source}: unexpected key {key!r}; expected keys like 'epoch0'")
        epochs[int(m.group(1))] = key
    n = max(epochs) if epoch is None else epoch
    if n not in epochs:
        have = ", ".join(str(e) for e in sorted(epochs))
        raise ConvertError(f"{source}: no epoch {n} (the file has epochs {have})")
    return epochs[n], data[epochs[n]]


def op_name(name: Any, ops: list[str], where: str) -> str:
    """A reference or registry op name -> the registry name."""
    if not isinstance(name, str):
        raise ConvertError(f"{where}: expected an op name, got {name!r}")
    stem = re.sub(r"_\d+$", "", name.strip().lower())
    if stem in REFERENCE_OPS:
        return REFERENCE_OPS[stem]
    by_lower = {o.lower(): o for o in ops}
    if stem in by_lower:
        return by_lower[stem]
    known = ", ".join([*ops, *(f"{k}_64" for k in REFERENCE_OPS)])
    raise ConvertError(f"{where}: unknown op {name!r}; expected one of {known}")


def stack_ops(blocks: Any, where: str, ops: list[str]) -> list[str]:
    """`[["SA"], ["FFN"], ...]` -> `["SA", "FFN", ...]`; one op per block."""
    if not isinstance(blocks, list):
        raise ConvertError(f'{where}: expected a list of blocks like [["SA"], ["FFN"]]')
    out = []
    for i, block in enumerate(blocks):
        at = f"{where} block {i}"
        if isinstance(block, str):
            block = [block]
        if not isinstance(block, list) or not block:
            raise ConvertError(f"{at}: expected a list with one op name, got {block!r}")
        if len(block) > 1:
            raise ConvertError(
                f"{at} has {len(block)} ops {block} (the reference sums them); "
                "a spec block is exactly one op"
            )
        out.append(op_name(block[0], ops, at))
    return out


def arch_to_spec(
    data: dict[str, Any],
    space: Spec,
    ops: list[str],
    epoch: int | None = None,
    source: str = "<arch>",
) -> Spec:
    """One epoch's architecture as a concrete spec with the settings of `space`; `ops` are
    the registered op names (matched case-insensitively)."""
    key, arch = pick_epoch(data, epoch, source)
    if not isinstance(arch, dict):
        raise ConvertError(f"{source}: {key} should be an object with 'enc' and 'dec'")
    unknown = sorted(set(arch) - set(STACK_KEYS))
    if unknown:
        raise ConvertError(f"{source}: {key} has unknown keys {unknown}; expected 'enc', 'dec'")
    picked: dict[str, list[str]] = {}
    for short, kind in STACK_KEYS.items():
        if short not in arch:
            continue
        if space.stack(kind) is None:
            raise ConvertError(
                f"{source}: {key} has '{short}' blocks but the space spec "
                f"{space.source} has no {kind} stack"
            )
        picked[kind] = stack_ops(arch[short], f"{source}: {key}.{short}", ops)
    return space.replace_stacks(picked)


def spec_to_arch(spec: Spec, epoch: int = 0) -> dict[str, Any]:
    """A concrete spec as the reference's JSON (`self_att_<head width>`, ...)."""
    if not spec.is_concrete:
        searchable = [b for b in spec.blocks() if b.searchable]
        first = searchable[0]
        raise ConvertError(
            f"{spec.source}:{first.span.line}:{first.span.column}: "
            f"{len(searchable)} blocks are searchable "
            f"({' | '.join(first.choices)}); only a concrete spec converts"
        )
    d_head = model_settings(spec).d_head
    names = {v: f"{k}_{d_head}" if k != "feed_forward" else k for k, v in REFERENCE_OPS.items()}
    arch: dict[str, list[list[str]]] = {}
    for short, kind in STACK_KEYS.items():
        arch[short] = [
            [names.get(b.choices[0], b.choices[0])] for b in spec.blocks() if b.stack == kind
        ]
    return {f"epoch{epoch}": arch}
