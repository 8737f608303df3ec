"""``csa_forward_distributed``: one DeepSeek-V4 CSA step (indexer top-k, then sparse attention) of
a long prefill, its queries sharded over the ranks of a ``torch.distributed`` process group."""
from __future__ import annotations

from typing import Callable

import torch

from ..csa import csa_forward
from ..problem import check_int
from .collectives import device_guard, gather_rows
from .plan import check_gather, make_plan

DEFAULT_CSA_SCHEME = "zigzag"


def csa_row_cost(*, H: int, Di: int, Hq: int, D: int, topk: int, window: int = 128) -> float:
    """The attention FLOPs of one query (``4·Hq·D·(topk + window)``) in units of the indexer's
    FLOPs per visible key (``2·H·Di``): the ``row_cost`` that balances a *contiguous* CSA split
    when both stages run at the same FLOP rate (5,120 for V4-Flash). The attention at V4 shapes is
    bound by its gathers rather than FLOPs (``streamindex/csa/NOTES.md``), so the true figure is
    larger; the default zigzag split does not need it."""
    for name, v in (("H", H), ("Di", Di), ("Hq", Hq), ("D", D), ("topk", topk), ("window", window)):
        check_int(name, v, 1)
    return 4 * Hq * D * (topk + window) / (2 * H * Di)


def csa_forward_distributed(x_idx_q_local: torch.Tensor, idx_k: torch.Tensor, idx_w_local: torch.Tensor,
                            q_local: torch.Tensor | Callable[[int, int], torch.Tensor], kv_compressed: torch.Tensor,
                            kv_window: torch.Tensor, sink: torch.Tensor | None, *, topk: int, ratio: int,
                            offset: int = 0, S: int | None = None, group=None, scheme: str = DEFAULT_CSA_SCHEME,
                            row_cost: float = 0, bounds=None, gather: str | None = None,
                            out: torch.Tensor | Callable | None = None, timings: dict | None = None, **csa_kw):
    """:func:`streamindex.csa_forward` of a sequence whose queries are sharded over ``group``.

    The shards are ``shard_bounds(S, world_size, ratio=ratio, offset=offset, T=kv_compressed.shape[-2],
    scheme=scheme, row_cost=row_cost)`` or ``bounds``. **Balance:** the indexer's cost per query
    grows with its visible keys (causal) while the attention's is about constant (``topk +
    window`` rows per query once the sequence is longer than that). The default ``"zigzag"``
    split balances both at once: it gives every rank the same causal work *and*, since that work
    is affine in the position, the same number of queries (module docstring of
    :mod:`streamindex.distributed.sharding`). A ``"contiguous"`` split balances
    ``visible + row_cost`` per query; :func:`csa_row_cost` estimates ``row_cost`` from FLOPs.

    Each range ``(s0, s1)`` of the rank is one :func:`streamindex.csa_forward` call with
    ``offset + s0``, so every output row is the single-process call's row, bit for bit with the
    ``triton`` and ``tilelang`` attention (one program per query) and on the ``reference``
    attention up to the CPU matmul's batch-size dependent rounding.

    Args:
        x_idx_q_local, idx_w_local: the indexer's q ``[B, n_r, H, Di]`` and fp32 w ``[B, n_r, H]`` of
            this rank's rows (its ranges concatenated in order). idx_k: ``[B, T, Di]``, all keys.
        q_local: main-attention queries of this rank's rows ``[B, n_r, Hq, D]``, or a provider
            ``q_local(start, end)`` over *local* row indices (see :func:`streamindex.csa_forward`).
        kv_compressed: ``[B, T, D]``, all of it. kv_window: raw KV by absolute position; it must
            hold at least positions ``0 .. offset + s1 - 1`` of this rank's last range ``s1`` (the
            whole ``[B, offset + S, D]`` is simplest). sink: fp32 ``[Hq]`` or ``None``.
        topk, ratio, offset: as in :func:`streamindex.csa_forward` (``offset``: position of query 0
            of the whole sequence).
        S, group, scheme, row_cost, bounds: the sharding (see
            :func:`streamindex.distributed.indexer_topk_distributed`).
        gather: ``None`` (each rank returns its rows), ``"rank0"`` or ``"all"`` (the full ``[B, S,
            Hq, D]`` on group rank 0 / on every rank; not with a consumer ``out``).
        out: ``None`` (allocate ``[B, n_r, Hq, D]``), a tensor of that shape, or a consumer
            ``out(start, end, o)`` called with *local* row indices.
        timings: a dict that receives the summed ``indexer_s`` / ``attn_s`` of this rank's calls
            and ``n_calls``.
        **csa_kw: passed to :func:`streamindex.csa_forward` (``softmax_scale``, ``chunk``,
            ``index_chunk``, ``attn_impl``, ``indexer_path``, ``window``, ``workspace_bytes``,
            ``check_finite``).

    Returns:
        This rank's output rows ``[B, n_r, Hq, D]`` (or gathered, see ``gather``; unbatched if the
        inputs were), or ``None`` with a consumer ``out``.
    """
    for name, t in (("x_idx_q_local", x_idx_q_local), ("idx_k", idx_k), ("idx_w_local", idx_w_local),
                    ("kv_compressed", kv_compressed), ("kv_window", kv_window)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not (isinstance(q_local, torch.Tensor) or callable(q_local)):
        raise TypeError(f"q_local must be a tensor or a callable q_local(start, end), got {type(q_local).__name__}")
    if not (out is None or isinstance(out, torch.Tensor) or callable(out)):
        raise TypeError(f"out must be None, a tensor or a callable out(start, end, o), got {type(out).__name__}")
    check_gather(gather)
    if gather is not None and callable(out):
        raise ValueError("gather needs a tensor output: pass out=None or a tensor, not a consumer")
    check_int("topk", topk, 1)
    check_int("ratio", ratio, 1)
    check_int("offset", offset, 0)
    if x_idx_q_local.dim() not in (3, 4):
        raise ValueError(f"x_idx_q_local must be [B, n_local, H, Di] or [n_local, H, Di], got shape "
                         f"{tuple(x_idx_q_local.shape)}")
    squeeze = x_idx_q_local.dim() == 3
    if squeeze:
        for name, t in (("idx_k", idx_k), ("idx_w_local", idx_w_local), ("kv_compressed", kv_compressed),
                        ("kv_window", kv_window)):
            if t.dim() != 2:
                raise ValueError(f"{name} must be unbatched like x_idx_q_local {tuple(x_idx_q_local.shape)}, got "
                                 f"shape {tuple(t.shape)}")
        x_idx_q_local, idx_k, idx_w_local, kv_compressed, kv_window = (
            t.unsqueeze(0) for t in (x_idx_q_local, idx_k, idx_w_local, kv_compressed, kv_window))
        if isinstance(q_local, torch.Tensor):
            if q_local.dim() != 3:
                raise ValueError("q_local must be [n_local, Hq, D] like x_idx_q_local, got shape "
                                 f"{tuple(q_local.shape)}")
            q_local = q_local.unsqueeze(0)
        if isinstance(out, torch.Tensor):
            out = out.unsqueeze(0)
    if kv_compressed.dim() != 3:
        raise ValueError(f"kv_compressed must be [B, T, D], got shape {tuple(kv_compressed.shape)}")
    dev = kv_compressed.device
    B, n_local = x_idx_q_local.shape[:2]
    for name, t in (("idx_w_local", idx_w_local), ("q_local", q_local), ("out", out)):
        if isinstance(t, torch.Tensor) and (t.dim() < 2 or t.shape[1] != n_local):
            raise ValueError(f"{name} must have x_idx_q_local's {n_local} rows in dim 1, got shape {tuple(t.shape)}")
    if n_local == 0 and out is None and not isinstance(q_local, torch.Tensor):
        raise ValueError("a rank without rows needs q_local as a tensor [B, 0, Hq, D] (or out as a tensor) to know "
                         "the output's shape; a provider is never called there")
    plan = make_plan(n_local, S=S, bounds=bounds, scheme=scheme, row_cost=row_cost, ratio=ratio, offset=offset,
                     T=kv_compressed.shape[1], group=group, device=dev, rows_arg="x_idx_q_local")

    result = out if isinstance(out, torch.Tensor) else None
    collector = _Collector(B, n_local, dev) if out is None and not isinstance(q_local, torch.Tensor) else None
    stage = {"indexer_s": 0.0, "attn_s": 0.0, "n_calls": 0}
    with device_guard(dev):
        if result is None and out is None and isinstance(q_local, torch.Tensor):
            result = torch.empty(B, n_local, q_local.shape[2], q_local.shape[3], dtype=q_local.dtype, device=dev)
        for s0, s1, base in plan.ranges:
            n = s1 - s0
            whole = n == n_local
            tm = {} if timings is not None else None
            if isinstance(q_local, torch.Tensor):
                q_r = q_local if whole else q_local[:, base:base + n]
            else:
                q_r = _shifted_provider(q_local, base)
            if result is not None:
                out_r = result if whole else result[:, base:base + n]
            elif callable(out):
                out_r = _shifted_consumer(out, base)
            else:  # provider q, no out: allocate once the first chunk tells Hq
                out_r = _shifted_consumer(collector.write, base)
            csa_forward(x_idx_q_local if whole else x_idx_q_local[:, base:base + n], idx_k,
                        idx_w_local if whole else idx_w_local[:, base:base + n], q_r, kv_compressed, kv_window, sink,
                        topk=topk, ratio=ratio, offset=offset + s0, out=out_r, timings=tm, **csa_kw)
            if tm is not None:
                stage["indexer_s"] += tm["indexer_s"]
                stage["attn_s"] += tm["attn_s"]
                stage["n_calls"] += 1
                stage.update({k: v for k, v in tm.items() if k in ("chunk", "index_chunk")})
        if collector is not None:
            result = collector.buffer
        if callable(out):
            result = None
        if gather is not None:
            result = gather_rows(result, plan.shards, S=plan.S, group=group, dst=0 if gather == "rank0" else None)
    if timings is not None:
        timings.update(stage)
    if result is not None and squeeze:
        result = result.squeeze(0)
    return result


def _shifted_provider(q: Callable, base: int) -> Callable:
    return lambda a, b: q(base + a, base + b)


def _shifted_consumer(out: Callable, base: int) -> Callable:
    return lambda a, b, o: out(base + a, base + b, o)


class _Collector:
    """Writes the chunks of all of a rank's ranges into one ``[B, n_local, Hq, D]`` buffer,
    allocated at the first chunk (a provider ``q`` tells ``Hq`` only then)."""

    def __init__(self, B: int, n_local: int, device):
        self.B, self.n_local, self.device = B, n_local, device
        self.buffer = None

    def write(self, a: int, b: int, o: torch.Tensor) -> None:
        if self.buffer is None:
            self.buffer = torch.empty(self.B, self.n_local, o.shape[2], o.shape[3], dtype=o.dtype, device=self.device)
        self.buffer[:, a:b].copy_(o)
