"""Multi-process data-parallel training under ``torchrun`` (torch DistributedDataParallel).

``torchrun --nproc_per_node N -m spiketime train ...`` starts N processes with the environment variables
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``). :func:`session` reads them,
joins the process group (``gloo`` on CPU, ``nccl`` on CUDA, where rank ``r`` uses ``cuda:LOCAL_RANK``) and
leaves it at the end. Without them (or with ``WORLD_SIZE=1``) it is a no-op and training runs in one process.

Every rank draws the same batch order and takes its slice of each global batch (:func:`rank_slice`); the
loss a rank backpropagates is ``(sum of its per-sample losses) * world_size / global_batch_len``, so DDP's
mean over ranks is exactly the gradient of the mean loss over the global batch (as in one process).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from spiketime.errors import InputError

ENV_KEYS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (``size`` 1: no process group)."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process: collectives and DDP are in use."""
        return self.size > 1


def _env_int(key: str, default: int) -> int:
    raw = os.environ.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"environment variable {key}={raw!r}: expected an integer (set by torchrun)") from None


def env_world(device: str = "cpu", key: str = "device") -> World:
    """The world described by torchrun's environment variables; ``device`` is resolved per rank (CUDA:
    ``cuda`` -> ``cuda:LOCAL_RANK``)."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World(device=device)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < size:
        raise InputError(f"environment variable RANK={rank}: expected 0 <= RANK < WORLD_SIZE={size}")
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is not None:
            raise InputError(f"{key}: expected cuda (each rank uses cuda:LOCAL_RANK) under torchrun, got {device!r}")
        device = f"cuda:{local_rank}"
    elif dev.type != "cpu":
        raise InputError(f"{key}: expected cpu or cuda under torchrun, got {device!r}")
    return World(size=size, rank=rank, local_rank=local_rank, device=device)


def check_device(device: str, key: str = "device") -> None:
    """A one-line :class:`InputError` naming ``key`` unless ``device`` is ``cpu``, or ``cuda`` / ``cuda:N`` that
    this torch build and machine have."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise InputError(f"{key}: expected cpu, cuda or cuda:N, got {device!r}")
    if dev.type == "cpu":
        return
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise InputError(f"{key}: {device!r} requested, but {why} (torch {torch.__version__}); use {key}=cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(
            f"{key}: {device!r} requested, but this machine has {torch.cuda.device_count()} CUDA "
            f"device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )


def backend_for(device: str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


@contextmanager
def session(device: str = "cpu", key: str = "device") -> Iterator[World]:
    """Join the torchrun process group for the duration of the block (no-op in a single process).

    A process group that is already initialised (e.g. by the caller's own script) is used as is and left
    open; one created here is destroyed at the end, also on errors.
    """
    world = env_world(device, key)
    if not world.active:
        yield world
        return
    if torch.device(world.device).type == "cuda":
        torch.cuda.set_device(world.device)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(world.device), rank=world.rank, world_size=world.size)
        created = True
    elif dist.get_world_size() != world.size or dist.get_rank() != world.rank:
        raise InputError(
            f"process group has rank {dist.get_rank()} of {dist.get_world_size()}, the environment "
            f"says RANK={world.rank} of WORLD_SIZE={world.size}"
        )
    try:
        yield world
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def rank_slice(idx: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous share of the global batch ``idx`` (sizes differ by at most one; empty when the
    batch has fewer samples than ranks)."""
    if not world.active:
        return idx
    return torch.tensor_split(idx, world.size)[world.rank]


def broadcast(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not world.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_collective_device(world))
    return box[0]


def all_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64; the same result on every rank)."""
    if not world.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device(world))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def barrier(world: World) -> None:
    """Wait until every rank gets here."""
    if world.active:
        dist.barrier()


def _collective_device(world: World) -> torch.device:
    """Where collectives' tensors must live: the rank's GPU for nccl, CPU for gloo."""
    return torch.device(world.device) if backend_for(world.device) == "nccl" else torch.device("cpu")


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel (the model itself in one process)."""
    if not world.active:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    dev = torch.device(world.device)
    return DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
