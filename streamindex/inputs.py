"""Random indexer inputs shaped like DeepSeek-V4's, for tests, benchmarks and examples.

Three input kinds (``kind=``), the harness's ``inputs`` column:

* ``"random"``: N(0, 1) ``q`` and ``k``, ``w = N(0, 1) · D^-0.5 · H^-0.5`` as V4 folds its scales;
* ``"ties8"``: as ``random``, but every key row is one of 8 distinct random rows, so each query's
  scores take at most 8 values and the k-th score is a tie thousands of entries wide;
* ``"recency"``: scores that rise with ``t``, as trained indexers favour recent keys: every query
  head and every key share a unit direction ``u``, with weight ``a`` in ``q`` and ``a·(t+1)/T`` in
  ``k[t]``, and ``w`` is positive, so a query's score gains about ``a²·(t+1)/T`` per head over
  the random part (``a² = 2·sqrt(D)``: two standard deviations of a random logit at ``t = T``).
"""
from __future__ import annotations

import math

import torch

_FILL_ELEMS = 1 << 28  # fp32 staging for the random draw, per step
INPUT_KINDS = ("random", "ties8", "recency")
TIE_ROWS = 8


def make_inputs(S: int, H: int = 64, D: int = 128, *, B: int = 1, T: int | None = None, ratio: int = 4,
                dtype: torch.dtype = torch.bfloat16, device="cpu", seed: int = 0, kind: str = "random"):
    """``(q [B,S,H,D], k [B,T,D], w [B,S,H] fp32)`` of input kind ``kind`` (module docstring) in
    ``dtype``. ``T`` defaults to ``S // ratio`` (every compressed key of the sequence), at least 1.
    Drawn on ``device`` in slices, so the fp32 staging stays small even when ``q`` fills most of the
    GPU."""
    _check_kind(kind)
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(seed)
    T = max(1, S // ratio) if T is None else T
    q = torch.empty(B, S, H, D, device=device, dtype=dtype)
    k = torch.empty(B, T, D, device=device, dtype=dtype)
    _fill_normal(q.view(-1, H * D), g)
    _fill_keys(k, g, kind)
    w = torch.randn(B, S, H, device=device, generator=g) * (D ** -0.5) * (H ** -0.5)
    if kind == "recency":
        u = _recency_direction(D, device, seed)
        _shift_queries(q.view(-1, H, D), u)
        _ramp_keys(k, u)
        w = w.abs_()
    return q, k, w


def make_fp8_inputs(S: int, H: int = 64, D: int = 128, *, B: int = 1, T: int | None = None, ratio: int = 4,
                    device="cpu", seed: int = 0, kind: str = "random"):
    """``(q8, k8, w, q_scale, k_scale)``: inputs of kind ``kind`` drawn in bf16 and quantised to
    e4m3 with per-token scales, slice by slice so that no bf16 ``q`` of the full length exists
    (8M tokens of V4 q are 128 GiB in bf16, 64 GiB in fp8)."""
    from .quant import quantize_rows_fp8

    _check_kind(kind)
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(seed)
    T = max(1, S // ratio) if T is None else T
    u = _recency_direction(D, device, seed) if kind == "recency" else None
    q8 = torch.empty(B, S, H, D, device=device, dtype=torch.float8_e4m3fn)
    qs = torch.empty(B, S, H, device=device)
    rows = max(1, _FILL_ELEMS // (H * D))
    for b in range(B):
        for i in range(0, S, rows):
            n = min(rows, S - i)
            blk = torch.randn(n, H, D, device=device, generator=g)
            if u is not None:
                _shift_queries(blk, u)
            q8[b, i:i + n], qs[b, i:i + n] = quantize_rows_fp8(blk.to(torch.bfloat16))
    k = torch.empty(B, T, D, device=device, dtype=torch.bfloat16)
    _fill_keys(k, g, kind)
    if u is not None:
        _ramp_keys(k, u)
    k8, ks = quantize_rows_fp8(k)
    w = torch.randn(B, S, H, device=device, generator=g) * (D ** -0.5) * (H ** -0.5)
    if u is not None:
        w = w.abs_()
    return q8, k8, w, qs, ks


def _check_kind(kind: str) -> None:
    if kind not in INPUT_KINDS:
        raise ValueError(f"kind must be one of {INPUT_KINDS}, got {kind!r}")


def _fill_normal(x2d: torch.Tensor, g: torch.Generator) -> None:
    rows = max(1, _FILL_ELEMS // max(1, x2d.shape[1]))
    for i in range(0, x2d.shape[0], rows):
        blk = x2d[i:i + rows]
        blk.copy_(torch.randn(blk.shape, device=x2d.device, generator=g))


def _fill_keys(k: torch.Tensor, g: torch.Generator, kind: str) -> None:
    """N(0, 1) keys; for ``ties8`` every row copies one of ``TIE_ROWS`` distinct random rows."""
    B, T, D = k.shape
    if kind != "ties8":
        _fill_normal(k.view(-1, D), g)
        return
    base = torch.randn(B, TIE_ROWS, D, device=k.device, generator=g).to(k.dtype)
    pick = torch.randint(0, TIE_ROWS, (B, T), device=k.device, generator=g)
    k.copy_(torch.gather(base, 1, pick.unsqueeze(-1).expand(B, T, D)))


def _recency_amplitude(D: int) -> float:
    return math.sqrt(2.0 * math.sqrt(D))


def _recency_direction(D: int, device, seed: int) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(seed + 7919)
    u = torch.randn(D, device=device, generator=g)
    return u / u.norm()


def _shift_queries(q3: torch.Tensor, u: torch.Tensor) -> None:
    """``q += a·u`` for every head of ``q3`` ``[rows, H, D]``, in slices."""
    a = _recency_amplitude(u.numel())
    rows = max(1, _FILL_ELEMS // max(1, q3.shape[1] * q3.shape[2]))
    for i in range(0, q3.shape[0], rows):
        blk = q3[i:i + rows]
        blk.copy_(blk.float() + a * u)


def _ramp_keys(k: torch.Tensor, u: torch.Tensor) -> None:
    """``k[t] += a·(t+1)/T · u``."""
    B, T, D = k.shape
    ramp = torch.arange(1, T + 1, device=k.device, dtype=torch.float32) * (_recency_amplitude(D) / T)
    k.copy_(k.float() + ramp[None, :, None] * u)
