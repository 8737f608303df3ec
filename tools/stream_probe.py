"""Device probe for ``stream``'s selection (no-cliff work): the same-FLOP pairs of V4-Flash, V4-Pro
and V3.2, the tie-heavy and recency inputs, both selections of short rows (their own group maxima vs
groups of 2), the default call (check_finite=True) beside the unchecked one, per-kernel times, and the
cold precompile time of each model. Prints a table last; ``--json`` writes everything. Not a
test: run on the GPU machine, e.g. ``python tools/stream_probe.py --json $OUT/probe.json``."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

import streamindex as si
import streamindex.paths.stream as stream_mod
from streamindex.harness.measure import measure_call
from streamindex.metrics import tie_aware_recall, useful_flops

MODELS = {"v4_flash": dict(H=64, D=128, topk=512, ratio=4), "v4_pro": dict(H=64, D=128, topk=1024, ratio=4),
          "v3_2": dict(H=64, D=128, topk=2048, ratio=1)}


def inputs(model, S, kind="random", fp8=False, seed=1):
    m = MODELS[model]
    if fp8:
        q, k, w, qs, ks = si.make_fp8_inputs(S, m["H"], m["D"], ratio=m["ratio"], device="cuda", seed=seed, kind=kind)
        return q, k, w, dict(q_scale=qs, k_scale=ks)
    return (*si.make_inputs(S, m["H"], m["D"], ratio=m["ratio"], device="cuda", seed=seed, kind=kind), {})


#: Selection variants the probe can time side by side: module constants patched for the call.
VARIANTS = {
    "default": {},
    "g4m4": {"GROUPS_PER_K": 4, "MIN_GROUP": 4},
    "g2m4": {"MIN_GROUP": 4},
    "sort8": {"candidates.SORT_WARPS": 8},
    "kth16": {"candidates.KTH_WARPS": 16},
    "trim8": {"candidates.TRIM_WARPS": 8},
    # the gather reads topk · group entries per row, the k-th search n / group maxima: groups of
    # 128 (the default before ce14674) or 32 instead of 64 for rows wider than 131,072
    "g128": {"LARGEST_GROUP": 128},
    "g32": {"LARGEST_GROUP": 32},
    # a 512 MiB score workspace: 1M's widest chunks hold 512 rows (half the launches), +0.25 GiB
    "ws512": {"DEFAULT_WORKSPACE": 512 << 20},
    # the k-th searches as loops, not unrolled (kernels ~3x faster to compile)
    "loop": {"candidates.UNROLL_SEARCH": False},
}


def _patch(knobs):
    """Set ``knobs`` (``name`` on the stream module, ``candidates.name`` on the kernels); return
    the previous values."""
    import streamindex.kernels.candidates as cand_mod
    old = {}
    for name, value in knobs.items():
        mod, attr = (cand_mod, name.split(".", 1)[1]) if name.startswith("candidates.") else (stream_mod, name)
        old[name] = getattr(mod, attr)
        setattr(mod, attr, value)
    return old


def time_case(model, S, kind="random", fp8=False, check=False, direct=None, recall_rows=48, reps=3, variant="default"):
    m = MODELS[model]
    path = "stream_fp8" if fp8 else "stream"
    knobs = dict(VARIANTS[variant])
    if direct is not None:
        knobs["DIRECT_MAX_COLS"] = direct
    old = _patch(knobs)
    row = dict(model=model, S=S, inputs=kind, path=path, check_finite=check,
               direct=stream_mod.DIRECT_MAX_COLS, variant=variant, tree=os.path.dirname(si.__file__))
    try:
        q, k, w, kw = inputs(model, S, kind, fp8)
        fn = lambda: si.indexer_topk(q, k, w, m["topk"], ratio=m["ratio"], path=path, check_finite=check, **kw)
        t0 = time.time()
        res = measure_call(fn, device="cuda", warmup=1, repeats=reps, time_budget_s=12, fast_call_s=0.05,
                           bench_ms=200)
        row.update(time_s=res.time_s, peak_extra_gib=res.peak_extra_gib, timing=res.timing_method,
                   wall_s=time.time() - t0,
                   tflops=useful_flops(S, k.shape[1], m["H"], m["D"], m["ratio"]) / res.time_s / 1e12)
        if recall_rows:
            g = torch.Generator().manual_seed(0)
            rows = torch.unique(torch.cat([torch.arange(4), torch.arange(S - 8, S),
                                           torch.randint(0, S, (recall_rows,), generator=g)]))
            rec = tie_aware_recall(res.output, q, k, w, topk=m["topk"], ratio=m["ratio"], rows=rows,
                                   q_scale=kw.get("q_scale"), k_scale=kw.get("k_scale"))
            row["recall_min"] = rec.min().item()
        del q, k, w, kw, res
    except Exception as e:  # a failing case is a recorded row
        row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    finally:
        _patch(old)
        torch.cuda.empty_cache()
    print(json.dumps(row), flush=True)
    return row


def kernel_breakdown(model, S, kind="random", top=8, variant="default"):
    from torch.profiler import ProfilerActivity, profile
    m = MODELS[model]
    old = _patch(VARIANTS[variant])
    try:
        q, k, w, kw = inputs(model, S, kind)
        call = lambda: si.indexer_topk(q, k, w, m["topk"], ratio=m["ratio"], check_finite=False, **kw)
        call()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            call()
            torch.cuda.synchronize()
    finally:
        _patch(old)
    rows = sorted(((e.key, e.device_time_total / 1e3, e.count) for e in prof.key_averages()), key=lambda r: -r[1])
    out = [dict(model=model, S=S, inputs=kind, variant=variant, kernel=n[:60], ms=round(ms, 2), count=c)
           for n, ms, c in rows[:top]]
    for r in out:
        print(json.dumps(r), flush=True)
    del q, k, w
    torch.cuda.empty_cache()
    return out


PRECOMPILE = """
import json, sys, time, torch, streamindex as si
H, D, topk, ratio, S = 64, 128, int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fp8 = sys.argv[4] == "1"
sys.path.insert(0, sys.argv[6])
from stream_probe import _patch
_patch(json.loads(sys.argv[5]))
if fp8:
    q, k, w, qs, ks = si.make_fp8_inputs(S, H, D, ratio=ratio, device="cuda")
    kw = dict(q_scale=qs, k_scale=ks)
else:
    q, k, w = si.make_inputs(S, H, D, ratio=ratio, device="cuda"); kw = {}
torch.cuda.synchronize(); t0 = time.time()
si.precompile(q, k, w, topk, ratio=ratio, path="stream_fp8" if fp8 else "stream", **kw)
torch.cuda.synchronize(); print("PRECOMPILE_S", time.time() - t0)
"""


def precompile_cold(model, S, fp8=False, variant="default"):
    """Precompile in a fresh process with an empty Triton cache: the compile time a user pays."""
    import tempfile
    m = MODELS[model]
    env = dict(os.environ, TRITON_CACHE_DIR=tempfile.mkdtemp(prefix="tcache-"))
    t0 = time.time()
    args = [str(m["topk"]), str(m["ratio"]), str(S), "1" if fp8 else "0", json.dumps(VARIANTS[variant]),
            os.path.dirname(os.path.abspath(__file__))]
    out = subprocess.run([sys.executable, "-c", PRECOMPILE, *args], env=env, capture_output=True, text=True,
                         timeout=400)
    line = [x for x in out.stdout.splitlines() if x.startswith("PRECOMPILE_S")]
    row = dict(model=model, S=S, fp8=fp8, variant=variant, precompile_s=float(line[0].split()[1]) if line else None,
               process_s=time.time() - t0, err=out.stderr[-400:] if out.returncode else "")
    print(json.dumps(row), flush=True)
    return row


def score_kernel_ab(S=262144, rows=1024):
    """The score kernel alone on the last ``rows`` queries of S (V4-Flash, bf16, group 128): the
    kernel of f7060e5 (``.dev/score_tile_f7060e5.py``, if present) beside today's and its
    CHECK_FINITE variant, in one run."""
    import importlib.util

    from streamindex.kernels.score_tile import score_tile
    from triton.testing import do_bench
    q, k, w, _ = inputs("v4_flash", S, seed=0)
    T, s0 = k.shape[1], S - rows
    n_cols = (S - 1 + 1) // 4
    ld = -(-n_cols // 16) * 16
    out = torch.empty(1, rows, ld, device="cuda")
    gmax = torch.empty(1, rows, ld // 128, device="cuda")
    flag = torch.zeros(1, dtype=torch.int32, device="cuda")
    flops = 2 * 64 * 128 * sum(min(T, (s + 1) // 4) for s in range(s0, S))
    res = []
    variants = {
        "new": lambda: score_tile(q, k, w, out[:, :, :n_cols], s0=s0, T=T, ratio=4, offset=0, nonfinite=flag,
                                  group_max=gmax, group=128, num_stages=4, n_store=ld),
        "new CHECK_FINITE": lambda: score_tile(q, k, w, out[:, :, :n_cols], s0=s0, T=T, ratio=4, offset=0,
                                               nonfinite=flag, group_max=gmax, group=128, num_stages=4,
                                               check_finite=True, n_store=ld),
    }
    old_path = os.path.join(os.path.dirname(__file__), "..", ".dev", "score_tile_f7060e5.py")
    if os.path.exists(old_path):
        spec = importlib.util.spec_from_file_location("score_tile_old", old_path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        out_old = torch.empty(1, rows, n_cols, device="cuda")
        variants["f7060e5"] = lambda: old.score_tile(q, k, w, out_old, s0=s0, T=T, ratio=4, offset=0, group_max=gmax,
                                                     group=128, num_stages=4)
    for rep in range(2):
        for name, fn in variants.items():
            ms = do_bench(fn, warmup=20, rep=200, return_mode="median")
            res.append(dict(variant=name, rep=rep, ms=round(ms, 3), tflops=round(flops / ms / 1e9, 1)))
            print(json.dumps(res[-1]), flush=True)
    del q, k, w, out
    torch.cuda.empty_cache()
    return res


def check_memory():
    """Bytes allocated by full reductions over a strided bf16 q (the input check's building blocks)."""
    big = torch.randn(1, 65536, 128, 128, device="cuda", dtype=torch.bfloat16)
    q = big[:, :, ::2]
    out = {}
    for name, fn in {"aminmax": lambda: torch.aminmax(q), "amax_dims": lambda: q.amax(dim=(0, 1, 2, 3)),
                     "max": lambda: q.max(), "int8_max": lambda: q.view(torch.int8).max()}.items():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        out[name] = torch.cuda.max_memory_allocated() - before
    print(json.dumps(dict(check_memory=out)), flush=True)
    del big, q
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--budget", type=float, default=400)
    ap.add_argument("--only", default="ab,memory,cases,check,kernels,precompile")
    ap.add_argument("--variants", default="", help="comma-separated VARIANTS to time on the quick cases")
    ap.add_argument("--kernel-variants", default="",
                    help="comma-separated VARIANTS to profile (kernel times) on V3.2 32K and V4-Flash 1M")
    ap.add_argument("--big-variants", default="", help="comma-separated VARIANTS to time at V4-Flash 1M, bf16 and fp8")
    ap.add_argument("--cases", default="all", help="all | quick (the no-cliff pairs and ties8) | mini (65K pairs, V3.2 32K, ties8)")
    args = ap.parse_args()
    t_start = time.time()
    left = lambda: args.budget - (time.time() - t_start)
    out = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, rows=[], kernels=[], precompile=[])
    only = set(args.only.split(","))
    if "ab" in only:
        out["score_ab"] = score_kernel_ab()
    if "memory" in only:
        out["check_memory"] = check_memory()
    cases = [(("v4_flash", 65536), {}), (("v4_pro", 65536), {}), (("v3_2", 32768), {}), (("v4_flash", 131072), {}),
             (("v4_pro", 131072), {}), (("v4_flash", 262144), {}), (("v3_2", 131072), {}),
             (("v4_flash", 262144, "ties8"), {}),
             (("v4_flash", 1 << 20), dict(recall_rows=16, reps=2)), (("v4_flash", 1 << 20), dict(fp8=True, recall_rows=16, reps=2)),
             (("v4_flash", 262144, "recency"), {}), (("v3_2", 16384), {}), (("v4_flash", 32768), {})]
    mini = [(("v4_flash", 65536), {}), (("v4_pro", 65536), {}), (("v3_2", 32768), {}),
            (("v4_flash", 262144, "ties8"), {})]
    quick = [(("v4_flash", 65536), {}), (("v4_pro", 65536), {}), (("v3_2", 32768), {}), (("v4_flash", 131072), {}),
             (("v4_pro", 131072), {}), (("v4_flash", 262144), {}), (("v3_2", 131072), {}),
             (("v4_flash", 262144, "ties8"), {})]
    if "cases" in only:
        for args_, kw in {"quick": quick, "mini": mini}.get(args.cases, cases):
            if left() > 20:
                out["rows"].append(time_case(*args_, **kw))
    for variant in filter(None, args.variants.split(",")):
        for args_, kw in (mini if args.cases == "mini" else quick):
            if left() > 20:
                out["rows"].append(time_case(*args_, recall_rows=8, reps=2, variant=variant, **kw))
    for variant in filter(None, args.big_variants.split(",")):
        for fp8 in (False, True):
            if left() > 45:
                out["rows"].append(time_case("v4_flash", 1 << 20, fp8=fp8, recall_rows=8, reps=2, variant=variant))
    if "direct" in only and left() > 60:
        for model, S in [("v4_flash", 32768), ("v4_flash", 65536), ("v4_pro", 65536), ("v3_2", 32768)]:
            out["rows"].append(time_case(model, S, direct=0, recall_rows=16))
    if "check" in only and left() > 60:
        for S in (32768, 1 << 20):
            out["rows"].append(time_case("v4_flash", S, check=True, recall_rows=0, reps=2))
    if "kernels" in only and left() > 60:
        out["kernels"] += kernel_breakdown("v4_pro", 65536) + kernel_breakdown("v4_flash", 262144, "ties8")
        out["kernels"] += kernel_breakdown("v3_2", 32768) + kernel_breakdown("v4_flash", 65536)
    if "kernels1m" in only and left() > 60:
        out["kernels"] += kernel_breakdown("v4_flash", 1 << 20)
    for variant in filter(None, args.kernel_variants.split(",")):
        if left() > 60:
            out["kernels"] += kernel_breakdown("v3_2", 32768, variant=variant)
        if left() > 60:
            out["kernels"] += kernel_breakdown("v4_flash", 1 << 20, variant=variant)
    if "precompile" in only:
        for variant in ["default"] + [v for v in filter(None, args.variants.split(",")) if v != "default"]:
            if left() > 60:
                out["precompile"].append(precompile_cold("v3_2", 131072, False, variant))
    out["wall_s"] = time.time() - t_start
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    print("\n| variant | model | S | inputs | path | check | direct | time | TFLOP/s | peak GiB | recall_min |")
    print("|---|---|---:|---|---|---|---:|---:|---:|---:|---:|")
    for r in out["rows"]:
        t = r.get("time_s")
        print(f"| {r['variant']} | {r['model']} | {r['S']} | {r['inputs']} | {r['path']} | {r['check_finite']} | "
              f"{r['direct']} | "
              + (f"{t * 1e3:.1f} ms | {r['tflops']:.0f} | {r['peak_extra_gib']:.2f} | {r.get('recall_min', '')} |"
                 if t else f"{r.get('error', '')} |"))
    for r in out["precompile"]:
        print("precompile", r)
    print("wall", round(out["wall_s"], 1))


if __name__ == "__main__":
    main()
