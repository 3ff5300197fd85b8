"""Scale-out on ``torch.distributed``: join the process group, shard the images, gather the records.

Under ``torchrun --nproc_per_node N`` the images are cut into batches of ``batch_size``
consecutive images and batch ``j`` goes to rank ``j % N``: every image exactly once (no padding
duplicates, unlike ``DistributedSampler``'s default), and every batch holds the same images as in
a single-process run, so that the table is the same bit for bit on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from .spec import CompareError

__all__ = ["Dist", "join_process_group", "owner", "shard"]


def owner(index: int, batch_size: int, world: int) -> int:
    """The rank that runs image ``index``: its batch ``index // batch_size`` modulo ``world``."""
    return (index // batch_size) % world


def shard(n_images: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """The batches of image indices that ``rank`` of ``world`` runs, in order.

    Batch ``j`` holds images ``j * batch_size`` to ``(j + 1) * batch_size - 1`` (the last one
    fewer); rank ``r`` takes the batches ``j`` with ``j % world == r``. Over all ranks every
    index in ``range(n_images)`` appears exactly once.
    """
    starts = range(0, n_images, batch_size)
    return [list(range(s, min(s + batch_size, n_images)))
            for j, s in enumerate(starts) if j % world == rank]


@dataclass
class Dist:
    """This process's place in the run: rank, world size, whether it created the group."""

    rank: int = 0
    world: int = 1
    created: bool = False

    def gather(self, payload: Any) -> list[Any]:
        """Every rank's ``payload``, in rank order, on every rank."""
        if self.world == 1:
            return [payload]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, payload)
        return out

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this run created it."""
        if self.created:
            import torch.distributed as dist

            dist.destroy_process_group()


def join_process_group(distributed: bool | None,
                       device: torch.device | None) -> tuple[Dist, torch.device | None]:
    """Join (or create) the torchrun process group; gloo on the CPU, nccl on the GPU.

    Returns this process's :class:`Dist` and the device it runs on (its local GPU under nccl).
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if distributed is False or (distributed is None and world <= 1):
        return Dist(), device
    import torch.distributed as dist

    if not dist.is_available():
        raise CompareError("torch.distributed is not available in this PyTorch build")
    created = False
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise CompareError(
                "distributed=True needs the torchrun environment (MASTER_ADDR, RANK, WORLD_SIZE); "
                "start with `torchrun --nproc_per_node N -m xcam compare ...`"
            )
        use_cuda = (device.type == "cuda") if device is not None else torch.cuda.is_available()
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        created = True
    elif dist.get_backend() == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return Dist(dist.get_rank(), dist.get_world_size(), created), device

