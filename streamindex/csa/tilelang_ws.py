"""Warp-specialised TileLang kernels of the CSA sparse-attention forward (Hopper, ``sm_90a``).

One *tile* = one token × 64 query heads. ``Hq = 128`` gives two tiles per token, adjacent in the
tile order so that both run at the same time and the second gather of each KV row hits L2: one
CTA cannot hold a 128-head output (128 × 512 fp32 accumulators are the whole 256 KiB register
file). 384 threads in three warpgroups; the KV tile of ``BI`` gathered rows sits once in shared
memory and serves all 64 heads of the tile, as key and as value.

* **producer** (warpgroup 2, ``setmaxnreg`` down): gathers the tile's KV rows, block by block,
  into a two-slot shared-memory ring with 16-byte ``cp.async`` (``-1`` slots and window rows
  before position 0 are zero-filled, never read), copies the block's indices next to it (the
  consumers' validity mask) and arrives on the slot's mbarrier when its copies have landed
  (``cp.async.mbarrier.arrive.noinc``). The 64 × ``D`` query tile follows the first KV block.
  Each thread loads its next block's row indices while the current block's copies fly.
* **consumers** (warpgroups 0 and 1, ``setmaxnreg`` up), two schedules:

  - ``"split"`` (the layout of TileLang's pipelined sparse-MLA example): consumer 0 computes
    ``S = Q·KVᵀ`` (64 heads × ``BI`` rows), the online softmax in fp32 (base 2), hands ``P``
    (bf16) and the rescale factor to consumer 1 through shared memory, and accumulates
    ``O[:, :D/2]``; consumer 1 rescales and accumulates ``O[:, D/2:]``. Consumer 1's GEMM
    overlaps consumer 0's next ``Q·KVᵀ``; consumer 0 carries 3/4 of the tensor work.
  - ``"seesaw"`` (balanced, the scheme of FlashMLA's sparse prefill): consumer ``w`` computes
    ``Q·KVᵀ`` of the blocks ``k ≡ w (mod 2)``; the two exchange their row maxima through shared
    memory (so both rescale with the same running max), each writes its ``P`` to its own
    shared buffer and accumulates its half of ``O`` (``D/2`` columns) from both blocks of the
    pair: its own ``P`` first (asynchronous wgmma), then the peer's. Equal tensor work on both
    warpgroups; needs an even number of blocks.

  Either way each consumer holds 64 × ``D/2`` fp32 accumulators (128 registers per thread).

Blocks ``0 .. NI-1`` are the top-k compressed rows (``Idx``), blocks ``NI .. NI+NW-1`` the sliding
window (positions ``pos-WSPAN+1 .. pos``; those ``< pos-window+1`` or ``< 0`` masked). The
per-head sink joins the denominator at the end: ``O / (l + 2^(sink·log2e - m))``.

**Persistent** (``num_ctas`` given): ``num_ctas`` CTAs loop over the tiles (``bx``, ``bx +
num_ctas``, ...), so the next tile's first gather and query load overlap the current tile's last
blocks and its output store. Outputs go from registers straight to global memory (no shared
staging), which frees the query buffer right after the tile's last ``Q·KVᵀ``. Without
``num_ctas`` there is one CTA per tile (same code, one loop trip).

Synchronisation: mbarriers only, with phase parities taken from running message counters, so
tile boundaries need no reset: KV slot full / empty (producer ↔ consumers), query full / free
(producer ↔ consumers), and between the consumers P ready / free (``split``) or row-statistics
and P exchanges (``seesaw``).
"""
# no `from __future__ import annotations`: TileLang evaluates the prim_func annotations at trace time

LOG2E = 1.4426950408889634
BLOCK_H = 64      # query heads per tile: wgmma's M per warpgroup
THREADS = 384     # two consumer warpgroups + one producer warpgroup
LAUNCH_REGS = 168  # registers per thread at launch (65,536 / 384, rounded down to a multiple of 8)
SCHEDULES = ("split", "seesaw")


def ws_shared_bytes(D: int, block_i: int = 64, schedule: str = "split") -> int:
    """Dynamic shared memory of :func:`build_ws_kernel` (bytes, before alignment padding)."""
    n_p = 2 if schedule == "seesaw" else 1
    return 2 * BLOCK_H * D + 2 * 2 * block_i * D + n_p * 2 * BLOCK_H * block_i + 2 * block_i * 4 + 5 * BLOCK_H * 4


def build_ws_kernel(H: int, D: int, topk: int, window: int, scale_log2: float, *, schedule: str = "seesaw",
                    block_i: int = 64, num_ctas: int | None = None, regs: tuple = (216, 216, 72)):
    """The TileLang ``prim_func`` (not compiled) of the warp-specialised CSA forward.

    ``H`` query heads (a multiple of 64); head dim ``D`` (a multiple of 128, <= 512); ``topk``
    index slots per token (a multiple of ``block_i``; with ``schedule="seesaw"`` the block count
    ``topk/block_i + ceil(window/block_i)`` must be even); sliding ``window``; ``scale_log2`` =
    logit scale × log2 e; ``schedule`` in :data:`SCHEDULES`; ``num_ctas``: persistent grid size
    (``None``: one CTA per tile); ``regs``: ``setmaxnreg`` of consumer 0, consumer 1, producer
    (multiples of 8 in [24, 256] summing to at most 504: the CTA's register pool is what it was
    launched with, 168 per thread at 384 threads, and an increase that the pool cannot serve
    blocks forever).

    Kernel arguments: ``Q [B,S,H,D]`` bf16, ``KVC [B,T,D]``, ``KVW [B,S_kv,D]``, ``Sink [H]`` fp32
    (``-inf`` = no sink), ``Idx [B,S,topk]`` int32, ``Off [1]`` int32 (position of query 0),
    ``Out [B,S,H,D]`` bf16."""
    import tilelang.language as T

    if schedule not in SCHEDULES:
        raise ValueError(f"build_ws_kernel: schedule must be one of {SCHEDULES}, got {schedule!r}")
    if H % BLOCK_H or D % 128 or D > 512 or topk < block_i or topk % block_i or block_i % 16 or window < 1:
        raise ValueError(f"build_ws_kernel: unsupported shape H={H}, D={D}, topk={topk}, block_i={block_i}, "
                         f"window={window}")
    BH, BI = BLOCK_H, block_i
    NI = topk // BI
    NW = -(-window // BI)
    NB = NI + NW
    if schedule == "seesaw" and NB % 2:
        raise ValueError(f"build_ws_kernel: the seesaw schedule needs an even number of KV blocks, got {NI} + {NW} "
                         "(pad topk with -1 slots)")
    if sum(regs) > 3 * LAUNCH_REGS or any(r % 8 or not 24 <= r <= 256 for r in regs):
        raise ValueError(f"build_ws_kernel: regs {regs} must be multiples of 8 in [24, 256] summing to at most "
                         f"{3 * LAUNCH_REGS}")
    HB = H // BH
    DH = D // 2
    NP = NB // 2              # block pairs (seesaw)
    WSPAN = NW * BI
    RPP = BI // 16            # rows per producer thread per block (8 threads per row, 16 rows per pass)
    CPR = D // 64             # 16-byte chunks per producer thread per row
    dtype, acc = "bfloat16", "float32"
    neg_big = -1.0e30         # finite start of the running max: no inf - inf
    r0, r1, r2 = regs
    seesaw = schedule == "seesaw"

    batch = T.dynamic("batch")
    seq = T.dynamic("seq")
    n_comp = T.dynamic("n_comp")
    n_raw = T.dynamic("n_raw")

    @T.macro
    def mask_init(S, k, slot, pos, I_s):
        """``S = 0`` where row ``r`` of block ``k`` exists, ``-inf`` where it does not (a ``-1``
        index slot, a window row before position 0 or before the window)."""
        for h, r in T.Parallel(BH, BI):
            S[h, r] = T.if_then_else(
                T.if_then_else(k < NI, I_s[slot, r] >= 0,
                               (pos - WSPAN + 1 + (k - NI) * BI + r >= 0) & ((k - NI) * BI + r >= WSPAN - window)),
                0, -T.infinity(acc))

    @T.macro
    def producer(Q, KVC, KVW, Idx, Off, Q_s, KV_s, I_s, rows, bar_full, bar_empty, bar_q_full, bar_q_free, bx, grid,
                 n_local, tx):
        T.set_max_nreg(r2, 0)
        t = tx - 256
        for it in T.serial(n_local):
            tile = bx + it * grid
            b_i = tile // (seq * HB)
            s_i = (tile % (seq * HB)) // HB
            h0 = (tile % HB) * BH
            pos = Off[0] + s_i
            for rr in T.unroll(RPP):
                rows[rr] = Idx[b_i, s_i, rr * 16 + t // 8]
            for k in T.serial(NB):
                g = it * NB + k
                slot = g % 2
                T.barrier_wait(bar_empty[slot], ((g // 2) & 1) ^ 1)
                if k < NI:
                    if t < BI // 4:
                        T.ptx_cp_async(T.access_ptr(I_s[slot, t * 4], "w", 4),
                                       T.access_ptr(Idx[b_i, s_i, k * BI + t * 4], "r", 4), 4)
                    for rr in T.unroll(RPP):
                        for u in T.unroll(CPR):
                            T.ptx_cp_async(
                                T.access_ptr(KV_s[slot, rr * 16 + t // 8, u * 64 + (t % 8) * 8], "w", 8),
                                T.access_ptr(KVC[b_i, T.max(rows[rr], 0), u * 64 + (t % 8) * 8], "r", 8),
                                8, predicate=rows[rr] >= 0)
                else:
                    for rr in T.unroll(RPP):
                        j = (k - NI) * BI + rr * 16 + t // 8
                        p = pos - WSPAN + 1 + j
                        for u in T.unroll(CPR):
                            T.ptx_cp_async(
                                T.access_ptr(KV_s[slot, rr * 16 + t // 8, u * 64 + (t % 8) * 8], "w", 8),
                                T.access_ptr(KVW[b_i, T.max(p, 0), u * 64 + (t % 8) * 8], "r", 8),
                                8, predicate=(p >= 0) & (j >= WSPAN - window))
                T.cp_async_barrier_noinc(bar_full[slot])
                if k + 1 < NI:  # the next block's rows, loaded while this block's copies fly
                    for rr in T.unroll(RPP):
                        rows[rr] = Idx[b_i, s_i, (k + 1) * BI + rr * 16 + t // 8]
                if k == 0:  # the query tile, once the first KV block is on its way
                    T.barrier_wait(bar_q_free, (it & 1) ^ 1)
                    for rr in T.unroll(BH // 16):
                        for u in T.unroll(CPR):
                            T.ptx_cp_async(
                                T.access_ptr(Q_s[rr * 16 + t // 8, u * 64 + (t % 8) * 8], "w", 8),
                                T.access_ptr(Q[b_i, s_i, h0 + rr * 16 + t // 8, u * 64 + (t % 8) * 8], "r", 8), 8)
                    T.cp_async_barrier_noinc(bar_q_full)

    @T.macro
    def seesaw_consumer(w, nreg, S, acc_o, m_i, m_prev, m_peer, alpha, l_i, l_blk, Q_s, KV_s, I_s, P_s, max_s, l_s,
                        bar_full, bar_empty, bar_q_full, bar_q_free, bar_stats, bar_p, Sink, Out, Off, bx, grid,
                        n_local):
        """Consumer ``w`` of the seesaw schedule: ``Q·KVᵀ`` of blocks ``k ≡ w (mod 2)`` (always slot
        ``w``: the block count is even), output columns ``w·D/2 .. (w+1)·D/2``."""
        T.set_max_nreg(nreg, 1)
        d0 = w * DH
        for it in T.serial(n_local):
            tile = bx + it * grid
            b_i = tile // (seq * HB)
            s_i = (tile % (seq * HB)) // HB
            h0 = (tile % HB) * BH
            pos = Off[0] + s_i
            T.fill(acc_o, 0)
            T.fill(l_i, 0)
            T.fill(m_i, neg_big)
            T.barrier_wait(bar_q_full, it & 1)
            for kk in T.serial(NP):
                k = 2 * kk + w
                g = it * NB + k
                cs = it * (NP + 1) + kk       # row-statistics messages (one per pair, one per tile end)
                cp = it * NP + kk             # P messages
                T.barrier_wait(bar_full[w], (g // 2) & 1)
                mask_init(S, k, w, pos, I_s)
                T.wgmma_gemm(Q_s, KV_s[w, :, :], S, transpose_B=True)
                T.wait_wgmma(0)
                if kk == NP - 1:
                    T.barrier_arrive(bar_q_free)
                T.copy(m_i, m_prev)
                T.reduce_max(S, m_i, dim=1, clear=False)
                T.copy(m_i, max_s[w, :])
                T.barrier_arrive(bar_stats[w])
                T.barrier_wait(bar_stats[1 - w], cs & 1)
                T.copy(max_s[1 - w, :], m_peer)
                for h in T.Parallel(BH):
                    m_i[h] = T.max(m_i[h], m_peer[h])
                    alpha[h] = T.exp2((m_prev[h] - m_i[h]) * scale_log2)
                for h, r in T.Parallel(BH, BI):
                    S[h, r] = T.exp2(S[h, r] * scale_log2 - m_i[h] * scale_log2)
                T.reduce_sum(S, l_blk, dim=1)
                for h in T.Parallel(BH):
                    l_i[h] = l_i[h] * alpha[h] + l_blk[h]
                for h, d in T.Parallel(BH, DH):
                    acc_o[h, d] *= alpha[h]
                T.copy(S, P_s[w, :, :])
                T.fence_proxy_async()
                T.barrier_arrive(bar_p[w])
                T.wgmma_gemm(P_s[w, :, :], KV_s[w, :, d0:d0 + DH], acc_o)
                T.barrier_wait(bar_p[1 - w], cp & 1)
                T.fence_proxy_async()
                T.wgmma_gemm(P_s[1 - w, :, :], KV_s[1 - w, :, d0:d0 + DH], acc_o)
                T.wait_wgmma(0)
                T.barrier_arrive(bar_empty[0])
                T.barrier_arrive(bar_empty[1])
            cs_end = it * (NP + 1) + NP
            T.copy(l_i, l_s[w, :])
            T.barrier_arrive(bar_stats[w])
            T.barrier_wait(bar_stats[1 - w], cs_end & 1)
            T.copy(l_s[1 - w, :], l_blk)
            for h in T.Parallel(BH):
                alpha[h] = 1.0 / (l_i[h] + l_blk[h] + T.exp2(Sink[h0 + h] * LOG2E - m_i[h] * scale_log2))
            for h, d in T.Parallel(BH, DH):
                acc_o[h, d] *= alpha[h]
            T.copy(acc_o, Out[b_i, s_i, h0:h0 + BH, d0:d0 + DH])

    @T.macro
    def split_consumer0(S, acc_o, m_i, m_prev, alpha, l_i, l_blk, Q_s, KV_s, I_s, P_s, alpha_s, bar_full, bar_empty,
                        bar_q_full, bar_q_free, bar_pp, Sink, Out, Off, bx, grid, n_local):
        """Consumer 0 of the split schedule: all of ``Q·KVᵀ``, the softmax, output columns ``0 .. D/2``;
        ``bar_pp`` = (P ready, P free); ``alpha_s`` carries the rescale factors, then (message ``NB`` of a tile) ``1/denominator``."""
        T.set_max_nreg(r0, 1)
        for it in T.serial(n_local):
            tile = bx + it * grid
            b_i = tile // (seq * HB)
            s_i = (tile % (seq * HB)) // HB
            h0 = (tile % HB) * BH
            pos = Off[0] + s_i
            T.fill(acc_o, 0)
            T.fill(l_i, 0)
            T.fill(m_i, neg_big)
            T.barrier_wait(bar_q_full, it & 1)
            for k in T.serial(NB):
                g = it * NB + k
                c = it * (NB + 1) + k
                T.barrier_wait(bar_full[g % 2], (g // 2) & 1)
                mask_init(S, k, g % 2, pos, I_s)
                T.wgmma_gemm(Q_s, KV_s[g % 2, :, :], S, transpose_B=True)
                T.wait_wgmma(0)
                if k == NB - 1:
                    T.barrier_arrive(bar_q_free)
                T.copy(m_i, m_prev)
                T.reduce_max(S, m_i, dim=1, clear=False)
                for h in T.Parallel(BH):
                    alpha[h] = T.exp2((m_prev[h] - m_i[h]) * scale_log2)
                for h, r in T.Parallel(BH, BI):
                    S[h, r] = T.exp2(S[h, r] * scale_log2 - m_i[h] * scale_log2)
                T.reduce_sum(S, l_blk, dim=1)
                for h in T.Parallel(BH):
                    l_i[h] = l_i[h] * alpha[h] + l_blk[h]
                for h, d in T.Parallel(BH, DH):
                    acc_o[h, d] *= alpha[h]
                T.barrier_wait(bar_pp[1], (c & 1) ^ 1)
                T.copy(alpha, alpha_s)
                T.copy(S, P_s[0, :, :])
                T.fence_proxy_async()
                T.barrier_arrive(bar_pp[0])
                T.gemm(P_s[0, :, :], KV_s[g % 2, :, 0:DH], acc_o)
                T.barrier_arrive(bar_empty[g % 2])
            c_end = it * (NB + 1) + NB
            for h in T.Parallel(BH):
                alpha[h] = 1.0 / (l_i[h] + T.exp2(Sink[h0 + h] * LOG2E - m_i[h] * scale_log2))
            T.barrier_wait(bar_pp[1], (c_end & 1) ^ 1)
            T.copy(alpha, alpha_s)
            T.barrier_arrive(bar_pp[0])
            for h, d in T.Parallel(BH, DH):
                acc_o[h, d] *= alpha[h]
            T.copy(acc_o, Out[b_i, s_i, h0:h0 + BH, 0:DH])

    @T.macro
    def split_consumer1(acc_o, KV_s, P_s, alpha_s, bar_empty, bar_pp, Out, bx, grid, n_local):
        """Consumer 1 of the split schedule: output columns ``D/2 .. D``."""
        T.set_max_nreg(r1, 1)
        for it in T.serial(n_local):
            tile = bx + it * grid
            b_i = tile // (seq * HB)
            s_i = (tile % (seq * HB)) // HB
            h0 = (tile % HB) * BH
            T.fill(acc_o, 0)
            for k in T.serial(NB):
                g = it * NB + k
                c = it * (NB + 1) + k
                T.barrier_wait(bar_pp[0], c & 1)
                T.fence_proxy_async()
                for h, d in T.Parallel(BH, DH):
                    acc_o[h, d] *= alpha_s[h]
                T.gemm(P_s[0, :, :], KV_s[g % 2, :, DH:D], acc_o)
                T.barrier_arrive(bar_pp[1])
                T.barrier_arrive(bar_empty[g % 2])
            c_end = it * (NB + 1) + NB
            T.barrier_wait(bar_pp[0], c_end & 1)
            for h, d in T.Parallel(BH, DH):
                acc_o[h, d] *= alpha_s[h]
            T.barrier_arrive(bar_pp[1])
            T.copy(acc_o, Out[b_i, s_i, h0:h0 + BH, DH:D])

    @T.prim_func
    def csa_attn_ws(
        Q: T.Tensor([batch, seq, H, D], dtype),
        KVC: T.Tensor([batch, n_comp, D], dtype),
        KVW: T.Tensor([batch, n_raw, D], dtype),
        Sink: T.Tensor([H], acc),
        Idx: T.Tensor([batch, seq, topk], "int32"),
        Off: T.Tensor([1], "int32"),
        Out: T.Tensor([batch, seq, H, D], dtype),
    ):
        n_tiles = batch * seq * HB
        grid = num_ctas if num_ctas is not None else n_tiles
        with T.Kernel(grid, threads=THREADS) as bx:
            Q_s = T.alloc_shared([BH, D], dtype)
            KV_s = T.alloc_shared([2, BI, D], dtype)
            P_s = T.alloc_shared([2 if seesaw else 1, BH, BI], dtype)
            I_s = T.alloc_shared([2, BI], "int32")
            max_s = T.alloc_shared([2, BH], acc)      # seesaw: row maxima of consumer w
            l_s = T.alloc_shared([2, BH], acc)        # seesaw: row sums at the tile end
            alpha_s = T.alloc_shared([BH], acc)       # split: rescale factors, then 1/denominator

            S0 = T.alloc_fragment([BH, BI], acc)
            S1 = T.alloc_fragment([BH, BI], acc)
            acc_o0 = T.alloc_fragment([BH, DH], acc)
            acc_o1 = T.alloc_fragment([BH, DH], acc)
            m0 = T.alloc_fragment([BH], acc)
            m0_prev = T.alloc_fragment([BH], acc)
            m0_peer = T.alloc_fragment([BH], acc)
            a0 = T.alloc_fragment([BH], acc)
            l0 = T.alloc_fragment([BH], acc)
            l0_blk = T.alloc_fragment([BH], acc)
            m1 = T.alloc_fragment([BH], acc)
            m1_prev = T.alloc_fragment([BH], acc)
            m1_peer = T.alloc_fragment([BH], acc)
            a1 = T.alloc_fragment([BH], acc)
            l1 = T.alloc_fragment([BH], acc)
            l1_blk = T.alloc_fragment([BH], acc)
            rows = T.alloc_local([RPP], "int32")

            bar_full = T.alloc_barrier([128, 128])    # producer -> consumers: KV slot filled
            bar_empty = T.alloc_barrier([256, 256])   # consumers -> producer: KV slot free
            bar_q_full = T.alloc_barrier(128)         # producer -> consumers: query tile landed
            bar_q_free = T.alloc_barrier(256 if seesaw else 128)  # consumers -> producer: last Q·KVᵀ done
            bar_x = T.alloc_barrier([128, 128])       # seesaw: row statistics of consumer w; split: P ready / free
            bar_p = T.alloc_barrier([128, 128])       # seesaw: P of consumer w written

            tx = T.get_thread_binding()
            n_local = T.ceildiv(n_tiles - bx, grid)

            if tx >= 256:
                producer(Q, KVC, KVW, Idx, Off, Q_s, KV_s, I_s, rows, bar_full, bar_empty, bar_q_full, bar_q_free,
                         bx, grid, n_local, tx)
            elif tx < 128:
                if seesaw:
                    seesaw_consumer(0, r0, S0, acc_o0, m0, m0_prev, m0_peer, a0, l0, l0_blk, Q_s, KV_s, I_s, P_s,
                                    max_s, l_s, bar_full, bar_empty, bar_q_full, bar_q_free, bar_x, bar_p, Sink, Out,
                                    Off, bx, grid, n_local)
                else:
                    split_consumer0(S0, acc_o0, m0, m0_prev, a0, l0, l0_blk, Q_s, KV_s, I_s, P_s, alpha_s,
                                    bar_full, bar_empty, bar_q_full, bar_q_free, bar_x, Sink, Out, Off,
                                    bx, grid, n_local)
            else:
                if seesaw:
                    seesaw_consumer(1, r1, S1, acc_o1, m1, m1_prev, m1_peer, a1, l1, l1_blk, Q_s, KV_s, I_s, P_s,
                                    max_s, l_s, bar_full, bar_empty, bar_q_full, bar_q_free, bar_x, bar_p, Sink, Out,
                                    Off, bx, grid, n_local)
                else:
                    split_consumer1(acc_o1, KV_s, P_s, alpha_s, bar_empty, bar_x, Out, bx, grid,
                                    n_local)

    return csa_attn_ws
