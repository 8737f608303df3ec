"""``indexer_topk_distributed``: the indexer top-k of one long prefill, its query rows sharded over
the ranks of a ``torch.distributed`` process group (context parallelism)."""
from __future__ import annotations

import torch

from ..api import indexer_topk
from ..problem import check_int
from .collectives import device_guard, gather_rows
from .plan import check_gather, make_plan


def indexer_topk_distributed(q_local: torch.Tensor, k: torch.Tensor, w_local: torch.Tensor, topk: int, *,
                             ratio: int = 4, offset: int = 0, S: int | None = None, group=None,
                             scheme: str = "contiguous", row_cost: float = 0, bounds=None, gather: str | None = None,
                             q_scale: torch.Tensor | None = None, k_scale: torch.Tensor | None = None,
                             return_scores: bool = False, **indexer_kw):
    """:func:`streamindex.indexer_topk` of a sequence whose query rows are sharded over ``group``.

    Every rank of ``group`` calls this with its own rows. The shards are
    ``shard_bounds(S, world_size, ratio=ratio, offset=offset, T=k.shape[-2], scheme=scheme,
    row_cost=row_cost)`` (equal causal work, see :mod:`streamindex.distributed.sharding`), or
    ``bounds`` when given. A rank builds its arguments from the full tensors like this::

        shards = shard_bounds(S, world_size, ratio=4, T=k.shape[1], scheme="zigzag")
        q_local = local_rows(q, shards[rank])          # [B, n_r, H, D]: the rows of its ranges
        w_local = local_rows(w, shards[rank])          # [B, n_r, H]
        idx_local = indexer_topk_distributed(q_local, k, w_local, 512, ratio=4, S=S, scheme="zigzag")

    (or draws only its rows in the first place). Each range ``(s0, s1)`` of the rank is one
    ``indexer_topk`` call on its rows with ``offset + s0``, so the result is bit-identical to the
    single-process call's rows ``[s0, s1)``, on any path.

    **Keys.** Every rank holds all ``T`` compressed keys ``k [B, T, D]`` (they are small: 2M keys ×
    128 bf16 = 512 MiB at 8M tokens, 4× compression) and the same values on every rank (not
    checked: that would cost a collective). A user whose keys come out of a context-parallel
    compressor, rank ``r`` holding keys ``[t0_r, t1_r)``, assembles them once per layer, before the
    call, with one all-gather into a preallocated buffer: ``gather_rows(k_local, key_shards, S=T,
    dst=None, out=k)`` (one batch of point-to-point transfers, any shard sizes), or
    ``torch.distributed.all_gather_into_tensor(k.view(W, -1), k_local)`` when the key shards are
    equal and contiguous (``B = 1``). Each rank then receives ``(W - 1) / W · B·T·D·elem`` bytes:
    256 MiB for the 8M-token example on 2 GPUs, well under a millisecond at NVLink rates, against
    minutes of indexer work. ``k_scale`` (fp8) is gathered the same way.

    Args:
        q_local: ``[B, n_r, H, D]`` (or ``[n_r, H, D]``): this rank's query rows, its ranges
            concatenated in order. k: ``[B, T, D]`` all compressed keys. w_local: ``[B, n_r, H]``.
        topk, ratio, offset: as in :func:`streamindex.indexer_topk` (``offset``: position of query
            0 of the *whole* sequence).
        S: query rows of the whole sequence; ``None`` (with ``bounds=None``): all-gather the row
            counts (one small collective per call).
        group: the process group (``None``: the default group).
        scheme, row_cost: the sharding (:func:`streamindex.distributed.shard_bounds`).
        bounds: explicit per-rank ranges instead (one list of ``(s0, s1)`` per rank, covering
            ``[0, S)`` once).
        gather: ``None`` (each rank returns its rows), ``"rank0"`` (group rank 0 returns the full
            ``[B, S, topk]``, the others ``None``) or ``"all"`` (every rank returns it).
        q_scale: fp8 only, ``[B, n_r, H]`` fp32 scales of this rank's rows. k_scale: ``[B, T]``.
        return_scores: also return the fp32 scores (gathered alike).
        **indexer_kw: passed to :func:`streamindex.indexer_topk` (``path``, ``workspace_bytes``,
            ``chunk_q``, ``chunk_t``, ``check_finite``).

    Returns:
        ``idx`` int32 ``[B, n_r, topk]`` (or gathered, see ``gather``), and ``scores`` with
        ``return_scores``; unbatched inputs give unbatched outputs. Same contract as
        :func:`streamindex.indexer_topk`.

    All work runs under ``torch.cuda.device(q_local.device)`` (the caller sets each rank's device,
    e.g. ``torch.cuda.set_device(local_rank)``); with NCCL the tensors must be CUDA tensors.
    """
    for name, t in (("q_local", q_local), ("k", k), ("w_local", w_local)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    check_gather(gather)
    check_int("topk", topk, 1)
    check_int("ratio", ratio, 1)
    check_int("offset", offset, 0)
    if q_local.dim() not in (3, 4):
        raise ValueError(f"q_local must be [B, n_local, H, D] or [n_local, H, D], got shape {tuple(q_local.shape)}")
    squeeze = q_local.dim() == 3
    if squeeze:
        if k.dim() != 2 or w_local.dim() != 2 or (q_scale is not None and q_scale.dim() != 2) \
                or (k_scale is not None and k_scale.dim() != 1):
            raise ValueError("k, w_local, q_scale and k_scale must be unbatched like q_local "
                             f"{tuple(q_local.shape)}, got k {tuple(k.shape)}, w_local {tuple(w_local.shape)}")
        q_local, k, w_local = q_local.unsqueeze(0), k.unsqueeze(0), w_local.unsqueeze(0)
        q_scale = None if q_scale is None else q_scale.unsqueeze(0)
        k_scale = None if k_scale is None else k_scale.unsqueeze(0)
    if k.dim() != 3:
        raise ValueError(f"k must be [B, T, D] to match q_local, got shape {tuple(k.shape)}")
    dev = q_local.device
    for name, t in (("k", k), ("w_local", w_local), ("q_scale", q_scale), ("k_scale", k_scale)):
        if t is not None and t.device != dev:
            raise ValueError(f"{name} is on {t.device} but q_local is on {dev}")
    n_local = q_local.shape[1]
    for name, t in (("w_local", w_local), ("q_scale", q_scale)):
        if t is not None and (t.dim() < 2 or t.shape[1] != n_local):
            raise ValueError(f"{name} must have q_local's {n_local} rows in dim 1, got shape {tuple(t.shape)}")
    plan = make_plan(n_local, S=S, bounds=bounds, scheme=scheme, row_cost=row_cost, ratio=ratio, offset=offset,
                     T=k.shape[1], group=group, device=dev, rows_arg="q_local")

    with device_guard(dev):
        outs = _local_topk(plan, q_local, k, w_local, topk, ratio, offset, q_scale, k_scale, return_scores,
                           indexer_kw)
        if gather is not None:
            dst = 0 if gather == "rank0" else None
            outs = [gather_rows(o, plan.shards, S=plan.S, group=group, dst=dst) for o in outs]
    if squeeze:
        outs = [None if o is None else o.squeeze(0) for o in outs]
    return tuple(outs) if return_scores else outs[0]


def _local_topk(plan, q, k, w, topk, ratio, offset, q_scale, k_scale, return_scores, indexer_kw) -> list:
    """``[idx]`` or ``[idx, scores]`` of this rank's rows: one ``indexer_topk`` call per range,
    written into one preallocated output (so at most one range's output exists beside it)."""
    B = q.shape[0]

    def call(s0, s1, base):
        n = s1 - s0
        sl = slice(base, base + n)
        whole = n == q.shape[1]
        rows = (lambda t: t if t is None or whole else t[:, sl])
        res = indexer_topk(rows(q), k, rows(w), topk, ratio=ratio, offset=offset + s0, q_scale=rows(q_scale),
                           k_scale=k_scale, return_scores=return_scores, **indexer_kw)
        return list(res) if return_scores else [res]

    if len(plan.ranges) == 1:
        return call(*plan.ranges[0])
    out = [torch.empty(B, plan.n_local, topk, dtype=torch.int32, device=q.device)]
    if return_scores:
        out.append(torch.empty(B, plan.n_local, topk, dtype=torch.float32, device=q.device))
    if not plan.ranges:  # a rank without rows (S smaller than the number of chunks)
        return out
    for s0, s1, base in plan.ranges:
        parts = call(s0, s1, base)
        for dst, part in zip(out, parts):
            dst[:, base:base + s1 - s0].copy_(part)
        del parts
    return out
