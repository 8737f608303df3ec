"""One device call: compile, test and time the CSA step, print a short table, write logs to ``$OUT``.

    . .dev/prelude.sh && python3 -m streamindex.csa.devcheck [--stages compile,tests,attn,e2e] [--budget 330]

Stages (each guarded, skipped when the time budget is spent):

* ``compile``: build the TileLang kernels used below in a spawn pool (fills TileLang's disk cache);
* ``tests``: ``pytest -m gpu tests/test_csa_gpu.py``;
* ``attn``: attention alone at V4-Flash / V4-Pro shapes (random indices over ``T`` compressed rows,
  queries late in the sequence so every query has ``topk`` + ``window`` rows), TileLang tile
  configs vs the Triton fallback: median CUDA-event time, TFLOP/s, fraction of the floor;
* ``e2e``: :func:`streamindex.csa.bench.measure_csa_cell` at a few S.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

T0 = time.time()
OUT = os.environ.get("OUT", "/tmp/csa_out")
os.makedirs(OUT, exist_ok=True)
LOG = open(os.path.join(OUT, "devcheck.log"), "a")

FLASH = dict(H=64, D=128, topk=512, ratio=4, attn_heads=64, head_dim=512, rope_dim=64, window=128)
PRO = dict(H=64, D=128, topk=1024, ratio=4, attn_heads=128, head_dim=512, rope_dim=64, window=128)
TL_CONFIGS = [
    dict(block_h=64, block_i=64, num_stages=2, threads=256),
    dict(block_h=64, block_i=64, num_stages=2, threads=256, idx_smem=True),
]
TRITON_CONFIGS = [dict(block_n=64, num_warps=8, num_stages=2)]
# measured 2026-12-01 (first call), V4-Flash 8192 queries: tilelang bi64/s2/t256 2.57 ms, bi32/s3 3.90,
# bi64/t512 3.84, bi32/s2 3.38; triton bn32 4.07, bn64 2.92 -- the losers are no longer timed.


def log(*a):
    msg = " ".join(str(x) for x in a)
    print(msg, flush=True)
    LOG.write(msg + "\n")
    LOG.flush()


def elapsed():
    return time.time() - T0


def _compile_one(args):
    H, D, K, W, sl2, cfg = args
    t = time.time()
    try:
        from streamindex.csa.attention_tilelang import _build

        _build(H, D, K, W, sl2, cfg["block_h"], cfg["block_i"], cfg["num_stages"], cfg["threads"],
               bool(cfg.get("idx_smem", False)))
        return args, time.time() - t, None
    except Exception as e:  # noqa: BLE001
        return args, time.time() - t, f"{type(e).__name__}: {e}"[:3000]


def stage_compile():
    import multiprocessing as mp

    from streamindex.csa.attention_tilelang import LOG2E

    sl2 = float(512 ** -0.5 * LOG2E)
    jobs = [(64, 512, 64, 128, sl2, TL_CONFIGS[0]), (128, 512, 128, 128, sl2, TL_CONFIGS[0])]
    jobs += [(64, 512, 512, 128, sl2, c) for c in TL_CONFIGS]
    jobs += [(128, 512, 1024, 128, sl2, c) for c in TL_CONFIGS]
    with mp.get_context("spawn").Pool(min(len(jobs), 10)) as pool:
        for args, dt, err in pool.imap_unordered(_compile_one, jobs):
            log(f"compile H={args[0]} topk={args[2]} cfg={args[5]}: {dt:.1f}s {'OK' if err is None else 'FAILED ' + err}")


def stage_tests():
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_csa_gpu.py", "-x", "-p", "no:cacheprovider",
           "-o", "addopts="]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    open(os.path.join(OUT, "pytest_gpu.log"), "w").write(r.stdout + r.stderr)
    tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
    log("pytest rc", r.returncode, *["\n  " + x for x in tail])


def _bench(fn, reps=10, warm=2):
    import torch

    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    ts.sort()
    return ts[len(ts) // 2], ts


def stage_attn(rows):
    import torch

    from streamindex.csa import sparse_attention
    from streamindex.csa.attention_tilelang import sparse_attention_tilelang
    from streamindex.csa.bench import attention_floor
    from streamindex.csa.checks import attention_flops_bytes

    for name, model, Sq in (("flash", FLASH, 8192), ("pro", PRO, 4096)):
        Hq, D, K, W = model["attn_heads"], 512, model["topk"], model["window"]
        T = 65536
        offset = T * model["ratio"] - Sq  # late queries: all see >= topk compressed rows and a full window
        g = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(1, Sq, Hq, D, device="cuda", generator=g).bfloat16()
        kvc = torch.randn(1, T, D, device="cuda", generator=g).bfloat16()
        kvw = torch.randn(1, offset + Sq, D, device="cuda", generator=g).bfloat16()
        sink = torch.randn(Hq, device="cuda", generator=g)
        idx = torch.randint(0, T, (1, Sq, K), device="cuda", generator=g, dtype=torch.int32)
        out = torch.empty_like(q)
        flops, gathered, qo = attention_flops_bytes(Sq, Hq=Hq, D=D, topk=K, ratio=model["ratio"], window=W,
                                                    offset=offset)
        fl = attention_floor(1, model)  # for the ceilings only
        floor = max(flops / fl["matmul_flops"], (gathered + qo) / fl["copy_bytes_per_s"])
        variants = [("tilelang", c) for c in TL_CONFIGS] + [("triton", c) for c in TRITON_CONFIGS]
        for impl, cfg in variants:
            if elapsed() > BUDGET * 0.7:
                log("attn: budget reached, skipping", impl, cfg)
                continue
            try:
                if impl == "tilelang":
                    fn = lambda: sparse_attention_tilelang(q, kvc, kvw, sink, idx, offset=offset, window=W, out=out,  # noqa: E731
                                                           check_indices=False, config=cfg)
                else:
                    from streamindex.csa.attention_triton import sparse_attention_triton

                    fn = lambda: sparse_attention_triton(q, kvc, kvw, sink, idx, offset=offset, window=W, out=out,  # noqa: E731
                                                         check_indices=False, block_n=cfg["block_n"],
                                                         num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
                med, ts = _bench(fn)
                row = dict(stage="attn", model=name, Sq=Sq, T=T, impl=impl, cfg=cfg, time_s=med,
                           spread=(ts[-1] - ts[0]) / med, tflops=flops / med / 1e12, frac_floor=floor / med,
                           floor_s=floor, bound="flops" if flops / fl["matmul_flops"] > (gathered + qo) / fl["copy_bytes_per_s"] else "bytes",
                           gather_tbps=(gathered + qo) / med / 1e12)
            except Exception as e:  # noqa: BLE001
                row = dict(stage="attn", model=name, impl=impl, cfg=cfg, error=f"{type(e).__name__}: {e}"[:1500])
            rows.append(row)
            log(json.dumps(row))
        # cross-check tilelang / triton against the reference on this big case: first 256 queries,
        # distinct indices per row (the reference's dense mask counts a repeated index once)
        try:
            from streamindex.csa import csa_attention_reference

            n = 256
            ix = torch.rand(1, n, T, device="cuda", generator=g).topk(K, dim=-1).indices.int()
            r = csa_attention_reference(q[:, :n], kvc, kvw, sink, ix, offset=offset, window=W, out_dtype=torch.float32)
            errs = {}
            for impl in ("tilelang", "triton"):
                o = sparse_attention(q[:, :n], kvc, kvw, sink, ix, offset=offset, window=W, attn_impl=impl)
                errs[impl] = float((o.float() - r).norm() / r.norm())
            log(f"attn {name} big-case rel err vs reference (distinct indices): {errs}")
            rows.append(dict(stage="check", model=name, errs=errs))
        except Exception as e:  # noqa: BLE001
            log("attn cross-check failed", repr(e)[:1000])
        del q, kvc, kvw, idx, out
        torch.cuda.empty_cache()


def stage_e2e(rows, cells):
    import torch

    from streamindex.csa.bench import measure_csa_cell

    for name, S, impl, reps in cells:
        if elapsed() > BUDGET * 0.9:
            log("e2e: budget reached, skipping", name, S, impl)
            continue
        model = dict(FLASH if name == "flash" else PRO)
        try:
            row = measure_csa_cell(S=S, model=model, attn_impl=impl, device="cuda", seed=0, repeats=reps, warmup=1)
            row.update(stage="e2e", model=name)
        except Exception as e:  # noqa: BLE001
            row = dict(stage="e2e", model=name, S=S, attn_impl=impl, error=f"{type(e).__name__}: {e}"[:1500])
        rows.append(row)
        log(json.dumps(row, default=str))
        torch.cuda.empty_cache()


def main():
    global BUDGET
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", default="compile,tests,attn,e2e")
    ap.add_argument("--budget", type=float, default=330.0)
    ap.add_argument("--e2e", default="flash:65536:tilelang:2,flash:65536:triton:2,pro:65536:tilelang:2,"
                                     "flash:1048576:tilelang:1,pro:1048576:tilelang:1")
    args = ap.parse_args()
    BUDGET = args.budget
    import torch

    log("env:", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda",
        "python", sys.version.split()[0])
    try:
        import tilelang
        import triton

        log("tilelang", tilelang.__version__, "triton", triton.__version__)
    except Exception as e:  # noqa: BLE001
        log("import problem:", repr(e))
    rows = []
    stages = args.stages.split(",")
    for st in stages:
        t = time.time()
        try:
            if st == "compile":
                stage_compile()
            elif st == "tests":
                stage_tests()
            elif st == "attn":
                stage_attn(rows)
            elif st == "e2e":
                cells = []
                for c in args.e2e.split(","):
                    n, S, impl, reps = c.split(":")
                    cells.append((n, int(S), impl, int(reps)))
                stage_e2e(rows, cells)
        except Exception as e:  # noqa: BLE001
            log(f"stage {st} failed: {type(e).__name__}: {e}")
        log(f"-- stage {st}: {time.time() - t:.1f}s (total {elapsed():.1f}s)")
    json.dump(rows, open(os.path.join(OUT, "devcheck_rows.json"), "w"), indent=1, default=str)
    log("\n==== summary ====")
    for r in rows:
        if r["stage"] == "check":
            log(f"check {r['model']}: {r['errs']}")
        elif "error" in r:
            log(f"{r['stage']:5s} {r.get('model')} {r.get('impl', r.get('attn_impl'))} {r.get('cfg', r.get('S'))}: ERROR {r['error'][:200]}")
        elif r["stage"] == "attn":
            log(f"attn  {r['model']:5s} {r['impl']:8s} {str(r['cfg']):70s} {r['time_s'] * 1e3:8.3f} ms "
                f"{r['tflops']:6.1f} TFLOP/s  frac_floor {r['frac_floor']:.2f} ({r['bound']})  spread {r['spread']:.2f}")
        else:
            log(f"e2e   {r['model']:5s} S={r['S']:8d} {r['attn_impl_resolved']:8s} time {r['time_s']:.3f}s "
                f"idx {r['time_indexer_s']:.3f}s attn {r['time_attn_s']:.3f}s  x{r['e2e_over_indexer']:.2f} "
                f"attn {r['attn_tflops']:.1f} TFLOP/s frac_floor {r['attn_frac_floor']:.2f} "
                f"peak_extra {r['peak_extra_gib']:.2f} GiB")


BUDGET = 330.0

if __name__ == "__main__":
    main()
