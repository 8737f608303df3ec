"""Validation and batch normalisation of the CSA sparse-attention inputs.

Every attention implementation (reference, Triton, TileLang) receives the output of
:func:`attention_args`: 4-D ``q [B,S,Hq,D]``, 3-D ``kv_compressed [B,T,D]``, 3-D
``kv_window [B,S_kv,D]``, ``sink`` fp32 ``[Hq]`` (``-inf`` when the caller passed ``None``:
a sink of ``-inf`` adds ``exp(-inf) = 0`` to the denominator, i.e. no sink) and int32
``indices [B,S,topk]``, all on one device, with ``offset + S <= S_kv``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..problem import check_int, sum_min_floor

ATTN_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
DEFAULT_WINDOW = 128


@dataclass(frozen=True)
class AttentionArgs:
    """One sparse-attention call, normalised to a batch dimension (see module docstring)."""

    q: torch.Tensor
    kv_compressed: torch.Tensor
    kv_window: torch.Tensor
    sink: torch.Tensor
    indices: torch.Tensor
    softmax_scale: float
    offset: int
    window: int
    squeeze: bool

    @property
    def shape(self):
        B, S, H, D = self.q.shape
        return B, S, H, D, self.kv_compressed.shape[1], self.kv_window.shape[1], self.indices.shape[2]


def check_scale(softmax_scale, D: int) -> float:
    if softmax_scale is None:
        return D ** -0.5
    if isinstance(softmax_scale, bool) or not isinstance(softmax_scale, (int, float)) \
            or not math.isfinite(softmax_scale) or softmax_scale <= 0:
        raise ValueError(f"softmax_scale must be a finite positive float or None, got {softmax_scale!r}")
    return float(softmax_scale)


def normalise_sink(sink, H: int, device) -> torch.Tensor:
    """``sink`` fp32 ``[H]`` or ``None`` -> contiguous fp32 ``[H]`` (``-inf`` for ``None``)."""
    if sink is None:
        return torch.full((H,), float("-inf"), device=device, dtype=torch.float32)
    if not isinstance(sink, torch.Tensor):
        raise TypeError(f"sink must be a torch.Tensor or None, got {type(sink).__name__}")
    if sink.dtype != torch.float32 or tuple(sink.shape) != (H,):
        raise ValueError(f"sink must be float32 of shape ({H},) (one logit per query head), "
                         f"got {sink.dtype} {tuple(sink.shape)}")
    if sink.device != torch.device(device):
        raise ValueError(f"sink is on {sink.device} but q is on {device}")
    if bool(torch.isnan(sink).any()):
        raise ValueError("sink contains NaN")
    return sink.contiguous()


def attention_args(q, kv_compressed, kv_window, sink, indices, *, softmax_scale=None, offset: int = 0,
                   window: int = DEFAULT_WINDOW, check_indices: bool = True) -> AttentionArgs:
    """Validate the sparse-attention inputs; raise ``TypeError`` / ``ValueError`` naming the argument.

    Batch dims are optional as a group: ``q [S,Hq,D]``, ``kv_compressed [T,D]``,
    ``kv_window [S_kv,D]``, ``indices [S,topk]``. ``check_indices`` verifies
    ``-1 <= indices < T`` (one reduction over ``indices``; skip it for trusted indexer output).
    """
    for name, t in (("q", q), ("kv_compressed", kv_compressed), ("kv_window", kv_window), ("indices", indices)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_meta:
            raise ValueError(f"{name} is a meta tensor (no data): the CSA attention needs real tensors")
    offset = check_int("offset", offset, 0)
    window = check_int("window", window, 1)
    if q.dim() not in (3, 4):
        raise ValueError(f"q must be [B, S, Hq, D] or [S, Hq, D], got shape {tuple(q.shape)}")
    squeeze = q.dim() == 3
    want = 2 if squeeze else 3
    for name, t, txt in (("kv_compressed", kv_compressed, "T, D"), ("kv_window", kv_window, "S_kv, D"),
                         ("indices", indices, "S, topk")):
        if t.dim() != want:
            raise ValueError(f"{name} must be [{'' if squeeze else 'B, '}{txt}] to match q of shape "
                             f"{tuple(q.shape)}, got shape {tuple(t.shape)}")
    if squeeze:
        q, kv_compressed, kv_window, indices = (t.unsqueeze(0) for t in (q, kv_compressed, kv_window, indices))
    B, S, H, D = q.shape
    if min(B, S, H, D) < 1:
        raise ValueError(f"q must have non-empty dims, got shape {tuple(q.shape)}")
    if q.dtype not in ATTN_DTYPES:
        raise TypeError(f"q must be bf16, fp16 or fp32, got {q.dtype}")
    for name, t in (("kv_compressed", kv_compressed), ("kv_window", kv_window)):
        if t.dtype != q.dtype:
            raise TypeError(f"{name} must have q's dtype {q.dtype}, got {t.dtype}")
        if t.shape[0] != B or t.shape[2] != D:
            raise ValueError(f"{name} must be [B={B}, rows, D={D}], got shape {tuple(t.shape)}")
    T, S_kv = kv_compressed.shape[1], kv_window.shape[1]
    if T < 1:
        raise ValueError("kv_compressed must hold at least one row")
    if S_kv < offset + S:
        raise ValueError(f"kv_window must hold the raw KV of every position up to offset + S = {offset + S} "
                         f"(row p = absolute position p), got {S_kv} rows")
    if indices.dtype != torch.int32:
        raise TypeError(f"indices must be int32, got {indices.dtype}")
    if tuple(indices.shape[:2]) != (B, S) or indices.shape[2] < 1:
        raise ValueError(f"indices must be [B={B}, S={S}, topk>=1], got shape {tuple(indices.shape)}")
    for name, t in (("kv_compressed", kv_compressed), ("kv_window", kv_window), ("indices", indices)):
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}")
    if check_indices and indices.numel():
        lo, hi = int(indices.min()), int(indices.max())
        if lo < -1 or hi >= T:
            raise ValueError(f"indices must lie in [-1, T={T}) (-1 = empty slot), got range [{lo}, {hi}]")
    scale = check_scale(softmax_scale, D)
    return AttentionArgs(q=q.contiguous(), kv_compressed=kv_compressed.contiguous(),
                         kv_window=kv_window.contiguous(), sink=normalise_sink(sink, H, q.device),
                         indices=indices.contiguous(), softmax_scale=scale, offset=offset, window=window,
                         squeeze=squeeze)


def attention_flops_bytes(S: int, *, Hq: int, D: int, topk: int, ratio: int, window: int, offset: int = 0,
                          T: int | None = None, elem_bytes: int = 2) -> tuple[int, int, int]:
    """``(flops, gathered_bytes, qo_bytes)`` of the sparse attention over queries ``0..S-1``.

    Per query at absolute position ``pos = offset + s``: ``n = min(topk, visible) + min(window, pos+1)``
    KV rows (``visible = min(T, (pos+1)//ratio)``); FLOPs ``4·Hq·D·n`` (QK^T and PV, 2 per MAC);
    gathered bytes ``n·D·elem_bytes`` (one shared KV head: each row read once per query, for all
    heads); q read + output written: ``2·Hq·D·elem_bytes``. Closed form, no tensors.
    """
    total_rows = 0
    # compressed rows: visible(pos) = min(T, (pos+1)//ratio), capped at topk
    T_cap = (offset + S) // ratio if T is None else T
    cap = min(topk, T_cap)
    total_rows += sum_min_floor(offset + 1, offset + S, ratio, cap)
    # window rows: min(window, pos+1)
    lo, hi = offset + 1, offset + S  # pos + 1 ranges over [lo, hi]
    a = min(hi, window)
    if a >= lo:
        total_rows += (lo + a) * (a - lo + 1) // 2
    total_rows += max(0, hi - max(lo, window + 1) + 1) * window
    flops = 4 * Hq * D * total_rows
    return flops, total_rows * D * elem_bytes, 2 * S * Hq * D * elem_bytes
