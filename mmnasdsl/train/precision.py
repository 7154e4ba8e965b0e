"""Mixed precision (`precision = fp32 | bf16 | fp16` in `search { }` and `train { }`).

Weights, optimiser state and the loss stay in fp32; inside `autocast` torch runs the
matmul-heavy ops (linear, bmm, scaled_dot_product_attention, the LSTM) in the lower
precision and keeps softmax, LayerNorm and the losses in fp32. bf16 has fp32's exponent
range, so it needs no loss scaling; fp16 does, and only CUDA runs it (CPU autocast has no
fp16 kernels worth using), so fp16 on a CPU is refused rather than silently slow.
Why bf16 on CPU at all: this machine's avx512_bf16 runs a 2048² bf16 matmul at ~2x the
fp32 rate (docs/performance.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

from mmnasdsl.lang.errors import UsageError

Precision = Literal["fp32", "bf16", "fp16"]
DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse what this device cannot run: fp16 needs CUDA; an unknown name is an error."""
    if precision not in ("fp32", *DTYPES):
        raise UsageError(f"precision {precision!r}: choose fp32, bf16 or fp16")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError(
            "precision fp16 needs a CUDA device (CPU autocast runs bf16 only): "
            "use precision = bf16 on a CPU"
        )


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Run the enclosed forward (and loss) in `precision`; fp32 is a no-op."""
    if precision == "fp32":
        yield
        return
    check_precision(precision, device)
    with torch.autocast(device_type=device.type, dtype=DTYPES[precision]):
        yield


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 (small gradients underflow in fp16), else None."""
    if precision != "fp16":
        return None
    check_precision(precision, device)
    return torch.amp.GradScaler(device.type)
