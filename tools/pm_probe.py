"""Device probe for ``partition_merge``'s head reduction: which torch formulation of
``Σ_h w · relu(logits)`` over a [r, H, c] tile is fastest, and the path at 32K / 262K."""
import time

import torch
from triton.testing import do_bench

import streamindex as si
from streamindex.paths.torch_scores import logits_fp32

H, D = 64, 128


def main():
    for r, c in [(512, 4096), (256, 8192), (1024, 2048), (128, 8192)]:
        q = torch.randn(1, r * H, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, c, D, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(1, r, H, device="cuda")
        lg = logits_fp32(q, k).view(1, r, H, c)
        t_gemm = do_bench(lambda: logits_fp32(q, k), return_mode="median")
        t_relu = do_bench(lambda: lg.relu_(), return_mode="median")
        t_mm = do_bench(lambda: torch.matmul(w.unsqueeze(2), lg), return_mode="median")
        t_mulsum = do_bench(lambda: (lg * w[..., None]).sum(2), return_mode="median")
        t_einsum = do_bench(lambda: torch.einsum("brhc,brh->brc", lg, w), return_mode="median")
        lgt = lg.transpose(2, 3)  # [1, r, c, H] view
        t_mv = do_bench(lambda: torch.matmul(lg.transpose(2, 3), w.unsqueeze(-1)), return_mode="median")
        gb = r * H * c * 4 / 1e9
        print(dict(r=r, c=c, tile_gb=round(gb, 3), gemm_ms=t_gemm, relu_ms=t_relu, mm_ms=t_mm,
                   mulsum_ms=t_mulsum, einsum_ms=t_einsum, mv_ms=t_mv), flush=True)
        del lg, q, k
        torch.cuda.empty_cache()
    for S, cq, ct in [(32768, 512, 4096), (32768, 256, 8192), (32768, 1024, 2048), (262144, 512, 4096),
                      (262144, 256, 8192)]:
        qq, kk, ww = si.make_inputs(S, H, D, device="cuda")
        si.indexer_topk(qq[:, :4096], kk, ww[:, :4096], 512, path="partition_merge", chunk_q=cq, chunk_t=ct)
        torch.cuda.synchronize()
        t = time.perf_counter()
        si.indexer_topk(qq, kk, ww, 512, path="partition_merge", chunk_q=cq, chunk_t=ct)
        torch.cuda.synchronize()
        print(dict(S=S, chunk_q=cq, chunk_t=ct, time_s=time.perf_counter() - t), flush=True)
        del qq, kk, ww
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
