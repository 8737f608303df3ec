"""Which query rows each rank owns: equal-cost shards of ``[0, S)`` (pure python, exact).

The cost of query row ``s`` is ``visible(s) + row_cost`` with ``visible(s) = clamp((offset + s +
1) // ratio, 0, T)``: the indexer's score and selection work grows with the visible keys (causal),
and ``row_cost`` (in the same unit: visible keys) stands for work that every row costs alike, such
as the CSA step's sparse attention over ``topk + window`` rows. The prefix sum of that cost is
closed form (:func:`streamindex.problem.sum_min_floor`), so the splits below are found by binary
search on exact integers / fractions, with no per-row loop.

Schemes (``shards[r]`` is the list of half-open ``(s0, s1)`` ranges of rank ``r``, ascending):

* ``"contiguous"``: one range per rank; boundary ``r`` is the row count whose prefix cost is
  nearest ``r / W`` of the total. Early rows see few keys, so rank 0 gets many rows, the last rank
  few (about 71 % / 29 % of the rows for ``W = 2`` at ``row_cost = 0``).
* ``"zigzag"``: the sequence is cut into ``2W`` mirrored chunks; rank ``r`` owns chunk ``r`` and its
  mirror, chunk ``2W - 1 - r`` (the two middle chunks of rank ``W - 1`` form one range). Chunk
  sizes are chosen so that every rank's pair costs ``1 / W`` of the total. When the cost is affine
  in ``s`` (no ``T`` cap reached) the chunks come out of equal size, so every rank also gets
  ``S / W`` rows: the causal work *and* any per-row cost are balanced at once, whatever
  ``row_cost`` really is. That is why the harness's distributed cells use it.

A boundary is exact up to one row (the row cost is an integer count of keys, the target is a
fraction); when the whole problem costs nothing (no row sees a key and ``row_cost = 0``) rows are
split evenly instead.
"""
from __future__ import annotations

from fractions import Fraction

from ..problem import check_int, sum_min_floor

SCHEMES = ("contiguous", "zigzag")


def shard_bounds(S: int, world_size: int, *, ratio: int, offset: int = 0, T: int, scheme: str = "contiguous",
                 row_cost: float = 0) -> list[list[tuple[int, int]]]:
    """Equal-cost query shards: ``shards[r]`` = the ascending, non-empty ``(s0, s1)`` ranges of rank ``r``.

    Args:
        S: query rows of the whole call (``>= 1``). world_size: ranks (``>= 1``).
        ratio, offset, T: the indexer's compression ratio, position of query 0 and number of
            compressed keys (``visible(s) = clamp((offset + s + 1) // ratio, 0, T)``).
        scheme: ``"contiguous"`` or ``"zigzag"`` (module docstring).
        row_cost: cost every row adds, in visible keys (``>= 0``; int or float, taken exactly).

    Returns:
        ``world_size`` lists; together the ranges cover ``[0, S)`` once. A rank can own no rows
        (``[]``) when ``S`` is smaller than the number of chunks.
    """
    S = check_int("S", S, 1)
    W = check_int("world_size", world_size, 1)
    ratio = check_int("ratio", ratio, 1)
    offset = check_int("offset", offset, 0)
    T = check_int("T", T, 0)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if isinstance(row_cost, bool) or not isinstance(row_cost, (int, float)) or not row_cost >= 0 \
            or row_cost == float("inf"):
        raise ValueError(f"row_cost must be a finite number >= 0, got {row_cost!r}")
    rc = Fraction(row_cost)
    if rc == 0 and sum_min_floor(offset + 1, offset + S, ratio, T) == 0:
        rc = Fraction(1)  # nothing is visible: split the rows evenly

    def cost(n: int) -> Fraction:  # rows [0, n)
        return sum_min_floor(offset + 1, offset + n, ratio, T) + rc * n

    total = cost(S)
    if scheme == "contiguous":
        cuts = [0]
        for r in range(1, W):
            cuts.append(_nearest(cost, total * r / W, cuts[-1], S))
        cuts.append(S)
        return [_clean([(cuts[r], cuts[r + 1])]) for r in range(W)]

    # zigzag: a[j] are the left cuts; rank j < W-1 owns [a[j], a[j+1]) and [S-a[j+1], S-a[j]).
    def mirrored(a: int) -> Fraction:  # cost of [0, a) and [S - a, S)
        return cost(a) + total - cost(S - a)

    half = S // 2
    a = [0]
    for r in range(1, W):
        a.append(_nearest(mirrored, total * r / W, a[-1], half))
    shards = [_clean([(a[r], a[r + 1]), (S - a[r + 1], S - a[r])]) for r in range(W - 1)]
    shards.append(_clean([(a[W - 1], S - a[W - 1])]))
    return shards


def _nearest(f, target: Fraction, lo: int, hi: int) -> int:
    """The ``n`` in ``[lo, hi]`` whose non-decreasing ``f(n)`` is nearest ``target`` (the smaller on a tie)."""
    a, b = lo, hi
    while a < b:  # smallest n with f(n) >= target (or hi)
        m = (a + b) // 2
        if f(m) >= target:
            b = m
        else:
            a = m + 1
    if a > lo and target - f(a - 1) <= f(a) - target:
        return a - 1
    return a


def _clean(ranges) -> list[tuple[int, int]]:
    """Drop empty ranges and merge touching ones."""
    out: list[tuple[int, int]] = []
    for s0, s1 in ranges:
        if s1 <= s0:
            continue
        if out and out[-1][1] == s0:
            out[-1] = (out[-1][0], s1)
        else:
            out.append((s0, s1))
    return out


def shard_cost(ranges, *, ratio: int, offset: int = 0, T: int, row_cost: float = 0) -> Fraction:
    """Total cost (``Σ visible(s) + row_cost``) of the rows in ``ranges``."""
    rc = Fraction(row_cost)
    return sum((sum_min_floor(offset + s0 + 1, offset + s1, ratio, T) + rc * (s1 - s0) for s0, s1 in ranges),
               Fraction(0))


def shard_rows(ranges) -> int:
    """Number of rows in ``ranges``."""
    return sum(s1 - s0 for s0, s1 in ranges)


def check_shards(shards, S: int) -> list[list[tuple[int, int]]]:
    """``shards`` (per-rank lists of ``(s0, s1)``) as tuples, after checking that they are ascending,
    non-empty ranges that cover ``[0, S)`` exactly once; else a ``ValueError`` naming ``bounds``."""
    try:
        norm = [[(int(s0), int(s1)) for s0, s1 in ranks] for ranks in shards]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bounds must be a list (one per rank) of lists of (s0, s1) pairs, got {shards!r}") from exc
    flat = []
    for r, ranges in enumerate(norm):
        for i, (s0, s1) in enumerate(ranges):
            if not 0 <= s0 < s1 <= S:
                raise ValueError(f"bounds[{r}][{i}] = {(s0, s1)} is not a non-empty range inside [0, S={S})")
            if i and s0 < ranges[i - 1][1]:
                raise ValueError(f"bounds[{r}] must be ascending and disjoint, got {ranges}")
            flat.append((s0, s1))
    flat.sort()
    pos = 0
    for s0, s1 in flat:
        if s0 != pos:
            raise ValueError(f"bounds must cover [0, S={S}) exactly once: rows from {min(pos, s0)} to "
                             f"{max(pos, s0)} are {'missing' if s0 > pos else 'covered twice'}")
        pos = s1
    if pos != S:
        raise ValueError(f"bounds must cover [0, S={S}) exactly once: rows from {pos} on are missing")
    return norm


def local_rows(x, ranges, dim: int = 1):
    """The rows of ``ranges`` along ``dim`` of the full tensor ``x``, concatenated in order: what a
    rank passes as its ``*_local`` argument (a view when there is one range, a copy for zigzag's
    two). Use ``dim=0`` for unbatched tensors."""
    import torch

    parts = [x.narrow(dim, s0, s1 - s0) for s0, s1 in ranges]
    if not parts:
        return x.narrow(dim, 0, 0)
    if len(parts) == 1:
        return parts[0]
    if x.element_size() == 1 and x.dtype not in (torch.uint8, torch.int8, torch.bool):
        # fp8: concatenate the bytes (not every torch build has cat kernels for float8 types)
        return torch.cat([p.view(torch.uint8) for p in parts], dim=dim).view(x.dtype)
    return torch.cat(parts, dim=dim)


def with_local_base(ranges) -> list[tuple[int, int, int]]:
    """``(s0, s1, base)`` per range: ``base`` is where the range starts among the local rows."""
    out, base = [], 0
    for s0, s1 in ranges:
        out.append((s0, s1, base))
        base += s1 - s0
    return out
