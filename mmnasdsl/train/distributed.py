"""Scale-out with torch.distributed: one process per device, launched by `torchrun`.

`torchrun --nproc_per_node=K -m mmnasdsl search|train ...` sets RANK / WORLD_SIZE /
LOCAL_RANK; `init()` then joins the process group (gloo on CPU, NCCL on GPU). Every rank
holds the same supernet and samples the same architecture each step (the sampling
generator is seeded from (seed, epoch, step), identical on every rank), so DDP's
gradient all-reduce sums matching paths; candidates that did not run get no gradient,
which DDP is told (`find_unused_parameters=True`). θ lives in the same module, so its
gradient is all-reduced with W's. Each rank takes its own slice of every global batch;
rank 0 alone writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    """Where this process sits: rank r of `world` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def shard(self, indices: list[int]) -> list[int]:
        """This rank's part of a global batch (strided, so sizes differ by at most one)."""
        return indices[self.rank :: self.world] if self.enabled else indices


def init(device: torch.device) -> Dist:
    """Join the process group torchrun describes in the environment, or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not torch_dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend=backend)
    return Dist(
        torch_dist.get_rank(), torch_dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    )


def device_for(choice: str, dist_local_rank: int | None = None) -> torch.device:
    """`cpu`, `cuda` or `auto` (cuda when present); under torchrun, cuda:LOCAL_RANK."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        local = (
            dist_local_rank
            if dist_local_rank is not None
            else int(os.environ.get("LOCAL_RANK", "0"))
        )
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device(choice)


def wrap(net: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    """DDP around the network when distributed (unused candidates get no gradient)."""
    if not dist.enabled:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids, find_unused_parameters=True)


def unwrap(net: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (its own methods: loss, predict, arch ...)."""
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


def barrier(dist: Dist) -> None:
    if dist.enabled:
        torch_dist.barrier()


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def broadcast_object(obj: Any, dist: Dist) -> Any:
    """Rank 0's `obj` on every rank (the run directory it chose, ...)."""
    if not dist.enabled:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(tensors: list[torch.Tensor], dist: Dist) -> None:
    """Average tensors in place over the ranks (θ gradients computed outside DDP)."""
    if not dist.enabled:
        return
    for t in tensors:
        torch_dist.all_reduce(t)
        t.div_(dist.world)
