"""Context-parallel indexer top-k on several GPUs: a complete, runnable example.

    torchrun --standalone --nproc-per-node 2 tools/distributed_example.py --S 1048576
    torchrun --standalone --nproc-per-node 2 tools/distributed_example.py --S 16777216 --fp8 --rows 8
    # CPU (gloo, Triton interpreter; tiny dims):
    TRITON_INTERPRET=1 torchrun --standalone --nproc-per-node 2 tools/distributed_example.py --device cpu \
        --S 64 --H 4 --D 16 --topk 8

Every rank draws only its own query rows (as a model's context-parallel prefill would produce
them) and all compressed keys (the same seed on every rank), runs
``indexer_topk_distributed`` on its shard, and prints its time and the slowest rank's; ``--rows``
checks that many sampled rows per rank against the fp64 oracle (tie-aware recall).
"""
from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--S", type=int, default=1 << 20)
    ap.add_argument("--H", type=int, default=64)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--topk", type=int, default=512)
    ap.add_argument("--ratio", type=int, default=4)
    ap.add_argument("--scheme", choices=["contiguous", "zigzag"], default="zigzag")
    ap.add_argument("--fp8", action="store_true", help="e4m3 q/k with per-token scales (path stream_fp8)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--rows", type=int, default=0, help="sampled rows per rank checked against the fp64 oracle")
    args = ap.parse_args()

    from streamindex.distributed import keep_multicast_off

    keep_multicast_off()  # NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1 unless already set
    import torch
    import torch.distributed as dist

    import streamindex as si
    from streamindex.distributed import indexer_topk_distributed, shard_bounds
    from streamindex.metrics import tie_aware_recall
    from streamindex.quant import quantize_rows_fp8

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if args.device == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)  # the caller's job: every rank on its own GPU
        dev = torch.device("cuda", local)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dev = torch.device("cpu")
        dist.init_process_group("gloo")
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    T = args.S // args.ratio
    shards = shard_bounds(args.S, world, ratio=args.ratio, T=T, scheme=args.scheme)
    mine = shards[rank]
    n_local = sum(s1 - s0 for s0, s1 in mine)

    # All keys (same seed everywhere); this rank's query rows (its own seed).
    k = si.make_inputs(1, 1, args.D, T=T, ratio=args.ratio, dtype=dtype, device=dev, seed=0)[1]
    kw = {}
    if args.fp8:  # drawn and quantised in slices: no bf16 q of the whole shard
        q, _, w, qs, _ = si.make_fp8_inputs(n_local, args.H, args.D, T=1, ratio=args.ratio, device=dev, seed=1 + rank)
        k, ks = quantize_rows_fp8(k)
        kw = dict(path="stream_fp8", q_scale=qs, k_scale=ks)
    else:
        q, _, w = si.make_inputs(n_local, args.H, args.D, T=1, ratio=args.ratio, dtype=dtype, device=dev,
                                 seed=1 + rank)

    def call():
        return indexer_topk_distributed(q, k, w, args.topk, ratio=args.ratio, S=args.S, scheme=args.scheme,
                                        check_finite=False, **kw)

    call()  # warm-up (compiles the kernels)
    times = []
    for _ in range(2):
        dist.barrier()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            idx = call()
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1) / 1e3)
        else:
            t0 = time.perf_counter()
            idx = call()
            times.append(time.perf_counter() - t0)
    t = torch.tensor([min(times)], dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    msg = (f"rank {rank}: rows {mine} ({n_local}) idx {tuple(idx.shape)} in {min(times):.4f} s; "
           f"slowest rank {t.item():.4f} s")
    if args.rows:
        recs, base = [], 0
        for s0, s1 in mine:
            n = s1 - s0
            rows = torch.linspace(0, n - 1, max(1, args.rows // len(mine))).round().long().unique().to(dev)
            sl = slice(base, base + n)
            qs_r = kw["q_scale"][:, sl] if args.fp8 else None
            recs.append(tie_aware_recall(idx[:, sl], q[:, sl], k, w[:, sl], topk=args.topk, ratio=args.ratio,
                                         offset=s0, rows=rows, q_scale=qs_r, k_scale=kw.get("k_scale")))
            base += n
        msg += f"; recall min {min(float(r.min()) for r in recs):.4f} on sampled rows"
    print(msg, flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
