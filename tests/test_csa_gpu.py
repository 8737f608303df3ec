"""GPU tests of the CSA step (``pytest -m gpu``): every TileLang variant and the Triton fallback
against the dense fp32 reference (relative error <= 1e-2 in bf16) at the V4 head shapes (Hq 64 with
topk 512, Hq 128 with topk 1024, D = 512, window 128: the kernels ``tools/csa_devcheck.py
precompile`` caches), on random indices, on adversarial ones (all ``-1``; duplicates -- allowed,
each occurrence is a key; selected rows that are also window rows of the same query; fewer
visible rows than ``topk``), for every S from 1 to 130 and sampled S up to 4,096, long sequences
checked on sampled row blocks, offsets, batches, sink on and off, a grid beyond 65,535 tokens and
a second GPU. Outputs are poisoned with NaN first so every element must be written. Plus
``csa_forward`` with the ``stream`` indexer."""
from __future__ import annotations

import os

import pytest
import torch

from streamindex.csa import csa_attention_reference, csa_forward, sparse_attention
from streamindex.csa.attention_tilelang import VARIANTS, tilelang_available
from .csa_fixtures import make_case, rel_err, sampled_rel_err

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

_TL_OK, _TL_WHY = tilelang_available() if torch.cuda.is_available() else (False, "needs a CUDA GPU")
_TL = pytest.mark.skipif(not _TL_OK, reason=_TL_WHY or "tilelang unavailable")
# CSA_TEST_VARIANTS=a,b restricts the TileLang variants (tools/csa_devcheck.py drops one that hung)
_VARIANTS = [v for v in os.environ.get("CSA_TEST_VARIANTS", ",".join(VARIANTS)).split(",") if v in VARIANTS]
IMPLS = [pytest.param(f"tilelang:{v}", marks=_TL) for v in _VARIANTS] + ["triton"]
DEFAULT_IMPLS = [pytest.param("tilelang", marks=_TL), "triton"]

FLASH = dict(Hq=64, D=512, topk=512, window=128)
PRO = dict(Hq=128, D=512, topk=1024, window=128)
CASES = {
    "flash_random": dict(FLASH, S=300, T=2000, causal=False, neg_frac=0.1),
    "pro_random": dict(PRO, S=96, T=3000, causal=False, neg_frac=0.1),
    "flash_few_visible": dict(FLASH, S=700, T=175, ratio=4, neg_frac=0.0),     # early queries: -1 padding
    "pro_all_minus_one": dict(PRO, S=40, T=50, neg_frac=1.0),                  # window only
    "flash_duplicates": dict(FLASH, S=200, T=900, causal=False, dup_frac=0.3),
    "pro_duplicates": dict(PRO, S=64, T=1500, causal=False, dup_frac=0.3),
    "flash_window_overlap": dict(FLASH, S=260, offset=40, kv_shared=True),     # compressed rows = window rows
    "flash_offset_chunk": dict(FLASH, S=64, T=800, offset=3000, ratio=4),
    "flash_no_sink": dict(FLASH, S=128, T=700, sink=False, causal=False),
    "pro_batch2": dict(PRO, B=2, S=70, T=1100, offset=30, causal=False),
}


def _check(impl, case, seed=7, tol=1e-2):
    q, kvc, kvw, sk, idx, off, win = make_case(seed=seed, device="cuda", **case)
    ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
    out = torch.full(q.shape, float("nan"), dtype=q.dtype, device="cuda")
    got = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl, out=out)
    torch.cuda.synchronize()
    assert got is out
    err = rel_err(got, ref)
    assert err <= tol, f"{impl}: rel err {err:.2e}"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(CASES))
def test_sparse_attention_matches_reference(impl, name):
    _check(impl, CASES[name])


@pytest.mark.parametrize("impl", DEFAULT_IMPLS)
def test_every_short_sequence(impl):
    """Every S from 1 to 130 (below, at and past the window and one KV block) from position 0."""
    for S in range(1, 131):
        _check(impl, dict(FLASH, S=S, T=max(1, S // 4), ratio=4, neg_frac=0.05), seed=S)


@pytest.mark.parametrize("impl", DEFAULT_IMPLS)
@pytest.mark.parametrize("S", [255, 513, 1000, 2049, 4096])
def test_sampled_lengths(impl, S):
    _check(impl, dict(PRO if S % 2 else FLASH, S=S, T=max(1, S // 4), ratio=4), seed=S)


@pytest.mark.parametrize("impl", DEFAULT_IMPLS)
def test_long_sequence_sampled_rows(impl):
    """65,536 queries at V4-Flash dims, T = 16,384: the kernel on every row, the reference on sampled
    row blocks (first, last and between)."""
    q, kvc, kvw, sk, idx, off, win = make_case(seed=5, device="cuda", S=65536, T=16384, ratio=4, **FLASH)
    out = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl)
    assert sampled_rel_err(out, q, kvc, kvw, sk, idx, off, win, blocks=5, rows=16) <= 1e-2


@pytest.mark.parametrize("impl", DEFAULT_IMPLS)
def test_grid_beyond_65535_tokens(impl):
    """70,000 tokens: more than CUDA's 65,535 limit on grid y / z (the Triton grid is flat, the
    TileLang ones are 1-D); the last rows must be computed."""
    q, kvc, kvw, sk, idx, off, win = make_case(seed=9, device="cuda", S=70000, T=600, causal=False, **FLASH)
    out = torch.full(q.shape, float("nan"), dtype=q.dtype, device="cuda")
    sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl, out=out)
    assert sampled_rel_err(out, q, kvc, kvw, sk, idx, off, win, blocks=3, rows=8) <= 1e-2


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("impl", DEFAULT_IMPLS)
def test_device_guard_second_gpu(impl):
    """Tensors on cuda:1 while cuda:0 is current: the kernels must run on cuda:1."""
    q, kvc, kvw, sk, idx, off, win = make_case(seed=10, device="cuda:1", S=200, T=900, causal=False, **FLASH)
    with torch.cuda.device(0):
        out = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl)
    torch.cuda.synchronize(1)
    ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
    assert out.device == q.device and rel_err(out, ref) <= 1e-2


@pytest.mark.parametrize("impl", DEFAULT_IMPLS)
def test_sparse_attention_deterministic(impl):
    q, kvc, kvw, sk, idx, off, win = make_case(seed=8, device="cuda", **CASES["flash_random"])
    a = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl)
    b = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl)
    assert torch.equal(a, b)


@pytest.mark.parametrize("impl", DEFAULT_IMPLS)
def test_csa_forward_stream_indexer(impl):
    from streamindex import indexer_topk, list_paths
    from streamindex.inputs import make_inputs

    if "stream" not in list_paths():
        pytest.skip("stream indexer path not registered")
    S, ratio, topk, Hq, D = 3072, 4, 512, 64, 512
    xq, ik, iw = make_inputs(S, 64, 128, ratio=ratio, device="cuda", seed=3)
    T = ik.shape[1]
    g = torch.Generator(device="cuda").manual_seed(4)
    q = torch.randn(1, S, Hq, D, device="cuda", generator=g).bfloat16()
    kvc = torch.randn(1, T, D, device="cuda", generator=g).bfloat16()
    kvw = torch.randn(1, S, D, device="cuda", generator=g).bfloat16()
    sink = torch.randn(Hq, device="cuda", generator=g)
    tm, ev = {}, []
    o = csa_forward(xq, ik, iw, q, kvc, kvw, sink, topk=topk, ratio=ratio, chunk=512, index_chunk=1024,
                    attn_impl=impl, indexer_path="stream", timings=tm, timing_events=ev)
    idx = indexer_topk(xq, ik, iw, topk, ratio=ratio, path="stream")
    ref = csa_attention_reference(q, kvc, kvw, sink, idx, out_dtype=torch.float32)
    assert rel_err(o, ref) <= 1e-2
    assert tm["indexer_s"] > 0 and tm["attn_s"] > 0
    from streamindex.csa.forward import stage_seconds

    st = stage_seconds(ev)
    assert st["attn_s"] == pytest.approx(tm["attn_s"], rel=1e-6) and len(ev) == 3 + 6  # 3 indexer + 6 attn chunks
