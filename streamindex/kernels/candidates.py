"""Candidate selection in Triton: from a score workspace, its per-group maxima and the top-k
size to the exact, ordered top-k written straight into the output.

Five launches per slice of rows, in this order:

* :func:`kth_group_max` — ``tau[r]``, the k-th largest group maximum of row ``r`` (or a value
  below it that leaves exactly ``k`` maxima at or above it), by a bitwise search over
  order-preserving int32 keys held in registers: one count per bit where the row's keys differ,
  stopping once exactly ``k`` remain. At least ``k`` groups hold an entry ``>= tau``, so ``tau``
  bounds the row's k-th score from below and the entries ``>= tau`` (ties at the boundary
  included) hold the whole top-k. The same pass lists the ids of those live groups (about ``k``).
* :func:`gather_candidates` — compacts the entries ``>= tau`` of the live groups into a
  ``cap``-wide buffer (``cap = 4·topk`` rounded up to a power of two). Only the live groups are
  read or touched.
* :func:`radix_select` — a row whose candidates did not fit (``count > cap``: massive ties at the
  threshold, or a row the caller sends straight to it) is selected exactly from its scores: radix
  passes find the k-th key (none when ``k`` group maxima equal the row's maximum: the k-th key is
  that maximum), the entries strictly above it are taken and the ties at it are taken by smallest
  index, counted in index order, never sorted, the scan stopping once all are found — so no buffer
  can overflow, whatever the ties, and nothing returns to the host. Other rows exit at once.
* :func:`trim_candidates` — a row with more than ``cap / 4`` candidates is cut in place to its
  exact top ``k`` (the bitwise search again, over the candidates; ties at the k-th score by a
  search over their indices), so the sort runs at a quarter of ``cap``.
* :func:`select_candidates` — sorts each row's (at most ``cap / 4``) candidates on a composite
  key (score descending, index ascending: no ties) and writes the contract's output.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .visibility import n_visible


@triton.jit
def _ordered_key(v):
    """int32 keys in the order of the fp32 values (``-0.0`` folded into ``+0.0``)."""
    bits = (v + 0.0).to(tl.int32, bitcast=True)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


@triton.jit
def _key_value(key):
    """Inverse of :func:`_ordered_key`."""
    return (key ^ ((key >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)


NEG_INF_KEY = tl.constexpr(-2139095041)   # _ordered_key(-inf); every finite key is above it
_INT32_MAX = tl.constexpr(2147483647)
_INT32_MIN = tl.constexpr(-2147483648)


@triton.jit
def _kth_step(key, kk, lo, hi, ans, done, i):
    """Bit ``31 - i`` of :func:`_kth_key`'s answer (``i = 0``: the sign, candidate 0)."""
    if done == 0:
        if i == 0:
            cand = tl.full([], 0, tl.int32)
        else:
            cand = ans | (1 << (31 - i))
        if cand <= lo:
            ans = cand
        elif cand <= hi:
            c = tl.sum((key >= cand).to(tl.int32), axis=0)
            if c >= kk:
                ans = cand
                if c == kk:
                    done = 1
    return ans, done


@triton.jit
def _kth_key(key, kk, lo, hi, UNROLL: tl.constexpr):
    """A key ``x`` with at least ``kk`` (>= 1) of ``key`` (int32 order-preserving keys; lanes to
    ignore hold ``INT32_MIN``) at or above it: the largest such key, or — stopping early — one
    with exactly ``kk`` at or above it (it parts the top ``kk`` from the rest either way).
    ``INT32_MIN`` when fewer than ``kk`` lanes are above ``INT32_MIN``.

    A bitwise search, most significant bit first. ``lo`` (a key known to have ``kk`` at or above
    it, else ``INT32_MIN``) and ``hi`` (the largest key) decide the bits they share without a
    count, so a row spends its reductions on the bits where its keys differ. ``UNROLL``: the 32
    steps unrolled (else a loop: a 32× smaller kernel that compiles in a fraction of the time)."""
    ans = tl.full([], _INT32_MIN, tl.int32)
    done = tl.full([], 0, tl.int32)
    if UNROLL:
        for i in tl.static_range(32):
            ans, done = _kth_step(key, kk, lo, hi, ans, done, i)
    else:
        for i in range(32):
            ans, done = _kth_step(key, kk, lo, hi, ans, done, i)
    return ans


#: Unroll the k-th search in the k-th group maximum and in the trim's common branch (rows of at
#: most cap / 2 candidates); the trim's rare branch (cap / 2 .. cap) always loops.
UNROLL_SEARCH = True


@triton.jit(do_not_specialize=["n_groups", "topk", "live_cap"])
def kth_group_max_kernel(GMAX, TAU, TOP, LIVE, N_LIVE, COUNT, n_groups, topk, live_cap, stride_gr, stride_lr,
                         BLOCK_G: tl.constexpr, UNROLL: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    g = tl.arange(0, BLOCK_G)
    in_row = g < n_groups
    v = tl.load(GMAX + row * stride_gr + g, mask=in_row, other=float("-inf"))
    key = tl.where(in_row, _ordered_key(v), _INT32_MIN)
    hi = tl.max(key, axis=0)
    lo = tl.where(n_groups >= topk, tl.min(tl.where(in_row, key, _INT32_MAX), axis=0), _INT32_MIN)
    # Fewer than topk entries: the search finds nothing; tau is then -inf (its key is the least).
    ans = tl.maximum(_kth_key(key, topk, lo, hi, UNROLL), NEG_INF_KEY)
    live = ((key >= ans) & (v > float("-inf"))).to(tl.int32)   # out-of-row lanes hold -inf
    pos = tl.cumsum(live, axis=0) - 1
    tl.store(LIVE + row * stride_lr + pos, g, mask=(live != 0) & (pos < live_cap))
    tl.store(N_LIVE + row, tl.sum(live, axis=0))
    tl.store(TAU + row, _key_value(ans))
    tl.store(TOP + row, tl.max(v, axis=0))
    tl.store(COUNT + row, 0)


class Threshold(NamedTuple):
    """Output of :func:`kth_group_max` for rows ``R``; the input of :func:`gather_candidates`."""
    tau: torch.Tensor     # [R] fp32: <= the k-th largest group maximum, k maxima >= it (-inf: fewer than k)
    top: torch.Tensor     # [R] fp32: the largest group maximum (the row's maximum)
    live: torch.Tensor    # [R, live_cap] int32: ids of the finite groups with maximum >= tau, ascending
    n_live: torch.Tensor  # [R] int32: how many there are (above live_cap: the row overflows)
    count: torch.Tensor   # [R] int32 zeros: the gather's candidate counters


def live_capacity(topk: int) -> int:
    """Group-id slots per row: twice ``topk`` (continuous scores give exactly ``topk`` live groups;
    more only through ties between group maxima)."""
    return 2 * topk


#: Register widths of :func:`kth_group_max` (a kernel variant each): a row of G groups takes the
#: narrowest that holds it, so a handful of variants serve every row length.
KTH_WIDTHS = (256, 1024, 2048, 4096, 8192)


def kth_register_width(G: int) -> int:
    """The width of :data:`KTH_WIDTHS` that holds ``G`` (``G <= 8192``) groups."""
    for width in KTH_WIDTHS:
        if G <= width:
            return width
    raise ValueError(f"at most {KTH_WIDTHS[-1]} groups per row, got {G}")


def kth_group_max(gmax: torch.Tensor, topk: int, live_cap: int | None = None) -> Threshold:
    """``tau`` per row of ``gmax`` [R, G] fp32 (no NaN): the ``topk``-th largest value, or a
    smaller one that leaves exactly ``topk`` values at or above it (the search stops there;
    ``-inf`` when the row has fewer than ``topk`` entries); ``top``, the row's largest value; the
    ids of the groups at or above ``tau`` that are not ``-inf`` (the first ``live_cap``, default
    :func:`live_capacity`), and zeroed counters for the gather. With ``group = 1`` (``gmax`` = the
    scores) the live groups are the candidates themselves. The row is held in registers
    (:func:`kth_register_width` wide)."""
    R, G = gmax.shape
    assert gmax.stride(1) == 1
    live_cap = live_cap or live_capacity(topk)
    dev = gmax.device
    th = Threshold(torch.empty(R, dtype=torch.float32, device=dev),
                   torch.empty(R, dtype=torch.float32, device=dev),
                   torch.empty((R, live_cap), dtype=torch.int32, device=dev),
                   torch.empty(R, dtype=torch.int32, device=dev),
                   torch.empty(R, dtype=torch.int32, device=dev))
    if R:
        block_g = kth_register_width(G)
        kth_group_max_kernel[(R,)](gmax, th.tau, th.top, th.live, th.n_live, th.count, G, topk, live_cap,
                                   gmax.stride(0), live_cap, BLOCK_G=block_g, UNROLL=UNROLL_SEARCH,
                                   num_warps=KTH_WARPS or _kth_warps(block_g))
    return th


@triton.jit(do_not_specialize=["n_cols", "live_cap", "cap"])
def gather_candidates_kernel(WS, TAU, LIVE, N_LIVE, CAND_V, CAND_I, COUNT, n_cols, live_cap, cap,
                             stride_wr, stride_lr, stride_cr, BLOCK_L: tl.constexpr, GROUP: tl.constexpr):
    pid = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    n_live = tl.load(N_LIVE + row)
    n_listed = tl.minimum(n_live, live_cap)
    if pid * BLOCK_L < n_listed:
        j = pid * BLOCK_L + tl.arange(0, BLOCK_L)
        ok_g = j < n_listed
        gid = tl.load(LIVE + row * stride_lr + j, mask=ok_g, other=0)
        cols = gid[:, None] * GROUP + tl.arange(0, GROUP)[None, :]
        live = ok_g[:, None] & (cols < n_cols)
        v = tl.load(WS + row * stride_wr + cols, mask=live, other=float("-inf"))
        keep = (live & (v >= tl.load(TAU + row))).to(tl.int32)
        per_group = tl.sum(keep, axis=1)
        n_keep = tl.sum(per_group, axis=0)
        # A row with more live groups than slots is reported as overflowing (count > cap).
        flag = tl.where((pid == 0) & (n_live > live_cap), cap + 1, 0)
        base = tl.atomic_add(COUNT + row, n_keep + flag)
        pos = base + (tl.cumsum(per_group, axis=0) - per_group)[:, None] + tl.cumsum(keep, axis=1) - keep
        ok = (keep != 0) & (pos < cap)
        tl.store(CAND_V + row * stride_cr + pos, v, mask=ok)
        tl.store(CAND_I + row * stride_cr + pos, cols, mask=ok)


def gather_candidates(ws: torch.Tensor, th: Threshold, group: int, cap: int, block: int = 2048,
                      out: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Entries of ``ws`` [R, N] fp32 with ``ws[r, j] >= th.tau[r]``, reading only the live groups
    of ``group`` columns listed in ``th``: ``(vals [R, cap] fp32, idx [R, cap] int32)``;
    ``th.count`` [R] int32 (zeros on entry) receives the number found. Each program reads
    ``block`` entries. Slots at or beyond ``count`` are garbage; rows with ``count > cap``
    overflowed (too many candidates, or more live groups than ``th.live`` holds). ``out``: buffers
    ``(vals, idx)`` of that shape to fill instead of new ones."""
    R, N = ws.shape
    live_cap = th.live.shape[1]
    assert ws.stride(1) == 1 and th.live.stride(1) == 1 and block % group == 0
    if out is None:
        out = (torch.empty((R, cap), dtype=torch.float32, device=ws.device),
               torch.empty((R, cap), dtype=torch.int32, device=ws.device))
    vals, idx = out
    assert vals.shape == (R, cap) and idx.shape == (R, cap) and vals.stride(1) == 1 and idx.stride(0) == vals.stride(0)
    if R and N:
        block_l = block // group
        grid = (triton.cdiv(live_cap, block_l), R)
        gather_candidates_kernel[grid](ws, th.tau, th.live, th.n_live, vals, idx, th.count, N, live_cap, cap,
                                       ws.stride(0), th.live.stride(0), vals.stride(0), BLOCK_L=block_l, GROUP=group,
                                       num_warps=8 if block >= 2048 else 4)
    return vals, idx


@triton.jit
def _sort_and_store(CAND_V, CAND_I, cnt, row, b, s, OUT_I, OUT_V, T, ratio, offset, topk,
                    stride_cr, stride_ob, stride_os, W: tl.constexpr, WRITE_V: tl.constexpr):
    j = tl.arange(0, W)
    live = j < cnt
    v = tl.load(CAND_V + row * stride_cr + j, mask=live, other=float("-inf"))
    i = tl.load(CAND_I + row * stride_cr + j, mask=live, other=0).to(tl.int64)
    key = (_ordered_key(v).to(tl.int64) << 32) | (0xFFFFFFFF - i)
    key = tl.sort(key, descending=True)
    t = 0xFFFFFFFF - (key & 0xFFFFFFFF)
    val = _key_value((key >> 32).to(tl.int32))
    ok = j < n_visible(s, offset, ratio, T)
    dst = b * stride_ob + s * stride_os + j
    tl.store(OUT_I + dst, tl.where(ok, t, -1).to(tl.int32), mask=j < topk)
    if WRITE_V:
        tl.store(OUT_V + dst, tl.where(ok, val, float("-inf")), mask=j < topk)


RADIX_BLOCK = 4096   # entries per step of the radix passes


@triton.jit
def _radix_select_row(ROW, n, kk, OUT_V, OUT_I, tie_key, tied_top, BLOCK: tl.constexpr):
    """Write the ``kk`` (``1 <= kk <= n``) largest of ``ROW[0 : n]`` (fp32, no NaN) to
    ``OUT_V``/``OUT_I`` (values, column indices), unordered except that the ties at the k-th value
    are the smallest columns.

    ``tied_top`` != 0 says that at least ``kk`` entries equal the row's maximum, whose key is
    ``tie_key``: the top ``kk`` are its first ``kk`` occurrences and no radix pass runs. Otherwise
    radix passes over the int32 order-preserving keys, most significant byte first, find the k-th
    key ``kappa`` byte by byte and ``kr``, how many entries of its bucket belong to the top ``kk``.
    They stop early when the bucket holds exactly ``kr`` entries or a single distinct key (massive
    ties). A last scan emits the entries above ``kappa``'s bucket and the first ``kr`` of the
    bucket, in column order, and stops once it has them all: ties are counted, never sorted, and
    no buffer can overflow."""
    bins = tl.arange(0, 256)
    kappa = tie_key
    kr = kk
    level = 4            # bytes of kappa decided
    done = tied_top
    if done == 0:
        kappa = tl.full([], 0, tl.int32)
        level = 0
    for p in tl.static_range(4):
        if done == 0:
            shift = 24 - 8 * p
            hist = tl.zeros([256], tl.int32)
            n_out = tl.zeros([BLOCK], tl.int32)
            lo = tl.full([BLOCK], _INT32_MAX, tl.int32)
            hi = tl.full([BLOCK], _INT32_MIN, tl.int32)
            for c0 in range(0, n, BLOCK):
                cols = c0 + tl.arange(0, BLOCK)
                ok = cols < n
                key = _ordered_key(tl.load(ROW + cols, mask=ok, other=0.0))
                if p > 0:
                    ok = ok & ((key >> (shift + 8)) == (kappa >> (shift + 8)))
                digit = (key >> shift) & 255
                if p == 0:
                    digit = (digit + 128) & 255              # signed top byte -> 0..255 in order
                # Entries outside the row / bucket go to bin 0 and are taken out below (portable:
                # older Triton's histogram has no mask).
                hist += tl.histogram(tl.where(ok, digit, 0), 256)
                n_out += (ok == 0).to(tl.int32)
                lo = tl.minimum(lo, tl.where(ok, key, _INT32_MAX))
                hi = tl.maximum(hi, tl.where(ok, key, _INT32_MIN))
            if p > 0 and tl.min(lo, axis=0) == tl.max(hi, axis=0):
                kappa = tl.min(lo, axis=0)                  # the bucket is one key: all tied
                level = 4
                done = 1
            else:
                hist -= tl.where(bins == 0, tl.sum(n_out, axis=0), 0)
                at_or_above = tl.sum(hist, axis=0) - tl.cumsum(hist, axis=0) + hist
                b = tl.max(tl.where(at_or_above >= kr, bins, 0), axis=0)
                kr -= tl.sum(tl.where(bins > b, hist, 0), axis=0)
                byte = b - 128 if p == 0 else b
                kappa = kappa | (byte << shift)
                level = p + 1
                if tl.sum(tl.where(bins == b, hist, 0), axis=0) == kr:
                    done = 1                                 # the whole bucket is taken
    sh = 32 - 8 * level
    top = kappa >> sh
    n_gt = kk - kr
    seen_gt = tl.full([], 0, tl.int32)
    seen_eq = tl.full([], 0, tl.int32)
    c0 = tl.full([], 0, tl.int32)
    while (c0 < n) & ((seen_gt < n_gt) | (seen_eq < kr)):
        cols = c0 + tl.arange(0, BLOCK)
        ok = cols < n
        v = tl.load(ROW + cols, mask=ok, other=0.0)
        key = _ordered_key(v) >> sh
        gt = (ok & (key > top)).to(tl.int32)
        eq = (ok & (key == top)).to(tl.int32)
        rank_eq = seen_eq + tl.cumsum(eq, axis=0) - eq
        dst = tl.where(gt != 0, seen_gt + tl.cumsum(gt, axis=0) - gt, n_gt + rank_eq)
        keep = (gt != 0) | ((eq != 0) & (rank_eq < kr))
        tl.store(OUT_V + dst, v + 0.0, mask=keep)
        tl.store(OUT_I + dst, cols, mask=keep)
        seen_gt += tl.sum(gt, axis=0)
        seen_eq += tl.sum(eq, axis=0)
        c0 += BLOCK


@triton.jit(do_not_specialize=["row0", "rows_per_b", "s0", "T", "offset", "n_cols", "topk", "cap"])
def radix_select_kernel(WS, TAU, TOP, COUNT, CAND_V, CAND_I, row0, rows_per_b, s0, T, ratio, offset, n_cols, topk,
                        cap, stride_wr, stride_cr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if tl.load(COUNT + pid) > cap:
        row = row0 + pid.to(tl.int64)
        s = s0 + row % rows_per_b
        n = tl.minimum(n_visible(s, offset, ratio, T), n_cols).to(tl.int32)
        kk = tl.minimum(n, topk)
        if kk > 0:
            # tau is at most the k-th group maximum with k maxima at or above it: tau equal to the
            # largest maximum means k groups, so k entries, hold the row's maximum.
            tau = tl.load(TAU + pid)
            tied_top = ((tau == tl.load(TOP + pid)) & (tau > float("-inf"))).to(tl.int32)
            _radix_select_row(WS + row * stride_wr, n, kk, CAND_V + pid.to(tl.int64) * stride_cr,
                              CAND_I + pid.to(tl.int64) * stride_cr, _ordered_key(tau), tied_top, BLOCK=BLOCK)
        tl.store(COUNT + pid, kk)


def radix_select(scores: torch.Tensor, th: Threshold, vals: torch.Tensor, idx: torch.Tensor, *, row0: int,
                 rows_per_b: int, s0: int, T: int, ratio: int, offset: int, topk: int) -> None:
    """For each row ``i`` of the slice with ``th.count[i] > cap`` (candidates that did not fit, or
    a row sent here on purpose): select the exact top-``topk`` of its visible scores (row
    ``row0 + i`` of ``scores`` ``[B·r, N]``, query ``s0 + (row0 + i) % r``) into ``vals[i]`` /
    ``idx[i]``, ties at the k-th score by smallest index, and set ``th.count[i]`` to how many
    (``min(topk, visible)``). ``th`` is :func:`kth_group_max`'s output for these rows (its
    ``tau`` / ``top`` must come from maxima of the row's visible scores; ``tau = -inf`` claims
    nothing). Other rows are untouched."""
    R, cap = vals.shape
    if R == 0:
        return
    assert scores.stride(1) == 1 and vals.stride(1) == 1 and idx.stride(0) == vals.stride(0)
    radix_select_kernel[(R,)](scores, th.tau, th.top, th.count, vals, idx, row0, rows_per_b, s0, T, ratio, offset,
                              scores.shape[1], topk, cap, scores.stride(0), vals.stride(0), BLOCK=RADIX_BLOCK,
                              num_warps=8)


@triton.jit
def _trim_row(CAND_V, CAND_I, row, cnt, kk, tau, stride_cr, W: tl.constexpr, UNROLL: tl.constexpr):
    """Compact the row's ``cnt`` (``kk <= cnt <= W``) candidates, all ``>= tau``, in place to its
    top ``kk``: the entries above the ``kk``-th largest score and, of those equal to it, the ones
    with the smallest indices."""
    j = tl.arange(0, W)
    live = j < cnt
    v = tl.load(CAND_V + row * stride_cr + j, mask=live, other=float("-inf"))
    i = tl.load(CAND_I + row * stride_cr + j, mask=live, other=0)
    key = tl.where(live, _ordered_key(v), _INT32_MIN)
    theta = _kth_key(key, kk, _ordered_key(tau), tl.max(key, axis=0), UNROLL)
    keep = key >= theta
    if tl.sum(keep.to(tl.int32), axis=0) > kk:
        # Ties at the k-th score: the smallest indices among them, as many as the entries above it
        # leave to take, by the same search on reversed indices (distinct, so it ends on exactly
        # that many).
        gt = key > theta
        rev = tl.where(live & (key == theta), -1 - i, _INT32_MIN)
        x = _kth_key(rev, kk - tl.sum(gt.to(tl.int32), axis=0), _INT32_MIN, tl.max(rev, axis=0), UNROLL)
        keep = gt | (rev >= x)
    keep = keep.to(tl.int32)
    pos = tl.cumsum(keep, axis=0) - 1
    tl.debug_barrier()                     # every lane has read its slot before any is moved
    tl.store(CAND_V + row * stride_cr + pos, v, mask=keep != 0)
    tl.store(CAND_I + row * stride_cr + pos, i, mask=keep != 0)


@triton.jit(do_not_specialize=["row0", "rows_per_b", "s0", "T", "offset", "topk"])
def trim_candidates_kernel(CAND_V, CAND_I, COUNT, TAU, row0, rows_per_b, s0, T, ratio, offset, topk, stride_cr,
                           CAP: tl.constexpr, UNROLL: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    cnt = tl.load(COUNT + pid)
    if cnt > CAP // 4:
        s = s0 + (row0 + pid) % rows_per_b
        kk = tl.minimum(n_visible(s, offset, ratio, T), topk).to(tl.int32)
        tau = tl.load(TAU + pid)
        if cnt <= CAP // 2:
            _trim_row(CAND_V, CAND_I, pid, cnt, kk, tau, stride_cr, W=CAP // 2, UNROLL=UNROLL)
        else:
            _trim_row(CAND_V, CAND_I, pid, cnt, kk, tau, stride_cr, W=CAP, UNROLL=False)
        tl.store(COUNT + pid, kk)


def trim_candidates(vals: torch.Tensor, idx: torch.Tensor, th: Threshold, *, row0: int, rows_per_b: int, s0: int,
                    T: int, ratio: int, offset: int, topk: int) -> None:
    """Cut each row with more than ``cap / 4`` candidates (``vals``/``idx`` ``[R, cap]``, ``th.count``
    of them, at least ``kk = min(topk, visible)``, none below ``th.tau``) to its exact top ``kk`` in
    place — ties at the k-th score by smallest index — and set its count to ``kk``; rows of
    query ``s0 + (row0 + i) % rows_per_b``. Afterwards every row holds at most ``cap / 4 >= topk``
    candidates, the width :func:`select_candidates` sorts."""
    R, cap = vals.shape
    assert cap & (cap - 1) == 0 and cap >= 4 * topk and vals.stride(1) == 1 and idx.stride(0) == vals.stride(0)
    if R:
        trim_candidates_kernel[(R,)](vals, idx, th.count, th.tau, row0, rows_per_b, s0, T, ratio, offset, topk,
                                     vals.stride(0), CAP=cap, UNROLL=UNROLL_SEARCH,
                                     num_warps=TRIM_WARPS or _trim_warps(cap))


@triton.jit(do_not_specialize=["row0", "rows_per_b", "s0", "T", "offset", "topk"])
def select_candidates_kernel(CAND_V, CAND_I, COUNT, OUT_I, OUT_V, row0, rows_per_b, s0, T, ratio, offset, topk,
                             stride_cr, stride_ob, stride_os, KW: tl.constexpr, WRITE_V: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    row = row0 + pid
    _sort_and_store(CAND_V, CAND_I, tl.load(COUNT + pid), pid, row // rows_per_b, s0 + row % rows_per_b, OUT_I, OUT_V,
                    T, ratio, offset, topk, stride_cr, stride_ob, stride_os, W=KW, WRITE_V=WRITE_V)


#: Warps of the selection kernels (None: :func:`_kth_warps`, :func:`_trim_warps`, :func:`_sort_warps`).
KTH_WARPS = None
TRIM_WARPS = None
SORT_WARPS = None


def select_candidates(vals: torch.Tensor, idx: torch.Tensor, count: torch.Tensor, out_idx: torch.Tensor,
                      out_scores: torch.Tensor | None, *, row0: int, rows_per_b: int, s0: int, T: int, ratio: int,
                      offset: int) -> None:
    """Write the ordered top-k of each row's candidates (``vals``/``idx`` ``[R, cap]``, ``count``
    of them: at least ``min(topk, visible)``, at most ``cap / 4`` — :func:`trim_candidates` makes it
    so; row ``i`` is query ``s0 + (row0 + i) % rows_per_b`` of batch ``(row0 + i) // rows_per_b``)
    into ``out_idx[b, s]`` (int32, ``-1`` beyond the visible keys) and ``out_scores`` if given."""
    R, cap = vals.shape
    topk = out_idx.shape[2]
    assert cap & (cap - 1) == 0 and cap >= 4 * topk
    if R == 0:
        return
    ov = out_scores if out_scores is not None else out_idx
    kw = cap // 4
    select_candidates_kernel[(R,)](vals, idx, count, out_idx, ov, row0, rows_per_b, s0, T, ratio, offset, topk,
                                   vals.stride(0), out_idx.stride(0), out_idx.stride(1), KW=kw,
                                   WRITE_V=out_scores is not None, num_warps=SORT_WARPS or _sort_warps(kw))


def _kth_warps(block_g: int) -> int:
    """Warps of the k-th group maximum over ``block_g`` registers of a row: 8 from 4,096 wide."""
    return 8 if block_g >= 4096 else 4


def _trim_warps(cap: int) -> int:
    """Warps of the trim, at every ``cap``: 4 against 8 at cap 8,192 was 0.5 ms faster at V3.2 32K
    and V4-Pro 65K (H200, probe11)."""
    return 4


def _sort_warps(kw: int) -> int:
    """Warps of the sort of ``kw`` candidates: 8 from 512 wide; 4 at 2,048 and above, where more
    resident rows per SM hide the network's latency better than wider programs (measured on the
    H200, docs/PERFORMANCE.md)."""
    return 4 if kw < 512 or kw >= 2048 else 8
