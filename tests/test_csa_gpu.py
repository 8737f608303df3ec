"""GPU tests of the CSA step (``pytest -m gpu``): the TileLang kernel and the Triton fallback against
the dense fp32 reference (relative error <= 1e-2 in bf16) at V4 head shapes, on random inputs with
``-1`` indices, fewer visible entries than ``topk``, S below the window, offsets, sink on and off;
outputs are poisoned with NaN first so every element must be written. Plus ``csa_forward`` with
the ``stream`` indexer."""
from __future__ import annotations

import pytest
import torch

from streamindex.csa import csa_attention_reference, csa_forward, sparse_attention
from streamindex.csa.attention_tilelang import tilelang_available
from streamindex.csa.testing import make_case, rel_err

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

_TL_OK, _TL_WHY = tilelang_available() if torch.cuda.is_available() else (False, "needs a CUDA GPU")
IMPLS = [pytest.param("tilelang", marks=pytest.mark.skipif(not _TL_OK, reason=_TL_WHY or "tilelang unavailable")),
         "triton"]

# (all share D = 512, window = 128: two TileLang compiles, Hq 64 / topk 64 and Hq 128 / topk 128)
CASES = {
    "flash_heads": dict(S=300, Hq=64, D=512, T=400, topk=64, window=128, causal=False, neg_frac=0.1),
    "pro_heads_topk_pad": dict(S=96, Hq=128, D=512, T=300, topk=100, window=128, causal=False),
    "few_visible": dict(S=260, Hq=64, D=512, T=80, topk=64, window=128, ratio=4, neg_frac=0.0),
    "s_below_window": dict(S=50, Hq=64, D=512, T=20, topk=64, window=128, ratio=4),
    "offset_chunk": dict(S=64, Hq=64, D=512, T=400, topk=64, window=128, offset=1000, ratio=4),
    "no_sink": dict(S=128, Hq=64, D=512, T=200, topk=64, window=128, sink=False, causal=False),
    "all_minus_one": dict(S=40, Hq=64, D=512, T=50, topk=64, window=128, neg_frac=1.0),
    "batch2": dict(B=2, S=70, Hq=64, D=512, T=90, topk=64, window=128, offset=30),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(CASES))
def test_sparse_attention_matches_reference(impl, name):
    q, kvc, kvw, sk, idx, off, win = make_case(seed=7, device="cuda", **CASES[name])
    ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
    out = torch.full(q.shape, float("nan"), dtype=q.dtype, device="cuda")
    got = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl, out=out)
    torch.cuda.synchronize()
    assert got is out
    err = rel_err(got, ref)
    assert err <= 1e-2, f"{impl} {name}: rel err {err:.2e}"


@pytest.mark.parametrize("impl", IMPLS)
def test_sparse_attention_deterministic(impl):
    q, kvc, kvw, sk, idx, off, win = make_case(seed=8, device="cuda", **CASES["flash_heads"])
    a = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl)
    b = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl)
    assert torch.equal(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_csa_forward_stream_indexer(impl):
    from streamindex import indexer_topk, list_paths
    from streamindex.inputs import make_inputs

    if "stream" not in list_paths():
        pytest.skip("stream indexer path not registered")
    S, ratio, topk, Hq, D = 1536, 4, 128, 64, 512
    xq, ik, iw = make_inputs(S, 64, 128, ratio=ratio, device="cuda", seed=3)
    T = ik.shape[1]
    g = torch.Generator(device="cuda").manual_seed(4)
    q = torch.randn(1, S, Hq, D, device="cuda", generator=g).bfloat16()
    kvc = torch.randn(1, T, D, device="cuda", generator=g).bfloat16()
    kvw = torch.randn(1, S, D, device="cuda", generator=g).bfloat16()
    sink = torch.randn(Hq, device="cuda", generator=g)
    tm = {}
    o = csa_forward(xq, ik, iw, q, kvc, kvw, sink, topk=topk, ratio=ratio, chunk=256, index_chunk=512,
                    attn_impl=impl, indexer_path="stream", timings=tm)
    idx = indexer_topk(xq, ik, iw, topk, ratio=ratio, path="stream")
    ref = csa_attention_reference(q, kvc, kvw, sink, idx, out_dtype=torch.float32)
    assert rel_err(o, ref) <= 1e-2
    assert tm["indexer_s"] > 0 and tm["attn_s"] > 0
