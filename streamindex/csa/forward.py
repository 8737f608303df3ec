"""``csa_forward``: one DeepSeek-V4 CSA step -- indexer top-k, then sparse attention -- in query chunks.

Chunked prefill: queries are processed in *index chunks* (``index_chunk`` queries: one indexer
call with ``offset + c0``, giving int32 ``[B, index_chunk, topk]`` indices) split into *attention
chunks* (``chunk`` queries: one sparse-attention launch). Nothing of size ``[S, T]`` exists; the
memory beyond the inputs is the indexer's workspace, one index chunk of indices, and -- when the
main-attention queries / outputs are streamed through callbacks -- one attention chunk of q and o.

Main-attention queries and outputs at S = 2^20 are 64 GiB each (V4-Flash, 64 heads × 512, bf16), so
both can be streamed:

* ``q`` is either a tensor ``[B, S, Hq, D]`` or a *provider* ``q(start, end) -> Tensor [B, end-start,
  Hq, D]`` (bf16 on the KV device). It is called once per attention chunk, with increasing,
  non-overlapping ``[start, end)`` covering ``[0, S)`` (query indices relative to this call; the
  absolute position is ``offset + start``). The returned tensor is read before the next call and
  not kept.
* ``out`` is ``None`` (a ``[B, S, Hq, D]`` tensor is allocated and returned), a tensor of that shape
  (written in place and returned), or a *consumer* ``out(start, end, o)`` called once per attention
  chunk, in order, with ``o`` a ``[B, end-start, Hq, D]`` view of a buffer that is reused for the
  next chunk (copy what you keep); ``csa_forward`` then returns ``None``.

Everything else is a tensor: the indexer's inputs for the whole sequence (``x_idx_q [B,S,H,Di]``,
``idx_k [B,T,Di]``, ``idx_w [B,S,H]`` fp32), the compressed KV ``kv_compressed [B,T,D]`` (the same
``T`` compressed positions the indexer scores), the raw KV ``kv_window [B,S_kv,D]`` by absolute
position (``S_kv >= offset + S``) and ``sink`` fp32 ``[Hq]`` or ``None``. Batch dims are optional as a
group (pass ``x_idx_q`` as ``[S,H,Di]`` and everything else unbatched too).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import torch

from .attention import _check_name, resolve_impl, sparse_attention
from .checks import DEFAULT_WINDOW, check_int, check_scale, normalise_sink

ATTN_CHUNK_BYTES = 512 << 20   # q chunk bytes per attention launch (the output chunk is as large)
MIN_INDEX_CHUNK = 32768        # queries per indexer call, at least


def default_chunks(Hq: int, D: int, elem_bytes: int = 2) -> tuple[int, int]:
    """``(chunk, index_chunk)``: a power-of-two attention chunk whose q is <= 512 MiB (8,192 queries
    for V4-Flash, 4,096 for V4-Pro), and an indexer chunk of at least 32,768 queries."""
    per_tok = max(1, Hq * D * elem_bytes)
    chunk = 1 << max(0, (ATTN_CHUNK_BYTES // per_tok).bit_length() - 1)
    return chunk, max(chunk, MIN_INDEX_CHUNK)


class _StageTimer:
    """Sums the time of the indexer and attention stages (CUDA events on GPU, wall clock on CPU).
    ``sink``: a list that receives ``(stage, start_event, end_event)`` for each CUDA stage, for a
    caller that resolves them later (no host sync here)."""

    def __init__(self, device: torch.device, enabled: bool, sink: list | None = None):
        self.cuda = device.type == "cuda"
        self.enabled = enabled or sink is not None
        self.sink = sink
        self.events = {"indexer": [], "attn": []}
        self.wall = {"indexer": 0.0, "attn": 0.0}

    def start(self, stage):
        if not self.enabled:
            return None
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def stop(self, stage, tok):
        if not self.enabled:
            return
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self.events[stage].append((tok, e))
            if self.sink is not None:
                self.sink.append((stage, tok, e))
        else:
            self.wall[stage] += time.perf_counter() - tok

    def result(self) -> dict:
        if self.cuda:
            torch.cuda.synchronize()
            for k, evs in self.events.items():
                self.wall[k] = sum(a.elapsed_time(b) for a, b in evs) / 1e3
        return {"indexer_s": self.wall["indexer"], "attn_s": self.wall["attn"],
                "n_index_calls": len(self.events["indexer"]) if self.cuda else None}


def csa_forward(x_idx_q: torch.Tensor, idx_k: torch.Tensor, idx_w: torch.Tensor,
                q: torch.Tensor | Callable[[int, int], torch.Tensor], kv_compressed: torch.Tensor,
                kv_window: torch.Tensor, sink: torch.Tensor | None, *, topk: int, ratio: int, offset: int = 0,
                softmax_scale: float | None = None, chunk: int | None = None, index_chunk: int | None = None,
                attn_impl: str = "auto", indexer_path: str | Callable = "stream",
                out: torch.Tensor | Callable | None = None, window: int = DEFAULT_WINDOW,
                workspace_bytes: int | None = None, check_finite: bool = True,
                timings: dict | None = None, timing_events: list | None = None):
    """DeepSeek-V4 CSA step: ``indexer_topk`` (path ``indexer_path``) then sparse attention.

    Args:
        x_idx_q, idx_k, idx_w: the indexer's q ``[B,S,H,Di]``, k ``[B,T,Di]`` and fp32 w ``[B,S,H]``
            (see :func:`streamindex.indexer_topk`).
        q: main-attention queries ``[B,S,Hq,D]`` bf16 (rope applied), or a provider (module docstring).
        kv_compressed: ``[B,T,D]`` compressed KV, key = value. kv_window: ``[B,S_kv,D]`` raw KV by
            absolute position, ``S_kv >= offset + S``. sink: fp32 ``[Hq]`` or ``None``.
        topk, ratio, offset: the indexer's (``offset`` = absolute position of query 0).
        softmax_scale: default ``D ** -0.5``. window: sliding window length (V4: 128).
        chunk, index_chunk: queries per attention launch / per indexer call (``index_chunk`` is
            rounded up to a multiple of ``chunk``); defaults from :func:`default_chunks`.
        attn_impl: ``"auto" | "tilelang" | "triton" | "reference"``.
        indexer_path: a registered indexer path name, or a callable with
            :func:`streamindex.indexer_topk`'s signature ``(q, k, w, topk, *, ratio, offset) -> idx``.
        out: ``None`` / tensor / consumer (module docstring).
        workspace_bytes: passed to the indexer. check_finite: the indexer rejects NaN / Inf in its
            inputs (costs one read of each index chunk; pass ``False`` for speed). The attention
            inputs are not scanned: NaN there propagates to the affected outputs.
        timings: if a dict, receives ``indexer_s`` and ``attn_s`` (summed stage times; CUDA events
            on GPU, one host sync at the end) and the chunk sizes used.
        timing_events: if a list, receives ``(stage, start, end)`` CUDA events per stage launch
            (``stage`` is ``"indexer"`` or ``"attn"``), with no host sync: resolve them with
            :func:`stage_seconds` once the stream is synchronised (CUDA only; ignored on CPU).

    Kernels launch on ``kv_compressed``'s device (a device guard around the whole step), whatever
    the current CUDA device is.

    Returns:
        ``[B,S,Hq,D]`` in q's dtype (unbatched if the inputs were), or ``None`` with a consumer ``out``.
    """
    for name, t in (("x_idx_q", x_idx_q), ("idx_k", idx_k), ("idx_w", idx_w), ("kv_compressed", kv_compressed),
                    ("kv_window", kv_window)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not (isinstance(q, torch.Tensor) or callable(q)):
        raise TypeError(f"q must be a tensor [B,S,Hq,D] or a callable q(start, end), got {type(q).__name__}")
    if not (out is None or isinstance(out, torch.Tensor) or callable(out)):
        raise TypeError(f"out must be None, a tensor or a callable out(start, end, o), got {type(out).__name__}")
    check_int("topk", topk, 1)
    check_int("ratio", ratio, 1)
    offset = check_int("offset", offset, 0)
    window = check_int("window", window, 1)
    _check_name(attn_impl)
    if not (isinstance(indexer_path, str) or callable(indexer_path)):
        raise TypeError(f"indexer_path must be a path name or a callable, got {type(indexer_path).__name__}")

    if x_idx_q.dim() not in (3, 4):
        raise ValueError(f"x_idx_q must be [B, S, H, Di] or [S, H, Di], got shape {tuple(x_idx_q.shape)}")
    squeeze = x_idx_q.dim() == 3
    if squeeze:
        want = {"idx_k": 2, "idx_w": 2, "kv_compressed": 2, "kv_window": 2}
        for name, t in (("idx_k", idx_k), ("idx_w", idx_w), ("kv_compressed", kv_compressed),
                        ("kv_window", kv_window)):
            if t.dim() != want[name]:
                raise ValueError(f"{name} must be unbatched like x_idx_q {tuple(x_idx_q.shape)}, got shape "
                                 f"{tuple(t.shape)}")
        x_idx_q, idx_k, idx_w, kv_compressed, kv_window = (
            t.unsqueeze(0) for t in (x_idx_q, idx_k, idx_w, kv_compressed, kv_window))
        if isinstance(q, torch.Tensor):
            if q.dim() != 3:
                raise ValueError(f"q must be [S, Hq, D] like x_idx_q, got shape {tuple(q.shape)}")
            q = q.unsqueeze(0)
        if isinstance(out, torch.Tensor):
            out = out.unsqueeze(0)
    B, S, H, Di = x_idx_q.shape
    if kv_compressed.dim() != 3 or kv_window.dim() != 3:
        raise ValueError(f"kv_compressed / kv_window must be [B, T, D] / [B, S_kv, D], got shapes "
                         f"{tuple(kv_compressed.shape)} / {tuple(kv_window.shape)}")
    T, D = kv_compressed.shape[1], kv_compressed.shape[2]
    if idx_k.dim() != 3 or idx_k.shape[0] != B or idx_k.shape[1] != T:
        raise ValueError(f"idx_k must be [B={B}, T={T}, Di] (the indexer scores the same T compressed "
                         f"positions that kv_compressed holds), got shape {tuple(idx_k.shape)}")
    if kv_compressed.shape[0] != B:
        raise ValueError(f"kv_compressed must be [B={B}, T, D], got shape {tuple(kv_compressed.shape)}")
    if tuple(kv_window.shape[::2]) != (B, D):
        raise ValueError(f"kv_window must be [B={B}, S_kv, D={D}], got shape {tuple(kv_window.shape)}")
    if kv_window.shape[1] < offset + S:
        raise ValueError(f"kv_window must hold positions 0 .. offset + S - 1 = {offset + S - 1}, got "
                         f"{kv_window.shape[1]} rows")
    if kv_window.dtype != kv_compressed.dtype:
        raise TypeError(f"kv_window must have kv_compressed's dtype {kv_compressed.dtype}, got {kv_window.dtype}")
    dev = kv_compressed.device
    for name, t in (("x_idx_q", x_idx_q), ("idx_k", idx_k), ("idx_w", idx_w), ("kv_window", kv_window)):
        if t.device != dev:
            raise ValueError(f"{name} is on {t.device} but kv_compressed is on {dev}")
    if isinstance(q, torch.Tensor):
        if q.dim() != 4 or tuple(q.shape[:2]) != (B, S) or q.shape[3] != D:
            raise ValueError(f"q must be [B={B}, S={S}, Hq, D={D}], got shape {tuple(q.shape)}")
        if q.dtype != kv_compressed.dtype or q.device != dev:
            raise TypeError(f"q must be {kv_compressed.dtype} on {dev}, got {q.dtype} on {q.device}")
        Hq = q.shape[2]
    else:
        Hq = None  # learnt from the first chunk
    scale = check_scale(softmax_scale, D)
    for name, v in (("chunk", chunk), ("index_chunk", index_chunk)):
        if v is not None:
            check_int(name, v, 1)

    if chunk is None or index_chunk is None:
        # Hq is unknown until the provider's first chunk: size the default for 128 heads (V4-Pro)
        d_chunk, d_index = default_chunks(Hq if Hq is not None else 128, D, kv_compressed.element_size())
    c_attn = chunk or d_chunk
    c_idx = max(index_chunk or d_index, c_attn)
    c_idx = -(-c_idx // c_attn) * c_attn  # a multiple of the attention chunk

    if isinstance(out, torch.Tensor) and Hq is not None:
        _check_out(out, B, S, Hq, D, kv_compressed.dtype, dev)
    if timing_events is not None and not isinstance(timing_events, list):
        raise TypeError(f"timing_events must be a list or None, got {type(timing_events).__name__}")
    timer = _StageTimer(dev, timings is not None, timing_events if dev.type == "cuda" else None)
    guard = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with guard:
        result = _run_chunks(x_idx_q, idx_k, idx_w, q, kv_compressed, kv_window, sink, out, B, S, D, Hq, topk, ratio,
                             offset, scale, window, c_attn, c_idx, attn_impl, indexer_path, workspace_bytes,
                             check_finite, timer, dev)
    if timings is not None:
        timings.update(timer.result())
        timings.update({"chunk": c_attn, "index_chunk": c_idx})
    if callable(out):
        return None
    return result.squeeze(0) if squeeze else result


def stage_seconds(events: list) -> dict:
    """``{"indexer_s", "attn_s"}``: summed CUDA-event times of ``(stage, start, end)`` tuples from
    :func:`csa_forward`'s ``timing_events`` (the stream must be synchronised)."""
    tot = {"indexer": 0.0, "attn": 0.0}
    for stage, a, b in events:
        tot[stage] += a.elapsed_time(b) / 1e3
    return {"indexer_s": tot["indexer"], "attn_s": tot["attn"]}


def _run_chunks(x_idx_q, idx_k, idx_w, q, kv_compressed, kv_window, sink, out, B, S, D, Hq, topk, ratio, offset,
                scale, window, c_attn, c_idx, attn_impl, indexer_path, workspace_bytes, check_finite, timer, dev):
    """The chunk loop of :func:`csa_forward` (arguments already validated); returns the output
    tensor, or ``None`` with a consumer ``out``."""
    result = out if isinstance(out, torch.Tensor) else None
    o_flat = None  # reused output buffer (consumer mode, or a non-contiguous out slice)
    sink_n = None
    for c0 in range(0, S, c_idx):
        c1 = min(S, c0 + c_idx)
        tok = timer.start("indexer")
        idx = _run_indexer(indexer_path, x_idx_q[:, c0:c1], idx_k, idx_w[:, c0:c1], topk, ratio, offset + c0,
                           workspace_bytes, check_finite)
        timer.stop("indexer", tok)
        if not isinstance(idx, torch.Tensor) or tuple(idx.shape) != (B, c1 - c0, topk) or idx.dtype != torch.int32:
            got = (idx.dtype, tuple(idx.shape)) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"the indexer returned {got}, expected int32 {(B, c1 - c0, topk)}")
        for a0 in range(c0, c1, c_attn):
            a1 = min(c1, a0 + c_attn)
            qc = q[:, a0:a1] if isinstance(q, torch.Tensor) else q(a0, a1)
            if not isinstance(qc, torch.Tensor) or qc.dim() != 4 or tuple(qc.shape[:2]) != (B, a1 - a0) \
                    or qc.shape[3] != D:
                got = tuple(qc.shape) if isinstance(qc, torch.Tensor) else type(qc).__name__
                raise ValueError(f"q({a0}, {a1}) must return [B={B}, {a1 - a0}, Hq, D={D}], got {got}")
            if Hq is None:
                Hq = qc.shape[2]
                if isinstance(out, torch.Tensor):
                    _check_out(out, B, S, Hq, D, kv_compressed.dtype, dev)
            if qc.shape[2] != Hq or qc.dtype != kv_compressed.dtype or qc.device != dev:
                raise ValueError(f"q({a0}, {a1}) must return {kv_compressed.dtype} [.., Hq={Hq}, ..] on {dev}, "
                                 f"got {qc.dtype} {tuple(qc.shape)} on {qc.device}")
            if sink_n is None:
                sink_n = normalise_sink(sink, Hq, dev)
            if out is None and result is None:
                result = torch.empty(B, S, Hq, D, dtype=qc.dtype, device=dev)
            dst = result[:, a0:a1] if result is not None else None
            if dst is not None and dst.is_contiguous():
                view = dst
            else:
                if o_flat is None:
                    o_flat = torch.empty(B * c_attn * Hq * D, dtype=qc.dtype, device=dev)
                view = o_flat[:B * (a1 - a0) * Hq * D].view(B, a1 - a0, Hq, D)
            impl = resolve_impl(attn_impl, device=dev, H=Hq, D=D, dtype=qc.dtype, topk=topk)
            tok = timer.start("attn")
            sparse_attention(qc, kv_compressed, kv_window, sink_n, idx[:, a0 - c0:a1 - c0], softmax_scale=scale,
                             offset=offset + a0, window=window, attn_impl=impl, out=view, check_indices=False)
            timer.stop("attn", tok)
            if dst is not None and view is not dst:
                dst.copy_(view)
            if callable(out):
                out(a0, a1, view)
        del idx
    return result


def _check_out(out, B, S, Hq, D, dtype, dev):
    if tuple(out.shape) != (B, S, Hq, D) or out.dtype != dtype or out.device != dev:
        raise ValueError(f"out must be {dtype} [B={B}, S={S}, Hq={Hq}, D={D}] on {dev}, got {out.dtype} "
                         f"{tuple(out.shape)} on {out.device}")


def _run_indexer(indexer_path, qi, k, w, topk, ratio, offset, workspace_bytes, check_finite):
    if callable(indexer_path):
        return indexer_path(qi, k, w, topk, ratio=ratio, offset=offset)
    from ..api import indexer_topk

    kw = {"workspace_bytes": workspace_bytes} if workspace_bytes is not None else {}
    return indexer_topk(qi, k, w, topk, ratio=ratio, offset=offset, path=indexer_path, check_finite=check_finite,
                        **kw)
