"""Device probe for the ``stream`` kernel work (issue 4): matmul ceiling, score-tile configs on
one representative chunk, the top-k cost on that chunk, and whole-path times side by side.
Prints a table; ``--json`` writes the numbers. Not a test: run on the GPU machine."""
from __future__ import annotations

import argparse
import json
import time

import torch
from triton.testing import do_bench

import streamindex as si
from streamindex.kernels.score_tile import score_tile
from streamindex.select import exact_topk

H, D, TOPK, RATIO = 64, 128, 512, 4


def inputs(S, fp8_input=False, seed=1):
    """``(q, k, w, scale kwargs)`` at V4-Flash dims on the GPU: bf16, or e4m3 with per-token scales."""
    if fp8_input:
        q, k, w, qs, ks = si.make_fp8_inputs(S, H, D, ratio=RATIO, device="cuda", seed=seed)
        return q, k, w, dict(q_scale=qs, k_scale=ks)
    return (*si.make_inputs(S, H, D, ratio=RATIO, device="cuda", seed=seed), {})


def matmul_tflops():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = do_bench(lambda: a @ b, warmup=100, rep=300, return_mode="median")
    return 2 * 8192 ** 3 / ms / 1e9


def kernel_configs(S, rows, configs, fp8=False):
    q, k, w, _ = inputs(S, seed=0)
    ks = None
    if fp8:
        from streamindex.quant import quantize_fp8
        q, k, qs, ks = quantize_fp8(q, k)
        w = (w * qs).contiguous()
    n_cols = (S) // RATIO
    out = torch.empty(1, rows, n_cols, device="cuda")
    s0 = S - rows
    pairs = sum(min(n_cols, (s + 1) // RATIO) for s in range(s0, S))
    res = []
    for bs, bt, nw, ns in configs:
        fn = lambda: score_tile(q, k, w, out, s0=s0, T=k.shape[1], ratio=RATIO, offset=0, k_scale=ks,
                                block_s=bs, block_t=bt, num_warps=nw, num_stages=ns)
        try:
            ms = do_bench(fn, warmup=25, rep=100, return_mode="median")
            res.append(dict(fp8=fp8, cfg=(bs, bt, nw, ns), ms=ms, tflops=2 * H * D * pairs / ms / 1e9))
        except Exception as e:  # a config that does not compile is a recorded row
            res.append(dict(fp8=fp8, cfg=(bs, bt, nw, ns), error=repr(e)[:200]))
        print(res[-1], flush=True)
    v = out.view(rows, n_cols)
    t_topk = do_bench(lambda: torch.topk(v, TOPK, dim=1), warmup=10, rep=50, return_mode="median")
    t_exact = do_bench(lambda: exact_topk(v, TOPK), warmup=10, rep=50, return_mode="median")
    print(dict(chunk=(rows, n_cols), gib=v.numel() * 4 / 2**30, torch_topk_ms=t_topk, exact_topk_ms=t_exact), flush=True)
    return res


def time_path(path, S, reps=3, topk=TOPK, fp8_input=False, **kw):
    q, k, w, scales = inputs(S, fp8_input)
    kw.update(scales)
    torch.cuda.synchronize()
    try:
        if reps > 1:
            si.indexer_topk(q, k, w, topk, ratio=RATIO, path=path, **kw)  # warm-up / compile
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        ts = []
        for _ in range(reps):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            idx = None
            e0.record()
            idx = si.indexer_topk(q, k, w, topk, ratio=RATIO, path=path, **kw)
            e1.record()
            torch.cuda.synchronize()
            ts.append(e0.elapsed_time(e1) / 1e3)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        ts.sort()
        from streamindex.metrics import tie_aware_recall
        rows = torch.cat([torch.arange(4), torch.arange(S - 16, S), torch.randint(0, S, (40,))])
        rec = tie_aware_recall(idx, q, k, w, topk=topk, ratio=RATIO, rows=rows, q_scale=kw.get("q_scale"),
                               k_scale=kw.get("k_scale"))
        kw.pop("q_scale", None), kw.pop("k_scale", None)
        row = dict(path=path, S=S, topk=topk, time_s=ts[len(ts) // 2], peak_extra_gib=peak,
                   tflops=si.metrics.useful_flops(S, k.shape[1], H, D, RATIO) / ts[len(ts) // 2] / 1e12,
                   recall_min=rec.min().item(), **kw)
    except torch.OutOfMemoryError:
        row = dict(path=path, S=S, status="oom")
    del q, k, w
    torch.cuda.empty_cache()
    print(row, flush=True)
    return row


def kernel_breakdown(path, S, topk=TOPK, fp8_input=False, top=12):
    """CUDA time per kernel name over one call (torch.profiler), largest first."""
    from torch.profiler import ProfilerActivity, profile
    q, k, w, kw = inputs(S, fp8_input)
    si.indexer_topk(q, k, w, topk, ratio=RATIO, path=path, **kw)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        si.indexer_topk(q, k, w, topk, ratio=RATIO, path=path, **kw)
        torch.cuda.synchronize()
    rows = sorted(((e.key, e.device_time_total / 1e3, e.count) for e in prof.key_averages()),
                  key=lambda r: -r[1])[:top]
    for name, ms, n in rows:
        print(f"  {path} S={S} {ms:10.2f} ms  x{n:6d}  {name[:90]}", flush=True)
    return [dict(path=path, S=S, kernel=n, ms=ms, count=c) for n, ms, c in rows]


def gather_blocks(S, rows, blocks=(1024, 2048, 4096)):
    """The three selection kernels on the last ``rows`` x S/4 chunk of a real problem; the gather
    at several program widths (entries per program)."""
    from streamindex.kernels.candidates import gather_candidates, kth_group_max, select_candidates
    from streamindex.paths.stream import _candidate_capacity, _group_size
    q, k, w, _ = inputs(S, seed=0)
    n_cols, s0 = S // RATIO, S - rows
    group = _group_size((s0 + 1) // RATIO, TOPK, 128)
    ws = torch.empty(1, rows, n_cols, device="cuda")
    gmax = torch.empty(1, rows, n_cols // group, device="cuda")
    score_tile(q, k, w, ws, s0=s0, T=n_cols, ratio=RATIO, offset=0, group_max=gmax, group=group,
               block_s=64, block_t=128, num_warps=4, num_stages=4)
    ws, gmax, cap = ws[0], gmax[0], _candidate_capacity(TOPK)
    th = kth_group_max(gmax, TOPK)
    res = dict(rows=rows, n_cols=n_cols, group=group,
               kth_ms=do_bench(lambda: kth_group_max(gmax, TOPK), warmup=10, rep=50, return_mode="median"))
    for block in blocks:
        res[f"gather_{block}_ms"] = do_bench(lambda: (th.count.zero_(), gather_candidates(ws, th, group, cap, block=block)),
                                             warmup=10, rep=50, return_mode="median")
    th.count.zero_()
    cv, ci = gather_candidates(ws, th, group, cap)
    out_idx = torch.empty(1, rows, TOPK, dtype=torch.int32, device="cuda")
    res["select_ms"] = do_bench(lambda: select_candidates(cv, ci, th.count, out_idx, None, s0=0, T=n_cols,
                                                          ratio=RATIO, offset=0),
                                warmup=10, rep=50, return_mode="median")
    res["count_mean"], res["count_max"] = th.count.float().mean().item(), th.count.max().item()
    res["live_groups_mean"], res["live_groups_max"] = th.n_live.float().mean().item(), th.n_live.max().item()
    # Bytes the gather must read: the live groups of the workspace and their ids.
    live_bytes = th.n_live.sum().item() * (group * 4 + 4)
    res["gather_live_gbps_at_2048"] = live_bytes / res["gather_2048_ms"] / 1e6
    print(res, flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-paths", action="store_true")
    ap.add_argument("--skip-kernels", action="store_true")
    ap.add_argument("--selection", action="store_true",
                    help="only: kernel breakdown at 256K and the selection kernels on its last chunk")
    args = ap.parse_args()
    t0 = time.time()
    out = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__)
    out["matmul_tflops"] = matmul_tflops()
    print("bf16 matmul TFLOP/s", out["matmul_tflops"], flush=True)
    if args.selection:
        out["breakdown"] = (kernel_breakdown("stream", 262144)
                            + kernel_breakdown("stream_fp8", 262144, fp8_input=True))
        out["gather_blocks"] = gather_blocks(262144, 1024)
        args.skip_kernels = args.skip_paths = True
    cfgs = [(64, 128, 4, 3), (64, 128, 4, 4), (64, 64, 4, 3), (64, 128, 8, 3), (64, 256, 4, 3)]
    if not args.skip_kernels:
        out["kernel"] = kernel_configs(262144, 256, cfgs)
        out["kernel_fp8"] = kernel_configs(262144, 256, [(64, 128, 4, 3), (64, 256, 4, 3), (128, 128, 4, 3),
                                                         (64, 128, 8, 4)], fp8=True)
    rows = []
    if not args.skip_paths:
        for path, S, reps, extra in [("stream", 32768, 5, {}), ("stream", 262144, 3, {}),
                                     ("stream", 1 << 20, 2, {}), ("stream", 1 << 20, 2, dict(topk=1024)),
                                     ("stream_fp8", 1 << 20, 2, dict(fp8_input=True)),
                                     ("stream", 1 << 22, 1, {}), ("stream_fp8", 1 << 23, 1, dict(fp8_input=True))]:
            rows.append(time_path(path, S, reps, **extra))
    out["paths"] = rows
    out["wall_s"] = time.time() - t0
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1, default=str)
    print("wall", out["wall_s"])


if __name__ == "__main__":
    main()
