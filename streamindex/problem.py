"""Validated, batch-normalised indexer inputs shared by every path.

``IndexerProblem.from_args`` is the only place where user input is checked: every
path receives 4-D ``q [B,S,H,D]``, 3-D ``k [B,T,D]`` and 3-D ``w [B,S,H]`` on one
device, with the geometry (``ratio``, ``offset``) already validated.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
FP8_DTYPES = tuple(d for d in (getattr(torch, "float8_e4m3fn", None),) if d is not None)


@dataclass(frozen=True)
class IndexerProblem:
    """One indexer top-k call, normalised to a batch dimension.

    Attributes:
        q: ``[B, S, H, D]`` queries (bf16 / fp16 / fp32, or fp8 e4m3 with ``q_scale``).
        k: ``[B, T, D]`` compressed keys, same dtype as ``q``.
        w: ``[B, S, H]`` fp32 per-head weights, every scale folded in.
        topk, ratio, offset: see :func:`streamindex.indexer_topk`.
        q_scale: ``[B, S, H]`` fp32 per-(token, head) dequantisation scales (fp8 only).
        k_scale: ``[B, T]`` fp32 per-token dequantisation scales (fp8 only).
        squeeze: the caller passed unbatched tensors; outputs drop the batch dim.
        check_finite: the values were checked (finite inputs, scales > 0).
        scores_may_overflow: the inputs were checked and their Cauchy-Schwarz bound on |score| does
            not rule out fp32 overflow: the paths must then check the visible scores and raise (one
            more host synchronisation, at the end of the call). False for ordinary inputs.
    """

    q: torch.Tensor
    k: torch.Tensor
    w: torch.Tensor
    topk: int
    ratio: int
    offset: int
    q_scale: torch.Tensor | None = None
    k_scale: torch.Tensor | None = None
    squeeze: bool = False
    check_finite: bool = False
    scores_may_overflow: bool = False

    @property
    def B(self) -> int:
        return self.q.shape[0]

    @property
    def S(self) -> int:
        return self.q.shape[1]

    @property
    def H(self) -> int:
        return self.q.shape[2]

    @property
    def D(self) -> int:
        return self.q.shape[3]

    @property
    def T(self) -> int:
        return self.k.shape[1]

    @property
    def device(self) -> torch.device:
        return self.q.device

    @property
    def is_fp8(self) -> bool:
        return self.q.dtype in FP8_DTYPES

    def visible_counts(self, s_start: int = 0, s_end: int | None = None) -> torch.Tensor:
        """int64 ``[s_end - s_start]``: how many keys (a prefix ``t < n``) each query sees."""
        return visible_counts(self.S if s_end is None else s_end, self.T, self.ratio, self.offset,
                              self.device, s_start=s_start)

    def n_visible(self, s: int) -> int:
        """Number of keys visible from query ``s`` (python int)."""
        return max(0, min(self.T, (self.offset + s + 1) // self.ratio))

    @classmethod
    def from_args(cls, q, k, w, topk, *, ratio=4, offset=0, q_scale=None, k_scale=None,
                  check_finite=True) -> "IndexerProblem":
        for name, t in (("q", q), ("k", k), ("w", w)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        check_int("topk", topk, 1)
        check_int("ratio", ratio, 1)
        check_int("offset", offset, 0)

        squeeze = q.dim() == 3
        if q.dim() not in (3, 4):
            raise ValueError(f"q must be [B, S, H, D] or [S, H, D], got shape {tuple(q.shape)}")
        want_k, want_w = (2, 2) if squeeze else (3, 3)
        if k.dim() != want_k:
            raise ValueError(f"k must be {'[T, D]' if squeeze else '[B, T, D]'} to match q of shape "
                             f"{tuple(q.shape)}, got shape {tuple(k.shape)}")
        if w.dim() != want_w:
            raise ValueError(f"w must be {'[S, H]' if squeeze else '[B, S, H]'} to match q of shape "
                             f"{tuple(q.shape)}, got shape {tuple(w.shape)}")
        for name, t in (("q_scale", q_scale), ("k_scale", k_scale)):
            if t is not None and not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
        if squeeze:
            q, k, w = q.unsqueeze(0), k.unsqueeze(0), w.unsqueeze(0)
            q_scale = None if q_scale is None else q_scale.unsqueeze(0)
            k_scale = None if k_scale is None else k_scale.unsqueeze(0)
        B, S, H, D = q.shape
        if k.shape[0] != B or k.shape[2] != D:
            raise ValueError(f"k must be [B={B}, T, D={D}], got shape {tuple(k.shape)}")
        if tuple(w.shape) != (B, S, H):
            raise ValueError(f"w must be [B={B}, S={S}, H={H}], got shape {tuple(w.shape)}")
        if min(B, S, H, D) < 1:
            raise ValueError(f"q must have non-empty dims, got shape {tuple(q.shape)}")
        if offset + S > MAX_POSITION:
            raise ValueError(f"offset + S must be <= 2**62 (positions are int64 in every path), got offset={offset} "
                             f"with S={S}")
        for name, t in (("q", q), ("k", k), ("w", w), ("q_scale", q_scale), ("k_scale", k_scale)):
            if t is not None and t.is_meta:
                raise ValueError(f"{name} is a meta tensor (no data): indexer_topk needs real tensors")
        for name, t in (("k", k), ("w", w)):
            if t.device != q.device:
                raise ValueError(f"{name} is on {t.device} but q is on {q.device}")
        if q.dtype not in FLOAT_DTYPES + FP8_DTYPES:
            raise TypeError(f"q must be bf16, fp16, fp32 or fp8 e4m3, got {q.dtype}")
        if k.dtype != q.dtype:
            raise TypeError(f"k must have q's dtype {q.dtype}, got {k.dtype}")
        if w.dtype != torch.float32:
            raise TypeError(f"w must be float32, got {w.dtype}")
        if q.dtype in FP8_DTYPES:
            if q_scale is None or k_scale is None:
                raise ValueError("fp8 q and k need q_scale [B, S, H] and k_scale [B, T] (fp32)")
            _check_scale("q_scale", q_scale, (B, S, H), q.device)
            _check_scale("k_scale", k_scale, (B, k.shape[1]), q.device)
        elif q_scale is not None or k_scale is not None:
            raise ValueError("q_scale / k_scale are only accepted with fp8 q and k")
        may_overflow = check_finite and _check_values(q=q, k=k, w=w, q_scale=q_scale, k_scale=k_scale)
        return cls(q=_last_dim_contiguous(q), k=_last_dim_contiguous(k), w=_last_dim_contiguous(w), topk=int(topk),
                   ratio=int(ratio), offset=int(offset),
                   q_scale=None if q_scale is None else q_scale.contiguous(),
                   k_scale=None if k_scale is None else k_scale.contiguous(), squeeze=squeeze,
                   check_finite=bool(check_finite), scores_may_overflow=bool(may_overflow))


def visible_counts(S: int, T: int, ratio: int, offset: int, device, s_start: int = 0) -> torch.Tensor:
    """int64 ``[S - s_start]``: ``clamp((offset + s + 1) // ratio, 0, T)`` for ``s`` in ``[s_start, S)``."""
    s = torch.arange(s_start, S, device=device, dtype=torch.int64)
    return torch.clamp((offset + s + 1) // ratio, 0, T)


#: Largest ``offset + S``: positions ``offset + s + 1`` stay exact in int64 with room to spare.
MAX_POSITION = 1 << 62


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its last dim is contiguous (the kernels take the other strides), else a copy."""
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


def _all_dims(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(t.dim()))


def _nonfinite(t: torch.Tensor) -> torch.Tensor:
    """0-dim bool on ``t``'s device: whether ``t`` holds NaN or Inf. Reductions over explicit dims
    read a strided ``t`` in place (a bare ``max()`` / ``aminmax`` copies it first): no copy, no
    temporary of its size, no host synchronisation."""
    if t.numel() == 0:
        return torch.zeros((), dtype=torch.bool, device=t.device)
    dims = _all_dims(t)
    if t.dtype in FP8_DTYPES:
        # e4m3fn has no Inf; its NaNs are the bytes 0x7F and 0xFF: the int8 maximum 127 and the
        # uint8 maximum 255, so two reductions over byte views find them.
        return (t.view(torch.int8).amax(dim=dims) == 127) | (t.view(torch.uint8).amax(dim=dims) == 255)
    return ~(torch.isfinite(t.amax(dim=dims)) & torch.isfinite(t.amin(dim=dims)))


#: A Cauchy-Schwarz bound on |score| below this rules out fp32 overflow anywhere in the sum
#: (every partial sum is bounded by it too); a quarter of FLT_MAX leaves room for rounding.
OVERFLOW_BOUND = torch.finfo(torch.float32).max / 4
_NORM_SLICE = 1 << 22       # elements of q / k whose norms are taken at once (bounded temporaries)


def _row_norms(x: torch.Tensor, scale: torch.Tensor | None):
    """Yield fp32 ``‖x[..., :]‖`` (times ``scale``) over slices of the leading rows of ``x[b]``."""
    per_row = max(1, x[0, 0].numel())
    step = max(1, _NORM_SLICE // per_row)
    for b in range(x.shape[0]):
        for i in range(0, x.shape[1], step):
            part = x[b, i:i + step]
            n = torch.linalg.vector_norm(part.float() if part.dtype in FP8_DTYPES else part, dim=-1,
                                         dtype=torch.float32)
            yield b, i, n if scale is None else n * scale[b, i:i + step]


def _score_bound(q, k, w, q_scale, k_scale) -> torch.Tensor:
    """0-dim fp32: ``max_b max_s Σ_h |w[b,s,h]|·‖q[b,s,h]‖ · max_t ‖k[b,t]‖`` (with the fp8 scales),
    an upper bound of every |partial score| the paths accumulate."""
    kmax = torch.zeros(q.shape[0], device=q.device)
    for b, _, n in _row_norms(k, k_scale):
        kmax[b] = torch.maximum(kmax[b], n.amax())
    bound = torch.zeros((), device=q.device)
    for b, i, n in _row_norms(q, q_scale):
        rows = (n * w[b, i:i + n.shape[0]].abs()).sum(-1)
        bound = torch.maximum(bound, rows.amax() * kmax[b])
    return bound


def _check_values(**tensors) -> bool:
    """Raise a ValueError naming the first tensor with NaN / Inf, or a scale that is not > 0.
    Returns whether the scores may overflow fp32 (:func:`_score_bound` at least
    :data:`OVERFLOW_BOUND`). One host synchronisation for all of it."""
    names, flags = [], []
    for name, t in tensors.items():
        if t is None:
            continue
        names.append((name, "contains NaN or Inf"))
        flags.append(_nonfinite(t))
        if name.endswith("_scale") and t.numel():
            names.append((name, "must be > 0 (the scales fold outside the relu)"))
            flags.append(t.amin(dim=_all_dims(t)) <= 0)
    q, k, w = tensors["q"], tensors["k"], tensors["w"]
    flags.append(~(_score_bound(q, k, w, tensors.get("q_scale"), tensors.get("k_scale")) < OVERFLOW_BOUND))
    *bad, may_overflow = torch.stack(flags).tolist()
    for (name, what), is_bad in zip(names, bad):
        if is_bad:
            raise ValueError(f"{name} {what} (check_finite=False skips these checks; the indices are then "
                             "unspecified for rows whose scores are not finite)")
    return bool(may_overflow)


def sum_min_floor(lo: int, hi: int, ratio: int, cap: int) -> int:
    """Σ_{x=lo}^{hi} min(cap, x // ratio), exact, O(1). With ``lo = offset + 1``, ``hi = offset + S``
    and ``cap = T`` it counts the visible (query, key) pairs of a call."""
    if hi < lo:
        return 0

    def prefix(n):  # Σ_{x=0}^{n} min(cap, x // ratio)
        if n < 0:
            return 0
        full = min(n, cap * ratio - 1)  # x < cap*ratio -> x//ratio < cap
        q, r = divmod(full + 1, ratio)  # x in [0, full]: q complete groups of ratio values 0..q-1, then r of value q
        s = ratio * q * (q - 1) // 2 + r * q
        return s + max(0, n - full) * cap

    return prefix(hi) - prefix(lo - 1)


def check_int(name: str, value, lo: int) -> int:
    """``value`` as an int ``>= lo``, else a TypeError / ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


def _check_scale(name, t, shape, device):
    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or tuple(t.shape) != tuple(shape):
        got = (tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be float32 of shape {tuple(shape)}, got {got}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but q is on {device}")
