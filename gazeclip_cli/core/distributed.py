"""torchrun support: process-group setup from the environment, rank sharding, metric reduction.

Nothing happens at import; a single process (no WORLD_SIZE) gets a no-op context.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistContext:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: list[int], ctx: DistContext) -> list[int]:
    """This rank's share, padded by wrapping so every rank has the same count (as DistributedSampler)."""
    if not ctx.enabled:
        return indices
    per_rank = -(-len(indices) // ctx.world_size)
    padded = indices + indices[: per_rank * ctx.world_size - len(indices)]
    return padded[ctx.rank :: ctx.world_size]


def all_gather_tensor(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate a tensor of equal shape from every rank, in rank order."""
    if not ctx.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(ctx.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def mean_across(value: float, ctx: DistContext) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics drift apart between DDP forwards)."""
    if not ctx.enabled:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)
