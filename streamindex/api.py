"""Public entry point: validate, dispatch to a registered path, shape the output."""
from __future__ import annotations

import torch

from .problem import IndexerProblem
from .registry import get_path

DEFAULT_PATH = "stream"


def indexer_topk(q: torch.Tensor, k: torch.Tensor, w: torch.Tensor, topk: int, *, ratio: int = 4,
                 offset: int = 0, path: str = DEFAULT_PATH, return_scores: bool = False,
                 workspace_bytes: int | None = None, chunk_q: int | None = None,
                 chunk_t: int | None = None, q_scale: torch.Tensor | None = None,
                 k_scale: torch.Tensor | None = None, check_finite: bool = True):
    """Top-``topk`` compressed keys per query for DeepSeek-V4's CSA indexer.

    ``score[b,s,t] = Σ_h w[b,s,h] · relu(q[b,s,h,:] · k[b,t,:])`` accumulated in fp32, over the
    keys visible from ``s``: ``t < (offset + s + 1) // ratio``.

    Args:
        q: ``[B, S, H, D]`` (or ``[S, H, D]``) bf16 / fp16 / fp32, or fp8 e4m3 with ``q_scale``. Any
            strides with a contiguous last dim are used in place (no copy).
        k: ``[B, T, D]`` (or ``[T, D]``), same dtype as ``q``.
        w: ``[B, S, H]`` (or ``[S, H]``) fp32 weights with every scale folded in (any sign).
        topk: entries per query, ``>= 1``; at most ``2048`` on ``stream`` / ``stream_fp8``
            (``ValueError`` above; the torch paths take any ``topk``).
        ratio: compression ratio (``>= 1``). offset: position of query 0 (``>= 0``, chunked
            prefill), with ``offset + S <= 2**62``.
        path: a name from :func:`streamindex.list_paths`.
        return_scores: also return the fp32 scores of the selected keys.
        workspace_bytes: scratch budget for the memory-bounded paths (``stream``, ``chunked_torch``).
        chunk_q, chunk_t: query / key chunk sizes (``partition_merge``; ``chunk_q`` also caps the
            query chunk of ``chunked_torch`` and ``stream``).
        q_scale, k_scale: fp32 ``[B, S, H]`` / ``[B, T]`` dequantisation scales for fp8 inputs. They
            must be finite and ``> 0``: the fp8 paths fold them outside the relu, which is exact
            only for positive scales (checked when ``check_finite``; a sign cannot be folded).
        check_finite: validate values (default): NaN / Inf in any input and scales that are not
            ``> 0`` raise a ``ValueError`` naming the tensor, and so does a visible score that
            overflows fp32 although the inputs are finite. Costs one reduction pass over each input
            (no copy, no temporary of its size) and one host synchronisation per call; a second,
            at the end, only when the inputs' bound cannot rule out fp32 overflow (then the scores
            are checked on the device). With ``False`` nothing is checked and nothing syncs: rows
            whose scores are not finite get unspecified indices.

    All tensors must be on one device (meta tensors are refused); every kernel launches on that
    device whatever the current one is. The outputs never require grad.

    Returns:
        ``idx`` int32 ``[B, S, topk]``: visible keys by score descending, equal scores by smaller
        index first; slots beyond the number of visible keys hold ``-1``. With ``return_scores``,
        ``(idx, scores)`` where ``scores`` is fp32 with ``-inf`` in the ``-1`` slots. Unbatched
        inputs give unbatched outputs.
    """
    spec = get_path(path)
    problem = IndexerProblem.from_args(q, k, w, topk, ratio=ratio, offset=offset, q_scale=q_scale,
                                       k_scale=k_scale, check_finite=check_finite)
    if spec.needs_cuda and not problem.device.type == "cuda" and not _triton_interpreted():
        raise ValueError(f"path {path!r} needs CUDA tensors (or TRITON_INTERPRET=1), got {problem.device}")
    for name, v in (("workspace_bytes", workspace_bytes), ("chunk_q", chunk_q), ("chunk_t", chunk_t)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int or None, got {v!r}")
    with torch.no_grad(), _on_device(problem.device):
        idx, scores = spec.fn(problem, return_scores=return_scores, workspace_bytes=workspace_bytes,
                              chunk_q=chunk_q, chunk_t=chunk_t)
    if problem.squeeze:
        idx = idx.squeeze(0)
        scores = None if scores is None else scores.squeeze(0)
    return (idx, scores) if return_scores else idx


def _on_device(device: torch.device):
    """Every kernel of a call launches on the inputs' GPU, whatever the current device is."""
    import contextlib

    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _triton_interpreted() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def precompile(q: torch.Tensor, k: torch.Tensor, w: torch.Tensor, topk: int, *, ratio: int = 4, offset: int = 0,
               path: str = DEFAULT_PATH, q_scale: torch.Tensor | None = None,
               k_scale: torch.Tensor | None = None) -> None:
    """Build the kernel variants that :func:`indexer_topk` may need on these inputs (same
    arguments), without computing the result; a no-op for paths without compiled kernels. The
    harness calls it before timing long sequences, whose first call would otherwise compile."""
    spec = get_path(path)
    if spec.precompile is None:
        return
    problem = IndexerProblem.from_args(q, k, w, topk, ratio=ratio, offset=offset, q_scale=q_scale,
                                       k_scale=k_scale, check_finite=False)
    with torch.no_grad(), _on_device(problem.device):
        spec.precompile(problem)
