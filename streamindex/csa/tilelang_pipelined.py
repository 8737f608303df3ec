"""TileLang CSA sparse-attention forward, software-pipelined (the first kernel; kept as a measured
baseline variant, ``"pipelined"``).

One CTA per (token, block of ``block_h`` heads), 256 threads, no warp specialisation: per KV block
of ``block_i`` rows the CTA gathers ``[block_i, D]`` into shared memory (``cp.async`` through
``T.Pipelined``, ``num_stages`` deep), ``S = Q·KVᵀ`` (wgmma, the KV columns split over the two
warpgroups), the online softmax in fp32 (base 2, initialised from the sink: ``m = sink·log2 e``,
``l = 1``, a virtual key with zero value), then ``O += P·KV`` with ``[block_h, D]`` fp32
accumulators. Two pipelined loops: the ``topk`` compressed rows, then the window rows.
Measured on the H200 at 250-300 TFLOP/s: 255 registers with spills, synchronous wgmma, and the
row max / sum all-reduced across warpgroups through shared memory (``NOTES.md``).
"""
# no `from __future__ import annotations`: TileLang evaluates the prim_func annotations at trace time

LOG2E = 1.4426950408889634


def build_pipelined_kernel(H: int, D: int, topk: int, window: int, scale_log2: float, *, block_h: int = 64,
                           block_i: int = 64, num_stages: int = 2, threads: int = 256):
    """The TileLang ``prim_func`` (not compiled): ``topk`` index slots per token (a multiple of
    ``block_i``), ``block_h`` heads per CTA (``H`` a multiple of it), ``num_stages`` pipeline depth.
    Same kernel arguments as :func:`streamindex.csa.tilelang_ws.build_ws_kernel`."""
    import tilelang.language as T

    if H % block_h or D % 64 or D > 512 or topk % block_i:
        raise ValueError(f"build_pipelined_kernel: unsupported shape H={H}, D={D}, topk={topk}, block_i={block_i}")

    BH, BI = block_h, block_i
    HB = H // BH
    NI = -(-topk // BI)
    NW = -(-window // BI)
    WSPAN = NW * BI
    dtype, acc_dtype = "bfloat16", "float32"
    neg_big = -1.0e30

    batch = T.dynamic("batch")
    seq = T.dynamic("seq")
    n_comp = T.dynamic("n_comp")
    n_raw = T.dynamic("n_raw")

    @T.prim_func
    def csa_sparse_attn_fwd(
        Q: T.Tensor([batch, seq, H, D], dtype),
        KVC: T.Tensor([batch, n_comp, D], dtype),
        KVW: T.Tensor([batch, n_raw, D], dtype),
        Sink: T.Tensor([H], acc_dtype),
        Idx: T.Tensor([batch, seq, NI * BI], "int32"),
        Off: T.Tensor([1], "int32"),
        Out: T.Tensor([batch, seq, H, D], dtype),
    ):
        with T.Kernel(seq * HB, batch, threads=threads) as (bx, by):
            Q_s = T.alloc_shared([BH, D], dtype)
            KV_s = T.alloc_shared([BI, D], dtype)
            P_s = T.alloc_shared([BH, BI], dtype)
            acc_s = T.alloc_fragment([BH, BI], acc_dtype)
            acc_o = T.alloc_fragment([BH, D], acc_dtype)
            m_i = T.alloc_fragment([BH], acc_dtype)
            m_prev = T.alloc_fragment([BH], acc_dtype)
            m_blk = T.alloc_fragment([BH], acc_dtype)
            l_i = T.alloc_fragment([BH], acc_dtype)
            l_blk = T.alloc_fragment([BH], acc_dtype)
            alpha = T.alloc_fragment([BH], acc_dtype)

            s_i = bx // HB
            h0 = (bx % HB) * BH
            b_i = by
            pos = Off[0] + s_i

            T.copy(Q[b_i, s_i, h0:h0 + BH, :], Q_s)
            T.fill(acc_o, 0)
            for h in T.Parallel(BH):
                m_i[h] = T.max(Sink[h0 + h] * LOG2E, neg_big)
                l_i[h] = T.exp2(Sink[h0 + h] * LOG2E - m_i[h])

            # top-k compressed rows, gathered through Idx
            for i in T.Pipelined(NI, num_stages=num_stages):
                for r, d in T.Parallel(BI, D):
                    KV_s[r, d] = KVC[b_i, T.max(Idx[b_i, s_i, i * BI + r], 0), d]
                for h, r in T.Parallel(BH, BI):
                    acc_s[h, r] = T.if_then_else(Idx[b_i, s_i, i * BI + r] >= 0, 0, -T.infinity(acc_dtype))
                T.gemm(Q_s, KV_s, acc_s, transpose_B=True, policy=T.GemmWarpPolicy.FullCol)
                T.copy(m_i, m_prev)
                T.reduce_max(acc_s, m_blk, dim=1, clear=True)
                for h in T.Parallel(BH):
                    m_i[h] = T.max(m_prev[h], m_blk[h] * scale_log2)
                    alpha[h] = T.exp2(m_prev[h] - m_i[h])
                for h, r in T.Parallel(BH, BI):
                    acc_s[h, r] = T.exp2(acc_s[h, r] * scale_log2 - m_i[h])
                T.reduce_sum(acc_s, l_blk, dim=1)
                for h in T.Parallel(BH):
                    l_i[h] = l_i[h] * alpha[h] + l_blk[h]
                for h, d in T.Parallel(BH, D):
                    acc_o[h, d] = acc_o[h, d] * alpha[h]
                T.copy(acc_s, P_s)
                T.gemm(P_s, KV_s, acc_o, policy=T.GemmWarpPolicy.FullCol)

            # sliding window: absolute positions pos - WSPAN + 1 .. pos (those < pos-window+1 or < 0 masked)
            for j in T.Pipelined(NW, num_stages=num_stages):
                for r, d in T.Parallel(BI, D):
                    KV_s[r, d] = KVW[b_i, T.max(pos - WSPAN + 1 + j * BI + r, 0), d]
                for h, r in T.Parallel(BH, BI):
                    acc_s[h, r] = T.if_then_else(
                        (pos - WSPAN + 1 + j * BI + r >= 0) & (j * BI + r >= WSPAN - window), 0,
                        -T.infinity(acc_dtype))
                T.gemm(Q_s, KV_s, acc_s, transpose_B=True, policy=T.GemmWarpPolicy.FullCol)
                T.copy(m_i, m_prev)
                T.reduce_max(acc_s, m_blk, dim=1, clear=True)
                for h in T.Parallel(BH):
                    m_i[h] = T.max(m_prev[h], m_blk[h] * scale_log2)
                    alpha[h] = T.exp2(m_prev[h] - m_i[h])
                for h, r in T.Parallel(BH, BI):
                    acc_s[h, r] = T.exp2(acc_s[h, r] * scale_log2 - m_i[h])
                T.reduce_sum(acc_s, l_blk, dim=1)
                for h in T.Parallel(BH):
                    l_i[h] = l_i[h] * alpha[h] + l_blk[h]
                for h, d in T.Parallel(BH, D):
                    acc_o[h, d] = acc_o[h, d] * alpha[h]
                T.copy(acc_s, P_s)
                T.gemm(P_s, KV_s, acc_o, policy=T.GemmWarpPolicy.FullCol)

            for h, d in T.Parallel(BH, D):
                acc_o[h, d] = T.if_then_else(l_i[h] > 0, acc_o[h, d] / l_i[h], 0)
            T.copy(acc_o, Q_s)
            T.copy(Q_s, Out[b_i, s_i, h0:h0 + BH, :])

    return csa_sparse_attn_fwd
