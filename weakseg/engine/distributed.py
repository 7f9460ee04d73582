"""Data-parallel training across processes (``torchrun``): process group, rank shares, reductions.

The :class:`~weakseg.engine.Trainer` calls :func:`setup` at the start of every ``fit``: when
``torchrun`` (or a launcher setting the same variables) started the process, ``WORLD_SIZE`` > 1,
``RANK`` and ``LOCAL_RANK`` are in the environment and the default process group is initialised
from them (``gloo`` on CPU, ``nccl`` on CUDA, each rank on ``cuda:LOCAL_RANK``). Without them
everything here is a no-op for one process: rank 0 of 1.

Learners take their rank's share of an epoch with :func:`rank_share`, the one sharding mechanism:
``train_batches(data, epoch, rng)`` receives the same generator on every rank, draws the epoch's
order (of tiles, batches or bags) from it as in one process, and keeps ``rank_share(order)``,
which is ``DistributedSampler``'s assignment: the order padded by wrapping around to a multiple of
the world size, then every ``world``-th item from position ``rank``. The shares are disjoint
apart from the padding, equal in length (so every rank takes the same number of optimiser steps),
and depend only on ``(random_state, epoch)``, so a resumed run sees the same shares.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch

from ..errors import WeaksegError

T = TypeVar("T")

#: seconds a rank waits in a collective (rank 0 validating on the whole validation set, say)
#: before the run fails; ``WEAKSEG_DIST_TIMEOUT_S`` overrides it
DEFAULT_TIMEOUT_S = 7200
#: prefixes that wrappers put in front of parameter names (DistributedDataParallel, torch.compile)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank, world size and local rank from the environment (``torchrun`` sets them); 0/1/0 without."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise WeaksegError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers: {err}") from None
    if world < 1 or not 0 <= rank < world:
        raise WeaksegError(f"invalid distributed environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank, world, local)


def info() -> DistInfo:
    """This process's place in the initialised process group (rank 0 of 1 without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return DistInfo(torch.distributed.get_rank(), torch.distributed.get_world_size(), env_info().local_rank)
    return DistInfo()


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the rank that writes run directories."""
    return info().is_main


def setup(device: str = "auto") -> tuple[DistInfo, torch.device | None]:
    """Initialise the default process group from the environment when ``WORLD_SIZE`` > 1.

    Returns this process's :class:`DistInfo` and the device it must train on (``cuda:LOCAL_RANK``
    when ``device`` is ``"auto"`` or ``"cuda"`` and CUDA is available; ``None``: resolve
    ``device`` as in one process). A group initialised before (by the caller, or by an earlier
    ``fit`` in this process) is reused; one initialised here is destroyed at exit.
    """
    env = env_info()
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        here = info()
    elif env.enabled:
        if not dist.is_available():
            raise WeaksegError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        cuda = str(device) in ("auto", "cuda") and torch.cuda.is_available() or str(device).startswith("cuda")
        if cuda:
            torch.cuda.set_device(env.local_rank)
        timeout = timedelta(seconds=float(os.environ.get("WEAKSEG_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
        atexit.register(_destroy)
        here = info()
    else:
        return DistInfo(), None
    if str(device) in ("auto", "cuda") and torch.cuda.is_available() and here.enabled:
        return here, torch.device("cuda", here.local_rank)
    return here, None


def _destroy() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_share(items: Sequence[T] | np.ndarray) -> list[T] | np.ndarray:
    """This rank's share of one epoch's ``items`` (the same sequence on every rank), as ``DistributedSampler``.

    The items are padded by wrapping around to a multiple of the world size, then every
    ``world``-th one from position ``rank`` is kept; one process gets ``items`` unchanged.
    An array gives an array, anything else a list.
    """
    here = info()
    if not here.enabled:
        return items
    n = len(items)
    if n == 0:
        raise WeaksegError("nothing to share between ranks: the epoch has no items")
    total = -(-n // here.world) * here.world
    positions = np.arange(here.rank, total, here.world) % n
    if isinstance(items, np.ndarray):
        return items[positions]
    return [items[int(i)] for i in positions]


def rank_generator(rng: np.random.Generator) -> np.random.Generator:
    """A generator of this rank's own (augmentations, crops), derived from the epoch's shared ``rng``.

    One process gets ``rng`` itself (single-process runs draw exactly what they always drew).
    """
    here = info()
    if not here.enabled:
        return rng
    return np.random.default_rng([int(rng.integers(2**63)), here.rank])


def process_seed(random_state: int, epoch: int, rank: int) -> int:
    """The global (Python, NumPy, torch) seed of ``rank`` in ``epoch`` of a multi-process run."""
    return int(np.random.SeedSequence([int(random_state), int(epoch), int(rank)]).generate_state(1, np.uint64)[0]
               % (2**63 - 1))


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    here = info()
    if not here.enabled:
        return [obj]
    out: list[Any] = [None] * here.world
    torch.distributed.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not info().enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over the ranks (float64; ``values`` in one process)."""
    if not info().enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Rank ``src``'s buffers (batch-norm running statistics, …) in ``module`` on every rank."""
    if info().enabled:
        for buf in module.buffers():
            torch.distributed.broadcast(buf, src=src)


def barrier() -> None:
    if info().enabled:
        torch.distributed.barrier()


class DDP(torch.nn.parallel.DistributedDataParallel):
    """``DistributedDataParallel`` that also answers the wrapped module's attributes.

    Learners read attributes of ``module_`` in their hooks (``default_cfg``, sub-networks); with the
    wrapper bound as ``module_`` they still find them. Calls go through DDP's ``forward``.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP / ``torch.compile`` wrappers."""
    while True:
        if isinstance(module, torch.nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(getattr(module, "_orig_mod"), torch.nn.Module):
            module = module._orig_mod
        else:
            return module


def strip_wrapper_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state dict without the ``module.`` / ``_orig_mod.`` prefixes wrappers add (when every key has one)."""
    state = dict(state)
    changed = True
    while changed and state:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


__all__ = ["DDP", "DistInfo", "all_gather_object", "all_reduce_sum", "barrier", "broadcast_buffers", "broadcast_object",
           "env_info",
           "info", "is_main_process", "process_seed", "rank_generator", "rank_share", "setup",
           "strip_wrapper_prefixes", "unwrap"]
