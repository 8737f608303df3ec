"""Compiles every Triton kernel of ``stream`` for the H200 (sm_90) on a machine without a GPU and
prints one JSON line per kernel variant. Run without TRITON_INTERPRET (tests/test_kernels_compile.py
does it in a subprocess)."""
import json
import sys

import triton
from triton.backends.compiler import GPUTarget

from streamindex.kernels import candidates as c
from streamindex.kernels import score_tile as st

TARGET = GPUTarget("cuda", 90, 32)


def _compile(name, fn, signature, constexprs, **options):
    try:
        src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs={})
        k = triton.compile(src, target=TARGET, options=options)
        print(json.dumps(dict(name=name, ok=True, shared=k.metadata.shared)), flush=True)
    except Exception as exc:  # noqa: BLE001 - reported, the test fails on it
        print(json.dumps(dict(name=name, ok=False, error=f"{type(exc).__name__}: {exc}"[:2000])), flush=True)


def _i(*names, t="i32"):
    return {n: t for n in names}


SCORE_SIG = {"Q": "*bf16", "K": "*bf16", "W": "*fp32", "KSCALE": "*fp32", "OUT": "*fp32", "GMAX": "*fp32",
             "NONFINITE": "*i32", **_i("s0", "n_rows", "n_cols", "T", "ratio", "offset"),
             **_i("stride_qb", "stride_qs", "stride_qh", "stride_kb", "stride_kt", "stride_wb", "stride_ws",
                  "stride_ksb", "stride_ob", "stride_or", "stride_gb", "stride_gr", "n_groups"),
             **_i("H", "D", "BLOCK_D", "BLOCK_S", "BLOCK_T", "HAS_KSCALE", "IEEE_FP32", "GROUP", "CHECK_FINITE",
                  t="constexpr")}


def main():
    for dtype, group, check in (("bf16", 128, False), ("bf16", 2, True), ("fp8e4nv", 0, False)):
        _compile(f"score_tile {dtype} group {group}", st.score_tile_kernel, dict(SCORE_SIG, Q=f"*{dtype}", K=f"*{dtype}"),
                 dict(H=64, D=128, BLOCK_D=128, BLOCK_S=64, BLOCK_T=128, HAS_KSCALE=dtype != "bf16",
                      IEEE_FP32=False, GROUP=group, CHECK_FINITE=check), num_warps=4, num_stages=4)
    kth = {"GMAX": "*fp32", "TAU": "*fp32", "TOP": "*fp32", "LIVE": "*i32", "N_LIVE": "*i32", "COUNT": "*i32",
           **_i("n_groups", "topk", "live_cap", "stride_gr", "stride_lr"), "BLOCK_G": "constexpr", "UNROLL": "constexpr"}
    for width in c.KTH_WIDTHS:
        _compile(f"kth_group_max {width}", c.kth_group_max_kernel, kth, {"BLOCK_G": width, "UNROLL": c.UNROLL_SEARCH},
                 num_warps=c._kth_warps(width))
    gat = {"WS": "*fp32", "TAU": "*fp32", "LIVE": "*i32", "N_LIVE": "*i32", "CAND_V": "*fp32", "CAND_I": "*i32",
           "COUNT": "*i32", **_i("n_cols", "live_cap", "cap", "stride_wr", "stride_lr", "stride_cr"),
           "BLOCK_L": "constexpr", "GROUP": "constexpr"}
    for group in (1, 2, 128):
        _compile(f"gather {group}", c.gather_candidates_kernel, gat, {"BLOCK_L": 2048 // group, "GROUP": group},
                 num_warps=8)
    rad = {"WS": "*fp32", "TAU": "*fp32", "TOP": "*fp32", "COUNT": "*i32", "CAND_V": "*fp32", "CAND_I": "*i32",
           **_i("row0", "rows_per_b", "s0", "T", "offset", "n_cols", t="i64"),
           **_i("ratio", "topk", "cap", "stride_wr", "stride_cr"), "BLOCK": "constexpr"}
    _compile("radix_select", c.radix_select_kernel, rad, {"BLOCK": c.RADIX_BLOCK}, num_warps=8)
    trim = {"CAND_V": "*fp32", "CAND_I": "*i32", "COUNT": "*i32", "TAU": "*fp32",
            **_i("row0", "rows_per_b", "s0", "T", "offset", t="i64"), **_i("ratio", "topk", "stride_cr"),
            "CAP": "constexpr", "UNROLL": "constexpr"}
    sel = {"CAND_V": "*fp32", "CAND_I": "*i32", "COUNT": "*i32", "OUT_I": "*i32", "OUT_V": "*fp32",
           **_i("row0", "rows_per_b", "s0", "T", "offset", t="i64"),
           **_i("ratio", "topk", "stride_cr", "stride_ob", "stride_os"), "KW": "constexpr", "WRITE_V": "constexpr"}
    for topk in (1, 512, 2048):
        cap = 1 << (4 * topk - 1).bit_length()
        _compile(f"trim topk {topk}", c.trim_candidates_kernel, trim, {"CAP": cap, "UNROLL": c.UNROLL_SEARCH},
                 num_warps=c._trim_warps(cap))
        _compile(f"select topk {topk}", c.select_candidates_kernel, sel, {"KW": cap // 4, "WRITE_V": True},
                 num_warps=c._sort_warps(cap // 4))


if __name__ == "__main__":
    sys.exit(main())
