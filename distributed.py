"""Several processes training together (``torchrun``, DistributedDataParallel): joining the
process group, ranks and their devices, collectives that keep the ranks in lock-step, and "rank 0
first, then the others" for work that one process must do before the rest can go on.

Without ``torchrun`` (one process) every helper is a no-op or returns the single-process answer
(rank 0 of a world of 1), so the training code calls them unconditionally. How a run is spread
over GPUs (global batch, BatchNorm, who validates and saves) is described in the README section
"Several GPUs".
"""
import datetime
import os

import torch
import torch.distributed as dist

from runtime import resolve_device, unwrap


DIST_TIMEOUT = datetime.timedelta(minutes=30)
"""How long a rank waits at a collective (e.g. for rank 0's validation and checkpoint) before
the run is declared hung."""


def init_distributed(device_spec="auto"):
    """Join the process group when started by ``torchrun`` (environment ``WORLD_SIZE`` > 1).

    Backend NCCL when ``device_spec`` resolves to CUDA (each rank then uses ``cuda:LOCAL_RANK``),
    gloo on the CPU. A no-op without torchrun or when already initialised. Returns the
    world size.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or is_distributed():
        return world_size()
    device = rank_device(device_spec)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=DIST_TIMEOUT, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=DIST_TIMEOUT)
    return world_size()


def close_distributed():
    """Leave the process group (when in one)."""
    if is_distributed():
        dist.destroy_process_group()


def is_distributed():
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size():
    """Number of processes training together (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    """True on rank 0: the process that validates and writes checkpoints and logs."""
    return rank() == 0


def rank_device(spec="auto"):
    """:func:`resolve_device`, except that a CUDA device under torchrun is ``cuda:LOCAL_RANK``
    (one GPU per rank; the index of ``spec`` is then ignored). A CUDA device is made the
    current one (``torch.cuda.set_device``), so nothing of this process -- the pin-memory
    thread, the RNG, the caching allocator -- opens a context on GPU 0 when it trains on
    ``cuda:N``. A CPU device touches nothing of CUDA."""
    device = resolve_device(spec)
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def local_rank():
    """This process's rank on its node (``LOCAL_RANK`` of torchrun; the global rank without
    it, 0 without a process group)."""
    return int(os.environ.get("LOCAL_RANK", rank())) if is_distributed() else 0


def _collective_device():
    """Where small tensors for collectives live: the rank's GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_max(value):
    """The largest float ``value`` over all ranks (``value`` itself without a process group)."""
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def all_reduce_mean(metrics, keys):
    """``metrics`` (dict) with the float entries ``keys`` averaged over all ranks (in place)."""
    keys = [k for k in keys if k in metrics]
    if is_distributed() and keys:
        t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64,
                         device=_collective_device())
        dist.all_reduce(t)
        for k, v in zip(keys, (t / world_size()).tolist()):
            metrics[k] = v
    return metrics


class RankFailure(RuntimeError):
    """Raised on the ranks that were fine when another rank of the run failed."""


def agree(ok, what="another rank failed"):
    """A barrier that also carries failure: every rank calls it with ``ok`` (its own success);
    if any rank passes False, the ranks that passed True raise :class:`RankFailure`. Without
    a process group it does nothing. Used where rank 0 alone validates and writes files, so a
    failure there stops the others instead of leaving them waiting (:class:`RankFailure`)."""
    if not is_distributed():
        return
    failed = all_reduce_max(0.0 if ok else 1.0)
    if failed and ok:
        raise RankFailure(f"rank {rank()} stops: {what}")


def broadcast_buffers(model):
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so that all ranks
    hold the module that rank 0 saves. (DDP broadcasts them at the start of every forward, so
    after the last step of an epoch they differ by that step's update.)"""
    if is_distributed():
        for buf in unwrap(model).buffers():
            dist.broadcast(buf, src=0)


def wrap_ddp(model, device, sync_bn):
    """``model`` wrapped in DistributedDataParallel (SyncBatchNorm first when ``sync_bn``)."""
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=None
                                                     if ids is None else ids[0])


def first_ranks_then_others(fn, failure, is_first, others_too=False):
    """``fn()`` where ``is_first`` while the other ranks wait; a failure there is raised there and
    stops the others with ``failure`` (:func:`agree`) instead of leaving them waiting.
    Returns ``fn()``'s result on the first ranks; elsewhere None, or with ``others_too`` the
    result of ``fn()`` run there afterwards (e.g. reading the cache the first ranks filled)."""
    result, error = None, None
    if is_first:
        try:
            result = fn()
        except BaseException as e:    # re-raised below, after telling the other ranks
            error = e
    agree(error is None, failure)
    if error is not None:
        raise error
    return result if is_first or not others_too else fn()


def main_rank_first(fn, what):
    """Run ``fn()`` on rank 0 while the other ranks wait; then (if it succeeded) return its
    result on rank 0 and None elsewhere. A failure on rank 0 is raised there and stops the
    others (:func:`agree`) instead of leaving them waiting. Single process: just ``fn()``."""
    return first_ranks_then_others(fn, f"rank 0 failed while {what}", is_main_process())


def local_main_first(fn, what):
    """``fn()`` on every rank, by the first rank of each node (``LOCAL_RANK`` 0) while the other
    ranks of the run wait, then by the others: with a node-local ``data.cache_dir`` one process
    per node decodes the images into it and the others read it (on a shared file system the
    first ranks of the nodes write the same files atomically). A failure of a first rank stops
    the others (:func:`agree`). Single process: just ``fn()``. Returns ``fn()``'s result."""
    return first_ranks_then_others(fn, f"the first rank of a node failed while {what}",
                                    local_rank() == 0, others_too=True)
