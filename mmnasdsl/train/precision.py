"""Mixed precision (`precision = fp32 | bf16 | fp16` in `search { }` and `train { }`).

Weights, optimiser state and the loss stay in fp32; inside `autocast` torch runs the
matmul-heavy ops (linear, bmm, scaled_dot_product_attention, the LSTM) in the lower
precision and keeps softmax, LayerNorm and the losses in fp32. bf16 has fp32's exponent
range, so it needs no loss scaling; fp16 does, and only CUDA runs it (CPU autocast has no
fp16 kernels worth using), so fp16 on a CPU is refused rather than silently slow.
Why bf16 on CPU at all: a CPU with avx512_bf16 (or AMX) runs a 2048² bf16 matmul at ~2x
the fp32 rate. One without them (AVX2 only) emulates bf16 and runs matmuls 4-10x *slower*
than fp32 (docs/performance.md), so a bf16 run there is allowed (its numbers are still
bf16's) but warned about once, before hours are spent on it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal

import torch

from mmnasdsl.lang.errors import UsageError

Precision = Literal["fp32", "bf16", "fp16"]
DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
log = logging.getLogger("mmnasdsl")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN finds bf16 instructions (avx512_bf16, AMX) on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def slow_precision_warning(precision: str, device: torch.device) -> str | None:
    """Why `precision` on `device` will run slower than fp32, or None."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        cap = torch.backends.cpu.get_cpu_capability()
        return (
            f"precision bf16 on a CPU without native bf16 (torch CPU capability {cap}, no "
            "avx512_bf16/AMX): bf16 is emulated and runs several times slower than fp32 here"
        )
    return None


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


class Amp:
    """A run's precision: the autocast context of its forwards and the W update around it
    (with fp16's loss scaling when needed), so a step reads the same in every precision."""

    def __init__(self, precision: str = "fp32", device: torch.device | None = None) -> None:
        self.precision = precision
        self.device = device or torch.device("cpu")
        check_precision(precision, self.device)
        self.scaler = grad_scaler(precision, self.device)
        slow = slow_precision_warning(precision, self.device)
        if slow:
            log.warning(slow)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        return autocast(self.precision, self.device)

    def update(self, loss: torch.Tensor, opt: torch.optim.Optimizer, clip: float) -> None:
        """Backward, gradient-norm clip and optimiser step (fp16: scaled, unscaled before
        the clip, and skipped on an inf/NaN gradient, as torch.amp prescribes)."""
        scaler = self.scaler
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
