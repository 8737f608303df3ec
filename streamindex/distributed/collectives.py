"""The process-group plumbing of the distributed entry points: the group's size and rank, the
device a rank computes on, and gathering row shards of uneven size.

Everything goes through ``torch.distributed`` (NCCL on CUDA, gloo on CPU); nothing here picks a
device by itself: tensors stay where the caller put them, and CUDA work runs under
``torch.cuda.device(<the tensors' device>)`` so that no stream or allocation lands on ``cuda:0``
by default.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

#: Environment a multi-GPU launcher keeps (set with ``setdefault``, never turned on): NVLink
#: multicast (NVLS) and symmetric-memory multicast stay off.
NCCL_ENV_DEFAULTS = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}


def keep_multicast_off(environ=None) -> dict:
    """``setdefault`` the variables of :data:`NCCL_ENV_DEFAULTS` in ``environ`` (default
    ``os.environ``) and return it: values already set are left as they are."""
    env = os.environ if environ is None else environ
    for key, value in NCCL_ENV_DEFAULTS.items():
        env.setdefault(key, value)
    return env


def group_info(group) -> tuple[int, int]:
    """``(rank, world_size)`` of this process in ``group`` (``None``: the default group); a
    ``ValueError`` when torch.distributed is not initialised or the process is not in the group."""
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("group: torch.distributed is not initialised (call torch.distributed.init_process_group "
                         "first, e.g. under torchrun)")
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("group: this process is not a member of the given process group")
    return rank, dist.get_world_size(group)


def device_guard(device: torch.device):
    """Context under which the rank's work runs: ``torch.cuda.device(device)`` for a CUDA device,
    nothing for CPU."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def check_backend_device(group, device: torch.device, what: str) -> None:
    """NCCL moves CUDA tensors only; gloo moves CPU tensors (and a few CUDA ops). Name ``what``."""
    backend = str(dist.get_backend(group)).lower()
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(f"{what} is on {device}, but the process group's backend is nccl (CUDA tensors only)")


def global_rank(group, group_rank: int) -> int:
    """The default-group rank of ``group_rank`` in ``group`` (point-to-point ops address those)."""
    if group is None or group is dist.group.WORLD:
        return group_rank
    return dist.get_global_rank(group, group_rank)


def gather_rows(local: torch.Tensor, shards, *, S: int, group=None, dst: int | None = 0,
                out: torch.Tensor | None = None) -> torch.Tensor | None:
    """Assemble row shards (dim 1) of uneven size into the full ``[B, S, ...]`` tensor.

    ``local`` is ``[B, n_r, ...]``: the rows of this rank's ranges ``shards[r]``, concatenated in
    order. With ``dst`` a group rank, that rank returns the full tensor and the others ``None``;
    with ``dst=None`` every rank returns it (an all-gather). The rows travel by point-to-point
    messages (``torch.distributed.batch_isend_irecv``), one per range, received straight into the
    output where its slice is contiguous (``B = 1``), so no padded copy of the whole output exists.
    ``out`` (optional): a preallocated ``[B, S, ...]`` destination on the receiving ranks.

    Traffic: each receiving rank gets ``(S - n_r) · B · row_bytes``. With NCCL, a rank that has
    nothing to send or receive (no rows, not a receiver) makes no call; as for any NCCL
    point-to-point batch, the group should have run a collective before (``init_process_group``
    followed by a barrier, or :func:`indexer_topk_distributed` without ``S``, which all-gathers
    the row counts).
    """
    rank, W = group_info(group)
    if len(shards) != W:
        raise ValueError(f"bounds has {len(shards)} shards but the process group has {W} ranks")
    if dst is not None and not 0 <= dst < W:
        raise ValueError(f"dst must be a rank of the group (0 .. {W - 1}) or None, got {dst}")
    B, tail = local.shape[0], tuple(local.shape[2:])
    receive = dst is None or rank == dst
    if receive:
        want = (B, S, *tail)
        if out is None:
            out = torch.empty(want, dtype=local.dtype, device=local.device)
        elif tuple(out.shape) != want or out.dtype != local.dtype or out.device != local.device:
            raise ValueError(f"out must be {local.dtype} {want} on {local.device}, got {out.dtype} "
                             f"{tuple(out.shape)} on {out.device}")
    ops, copies = [], []
    with device_guard(local.device):
        base = 0
        for tag, (s0, s1) in enumerate(shards[rank]):  # own rows: local copy, then send to the receivers
            part = local[:, base:base + s1 - s0]
            base += s1 - s0
            if receive:
                out[:, s0:s1].copy_(part)
            if W > 1:
                part = part.contiguous()
                for peer in (range(W) if dst is None else [dst]):
                    if peer != rank:
                        ops.append(dist.P2POp(dist.isend, part, global_rank(group, peer), group, tag))
        if receive:
            for peer in range(W):
                if peer == rank:
                    continue
                for tag, (s0, s1) in enumerate(shards[peer]):
                    view = out[:, s0:s1]
                    buf = view if view.is_contiguous() else torch.empty(view.shape, dtype=out.dtype, device=out.device)
                    ops.append(dist.P2POp(dist.irecv, buf, global_rank(group, peer), group, tag))
                    if buf is not view:
                        copies.append((view, buf))
        if ops:
            for work in dist.batch_isend_irecv(ops):
                work.wait()
        for view, buf in copies:
            view.copy_(buf)
    return out if receive else None
