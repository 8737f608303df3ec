"""CPU tests of the CSA step: the dense reference against a naive fp64 loop (duplicates and a
window that overlaps the compressed rows included), the Triton fallback under the interpreter
(``TRITON_INTERPRET=1``, fp32 inside) against the reference, ``csa_forward`` chunking / providers /
consumers / stage events, the measured-choice of ``attn_impl="auto"``, the TileLang variants' topk
padding, the closed-form FLOP count, and input validation."""
from __future__ import annotations

import os

import pytest
import torch

from streamindex.csa import csa_attention_reference, csa_forward, sparse_attention
from streamindex.csa.checks import attention_flops_bytes
from streamindex.csa.reference import csa_attention_loop
from streamindex.harness.csa_measure import measure_csa_cell
from .csa_fixtures import make_case, oracle_indexer, random_indices, rel_err, sampled_rel_err

INTERP = os.environ.get("TRITON_INTERPRET", "0") == "1"
needs_interp = pytest.mark.skipif(not INTERP, reason="the Triton fallback runs on CPU only under TRITON_INTERPRET=1")

CASES = {
    "basic": dict(),
    "no_sink": dict(sink=False),
    "batch_offset": dict(B=2, offset=13, S=9),
    "s_below_window": dict(S=5, window=16),
    "few_visible": dict(S=12, T=20, topk=8, ratio=4),          # early queries see < topk compressed rows
    "all_minus_one": dict(S=6, neg_frac=1.0),                  # only the window remains
    "topk_gt_T": dict(T=3, topk=7, causal=False),
    "odd_heads": dict(Hq=5, D=16, window=3, offset=2),
    "duplicates": dict(T=30, topk=8, causal=False, dup_frac=0.4, neg_frac=0.1),  # repeated index = two keys
    "window_overlap": dict(S=14, topk=5, window=6, offset=3, kv_shared=True),     # selected rows inside the window
}


@pytest.mark.parametrize("name", list(CASES))
def test_reference_matches_loop(name):
    q, kvc, kvw, sk, idx, off, win = make_case(seed=1, **CASES[name])
    ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
    loop = csa_attention_loop(q, kvc, kvw, sk, idx, offset=off, window=win)
    assert rel_err(ref, loop) < 1e-5


def test_reference_counts_duplicates_and_overlap():
    """The reference treats keys as a multiset: a duplicated index weighs twice (not once, as a
    set mask would), and a compressed row equal to a window row is a second key."""
    q, kvc, kvw, sk, idx, off, win = make_case(seed=11, T=30, topk=8, causal=False, dup_frac=0.5, neg_frac=0.0)
    assert any(len(set(r.tolist())) < len(r) for r in idx[0])  # the case really has duplicates
    ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
    dedup = idx.clone()
    for s in range(idx.shape[1]):  # keep first occurrences only
        seen = set()
        for j, t in enumerate(idx[0, s].tolist()):
            if t in seen:
                dedup[0, s, j] = -1
            seen.add(t)
    once = csa_attention_reference(q, kvc, kvw, sk, dedup, offset=off, window=win, out_dtype=torch.float32)
    assert rel_err(ref, once) > 1e-3
    q, kvc, kvw, sk, idx, off, win = make_case(seed=12, S=10, topk=4, window=5, kv_shared=True)
    assert kvc is kvw and (idx >= 0).any()
    ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
    assert rel_err(ref, csa_attention_loop(q, kvc, kvw, sk, idx, offset=off, window=win)) < 1e-5


def test_random_indices_contract():
    g = torch.Generator().manual_seed(0)
    idx = random_indices(2, 50, 40, 12, ratio=4, offset=7, generator=g)
    assert idx.dtype == torch.int32 and idx.shape == (2, 50, 12)
    for b in range(2):
        for s in range(50):
            row = [t for t in idx[b, s].tolist() if t >= 0]
            vis = min(40, (7 + s + 1) // 4)
            assert len(row) == len(set(row)) == min(12, vis) and all(0 <= t < vis for t in row)
    dup = random_indices(1, 30, 100, 16, causal=False, dup_frac=0.5, generator=g)
    assert any(len(set(r.tolist())) < 16 for r in dup[0])


def test_sampled_rel_err_finds_a_wrong_block():
    q, kvc, kvw, sk, idx, off, win = make_case(seed=13, S=40, T=20, topk=6)
    ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
    assert sampled_rel_err(ref, q, kvc, kvw, sk, idx, off, win, blocks=3, rows=5) < 1e-6
    bad = ref.clone()
    bad[:, -1] += 1.0  # the last row is always in a sampled block
    assert sampled_rel_err(bad, q, kvc, kvw, sk, idx, off, win, blocks=3, rows=5) > 1e-2


def test_reference_sink_lowers_mass():
    q, kvc, kvw, _, idx, off, win = make_case(seed=2, sink=False)
    no = csa_attention_reference(q, kvc, kvw, None, idx, offset=off, window=win, out_dtype=torch.float32)
    huge = csa_attention_reference(q, kvc, kvw, torch.full((q.shape[2],), 80.0), idx, offset=off, window=win,
                                   out_dtype=torch.float32)
    neg = csa_attention_reference(q, kvc, kvw, torch.full((q.shape[2],), float("-inf")), idx, offset=off,
                                  window=win, out_dtype=torch.float32)
    assert huge.abs().max() < 1e-10 * no.abs().max() + 1e-20  # a dominant sink absorbs the softmax mass
    assert torch.equal(neg, no)                                 # a -inf sink is no sink


def test_reference_unbatched_and_bf16_out():
    q, kvc, kvw, sk, idx, off, win = make_case(seed=3)
    a = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win)
    b = csa_attention_reference(q[0], kvc[0], kvw[0], sk, idx[0], offset=off, window=win)
    assert a.dtype == torch.bfloat16 and b.shape == a.shape[1:] and torch.equal(a[0], b)


@needs_interp
@pytest.mark.parametrize("name", list(CASES))
def test_triton_interpreter_matches_reference(name):
    q, kvc, kvw, sk, idx, off, win = make_case(seed=4, **CASES[name])
    if q.shape[-1] & (q.shape[-1] - 1):
        pytest.skip("power-of-two D only")
    ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
    out = torch.full(q.shape, float("nan"), dtype=q.dtype)  # poisoned: every element must be written
    got = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl="triton", out=out)
    assert got is out and got.dtype == torch.bfloat16
    assert rel_err(got, ref) < 1e-2
    # fp32 end to end: the interpreter computes in fp32, so this is tight
    got32 = sparse_attention(q.float(), kvc.float(), kvw.float(), sk, idx, offset=off, window=win, attn_impl="triton")
    ref32 = csa_attention_reference(q.float(), kvc.float(), kvw.float(), sk, idx, offset=off, window=win,
                                    out_dtype=torch.float32)
    assert rel_err(got32, ref32) < 1e-5


def _forward_case(seed=0, B=1, S=37, H=4, Di=16, Hq=16, D=32, ratio=4, topk=5, offset=6, window=8):
    g = torch.Generator().manual_seed(seed)
    T = (offset + S) // ratio
    xq, ik, iw = torch.randn(B, S, H, Di, generator=g), torch.randn(B, T, Di, generator=g), torch.randn(B, S, H, generator=g)
    q = torch.randn(B, S, Hq, D, generator=g).bfloat16()
    kvc = torch.randn(B, T, D, generator=g).bfloat16()
    kvw = torch.randn(B, offset + S, D, generator=g).bfloat16()
    sink = torch.randn(Hq, generator=g)
    kw = dict(topk=topk, ratio=ratio, offset=offset, window=window)
    idx = oracle_indexer(xq, ik, iw, topk, ratio=ratio, offset=offset)
    ref = csa_attention_reference(q, kvc, kvw, sink, idx, offset=offset, window=window, out_dtype=torch.float32)
    return (xq, ik, iw, q, kvc, kvw, sink), kw, ref


@pytest.mark.parametrize("impl", ["reference", pytest.param("triton", marks=needs_interp)])
@pytest.mark.parametrize("B", [1, 2])
def test_csa_forward_chunks_match(impl, B):
    args, kw, ref = _forward_case(B=B)
    o = csa_forward(*args, **kw, chunk=8, index_chunk=12, attn_impl=impl, indexer_path=oracle_indexer)
    assert o.shape == ref.shape and rel_err(o, ref) < 1e-2
    # provider + consumer: identical result, chunks in order and covering [0, S)
    xq, ik, iw, q, kvc, kvw, sink = args
    seen, calls = [], []

    def provider(a, b):
        calls.append((a, b))
        return q[:, a:b]

    r = csa_forward(xq, ik, iw, provider, kvc, kvw, sink, **kw, chunk=8, index_chunk=16, attn_impl=impl,
                    indexer_path=oracle_indexer, out=lambda a, b, x: seen.append((a, b, x.clone())))
    assert r is None
    assert [c[:2] for c in seen] == calls and calls[0][0] == 0 and calls[-1][1] == q.shape[1]
    assert all(calls[i][1] == calls[i + 1][0] for i in range(len(calls) - 1))
    assert torch.equal(torch.cat([x for *_, x in seen], 1), o)
    # into a given out tensor
    out = torch.full_like(q, float("nan"))
    assert csa_forward(*args, **kw, chunk=5, attn_impl=impl, indexer_path=oracle_indexer, out=out) is out
    assert torch.equal(out, o)


def test_csa_forward_unbatched_and_timings():
    args, kw, ref = _forward_case(B=1)
    tm = {}
    o = csa_forward(*(a[0] if a.dim() > 1 else a for a in args), **kw, chunk=16, attn_impl="reference",
                    indexer_path=oracle_indexer, timings=tm)
    assert o.shape == ref.shape[1:] and rel_err(o, ref[0]) < 1e-2
    assert tm["attn_s"] > 0 and tm["indexer_s"] > 0 and tm["chunk"] == 16


def test_csa_forward_registered_path():
    from streamindex import list_paths

    avail = [p for p in ("materialize_fused", "chunked_torch", "materialize") if p in list_paths()]
    if not avail:
        pytest.skip("no CPU indexer path registered yet")
    args, kw, ref = _forward_case()
    o = csa_forward(*args, **kw, chunk=8, attn_impl="reference", indexer_path=avail[0])
    assert rel_err(o, ref) < 1e-2


def test_flops_bytes_closed_form():
    for S, topk, ratio, window, offset in [(50, 5, 4, 8, 0), (37, 3, 1, 16, 11), (9, 100, 4, 128, 3)]:
        rows = 0
        for s in range(S):
            pos = offset + s
            rows += min(topk, (pos + 1) // ratio) + min(window, pos + 1)
        fl, gb, qo = attention_flops_bytes(S, Hq=2, D=8, topk=topk, ratio=ratio, window=window, offset=offset)
        assert fl == 4 * 2 * 8 * rows and gb == rows * 8 * 2 and qo == 2 * S * 2 * 8 * 2


@needs_interp
def test_measure_csa_cell_cpu_smoke():
    model = dict(H=4, D=16, topk=8, ratio=4, attn_heads=16, head_dim=32, rope_dim=8, window=8,
                 indexer_path=oracle_indexer, chunk=16)
    row = measure_csa_cell(S=40, model=model, attn_impl="triton", device="cpu", seed=0, repeats=1, warmup=0)
    for key in ("time_indexer_s", "time_attn_s", "time_s", "peak_alloc_gib", "peak_extra_gib", "attn_tflops",
                "attn_frac_peak", "matmul_tflops", "matmul_dtype", "attn_gather_tbps", "n_repeats"):
        assert key in row
    assert row["time_s"] >= row["time_attn_s"] > 0 and row["time_indexer_s"] > 0
    assert row["attn_impl_resolved"] == "triton" and row["matmul_dtype"].startswith("fp32")
    assert row["attn_frac_peak"] == pytest.approx(row["attn_tflops"] / row["matmul_tflops"])
    given = measure_csa_cell(S=40, model=model, attn_impl="triton", device="cpu", seed=0, repeats=1, warmup=0,
                             matmul_tflops=2.0)
    assert given["matmul_tflops"] == 2.0 and given["attn_frac_peak"] == pytest.approx(given["attn_tflops"] / 2.0)


# ---- validation ---------------------------------------------------------------------------------

def _valid():
    return make_case(seed=5)


@pytest.mark.parametrize("mutate, err, match", [
    (lambda a: a.update(q=a["q"][..., :-1]), ValueError, "kv_compressed must be"),
    (lambda a: a.update(q=a["q"].float()), TypeError, "kv_compressed must have q's dtype"),
    (lambda a: a.update(q=a["q"].int()), TypeError, "q must be bf16"),
    (lambda a: a.update(indices=a["indices"].long()), TypeError, "indices must be int32"),
    (lambda a: a.update(indices=a["indices"][:, :-1]), ValueError, "indices must be"),
    (lambda a: a.update(indices=a["indices"].clone().fill_(99)), ValueError, r"indices must lie in \[-1"),
    (lambda a: a.update(indices=a["indices"].clone().fill_(-2)), ValueError, r"indices must lie in \[-1"),
    (lambda a: a.update(kv_window=a["kv_window"][:, :5]), ValueError, "kv_window must hold"),
    (lambda a: a.update(sink=torch.zeros(3)), ValueError, "sink must be float32 of shape"),
    (lambda a: a.update(sink=torch.zeros(a["q"].shape[2], dtype=torch.float64)), ValueError, "sink must be float32"),
    (lambda a: a.update(offset=-1), ValueError, "offset must be >= 0"),
    (lambda a: a.update(window=0), ValueError, "window must be >= 1"),
    (lambda a: a.update(softmax_scale=-1.0), ValueError, "softmax_scale"),
    (lambda a: a.update(softmax_scale=float("nan")), ValueError, "softmax_scale"),
    (lambda a: a.update(kv_compressed=a["kv_compressed"][0]), ValueError, "kv_compressed must be"),
    (lambda a: a.update(attn_impl="cuda"), ValueError, "attn_impl must be one of"),
    (lambda a: a.update(attn_impl="tilelang:nope"), ValueError, "attn_impl must be one of"),
    (lambda a: a.update(q=torch.empty(a["q"].shape, dtype=a["q"].dtype, device="meta")), ValueError, "meta tensor"),
])
def test_attention_validation(mutate, err, match):
    q, kvc, kvw, sk, idx, off, win = _valid()
    a = dict(q=q, kv_compressed=kvc, kv_window=kvw, sink=sk, indices=idx, offset=off, window=win)
    mutate(a)
    with pytest.raises(err, match=match):
        sparse_attention(a.pop("q"), a.pop("kv_compressed"), a.pop("kv_window"), a.pop("sink"), a.pop("indices"),
                         attn_impl=a.pop("attn_impl", "reference"), **a)


def test_triton_rejects_cpu_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, kvc, kvw, sk, idx, off, win = _valid()
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl="triton")


def test_tilelang_rejects_cpu():
    q, kvc, kvw, sk, idx, off, win = make_case(seed=6, Hq=64, D=64)
    with pytest.raises(ValueError):
        sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl="tilelang")


@pytest.mark.parametrize("mutate, err, match", [
    (lambda a: a.update(idx_k=a["idx_k"][:, :-1]), ValueError, "idx_k must be"),
    (lambda a: a.update(kv_window=a["kv_window"][:, :10]), ValueError, "kv_window must hold"),
    (lambda a: a.update(q=a["q"][:, :-1]), ValueError, "q must be"),
    (lambda a: a.update(q=lambda s, e: a_q[:, s:e + 1]), ValueError, r"q\(0, 8\) must return"),
    (lambda a: a.update(q="nope"), TypeError, "q must be a tensor"),
    (lambda a: a.update(out=3), TypeError, "out must be None"),
    (lambda a: a.update(out=torch.zeros(1)), ValueError, "out must be"),
    (lambda a: a.update(topk=0), ValueError, "topk must be >= 1"),
    (lambda a: a.update(ratio=0), ValueError, "ratio must be >= 1"),
    (lambda a: a.update(chunk=0), ValueError, "chunk must be >= 1"),
    (lambda a: a.update(attn_impl="x"), ValueError, "attn_impl must be one of"),
    (lambda a: a.update(kv_compressed=a["kv_compressed"].float()), TypeError, "kv_window must have"),
    (lambda a: a.update(indexer_path=lambda *x, **k: torch.zeros(1, 3, dtype=torch.int32)), ValueError,
     "the indexer returned"),
])
def test_forward_validation(mutate, err, match):
    global a_q
    (xq, ik, iw, q, kvc, kvw, sink), kw, _ = _forward_case()
    a_q = q
    a = dict(x_idx_q=xq, idx_k=ik, idx_w=iw, q=q, kv_compressed=kvc, kv_window=kvw, sink=sink, **kw, chunk=8,
             attn_impl="reference", indexer_path=oracle_indexer)
    mutate(a)
    with pytest.raises(err, match=match):
        csa_forward(a.pop("x_idx_q"), a.pop("idx_k"), a.pop("idx_w"), a.pop("q"), a.pop("kv_compressed"),
                    a.pop("kv_window"), a.pop("sink"), **a)


a_q = None


@needs_interp
def test_triton_block_fallback_on_out_of_resources(monkeypatch):
    """A shared-memory overflow at the default KV block halves the block (down to 16) and remembers it."""
    from streamindex.csa import attention_triton as at

    real = at._kernel()
    tried = []

    from triton.runtime.errors import OutOfResources

    class Flaky:
        def __init__(self, max_bn):
            self.max_bn = max_bn

        def __getitem__(self, grid):
            def launch(*args, BN, **kw):
                tried.append(BN)
                if BN > self.max_bn:
                    raise OutOfResources(256 * 1024, 228 * 1024, "shared memory")
                return real[grid](*args, BN=BN, **kw)
            return launch

    q, kvc, kvw, sk, idx, off, win = make_case(seed=9)
    ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
    monkeypatch.setattr(at, "INTERP_BLOCK_N", 64)
    monkeypatch.setattr(at, "_BN_FALLBACK", {})
    monkeypatch.setattr(at, "_kernel", lambda: Flaky(16))
    got = at.sparse_attention_triton(q, kvc, kvw, sk, idx, offset=off, window=win)
    assert tried == [64, 32, 16] and rel_err(got, ref) < 1e-2
    tried.clear()
    at.sparse_attention_triton(q, kvc, kvw, sk, idx, offset=off, window=win)
    assert tried == [16]  # remembered
    monkeypatch.setattr(at, "_BN_FALLBACK", {})
    monkeypatch.setattr(at, "_kernel", lambda: Flaky(8))
    with pytest.raises(OutOfResources):
        at.sparse_attention_triton(q, kvc, kvw, sk, idx, offset=off, window=win)


# ---- implementation choice and TileLang variants (no GPU needed) ---------------------------------

def test_auto_picks_the_fastest_measured_impl(monkeypatch):
    from streamindex.csa import attention, speed_table

    dev = torch.device("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert attention.runnable(dev, 16, 32, torch.float32) == ["triton", "reference"]
    monkeypatch.setattr(speed_table, "MEASURED", {})
    assert attention.resolve_impl("auto", device=dev, H=16, D=32, dtype=torch.float32, topk=6) == "triton"  # default
    monkeypatch.setattr(speed_table, "MEASURED", {(16, 32, 64): {"gpu": "x", "ms": {"triton": 5.0, "reference": 1.0}}})
    assert attention.resolve_impl("auto", device=dev, H=16, D=32, dtype=torch.float32, topk=6) == "reference"
    assert attention.resolve_impl("auto", device=dev, H=16, D=32, dtype=torch.float32, topk=100) == "triton"  # bucket 128
    monkeypatch.setattr(speed_table, "MEASURED", {(16, 32, 64): {"ms": {"tilelang:seesaw": 0.1, "triton": 5.0}}})
    assert attention.resolve_impl("auto", device=dev, H=16, D=32, dtype=torch.float32, topk=6) == "triton"  # not runnable
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert attention.resolve_impl("auto", device=dev, H=16, D=32, dtype=torch.float32, topk=6) == "reference"
    assert attention.resolve_impl("triton", device=dev, H=16, D=32, dtype=torch.float32) == "triton"
    assert attention.resolve_impl("tilelang:split", device=dev, H=64, D=512, dtype=torch.bfloat16) == "tilelang:split"


def test_speed_table_entries_are_well_formed():
    from streamindex.csa.attention import topk_bucket
    from streamindex.csa.attention_tilelang import VARIANTS
    from streamindex.csa.speed_table import MEASURED

    for (Hq, D, bucket), entry in MEASURED.items():
        assert Hq > 0 and D > 0 and bucket == topk_bucket(bucket)
        assert entry["ms"] and all(v > 0 for v in entry["ms"].values())
        for name in entry["ms"]:
            assert name == "triton" or (name.startswith("tilelang:") and name.split(":", 1)[1] in VARIANTS)
    assert [topk_bucket(k) for k in (1, 64, 65, 512, 513, 1024)] == [64, 64, 128, 512, 1024, 1024]


def test_tilelang_padded_topk_and_support():
    from streamindex.csa.attention_tilelang import VARIANTS, padded_topk, supported

    assert padded_topk("seesaw", 512, 128) == 512 and padded_topk("seesaw", 1024, 128) == 1024
    assert padded_topk("seesaw", 64, 128) == 128      # 1 + 2 blocks is odd: one more -1 block
    assert padded_topk("split", 64, 128) == 64 and padded_topk("split", 100, 128) == 128
    assert padded_topk("seesaw", 448, 128) == 512 and padded_topk("pipelined", 448, 128) == 448
    for v in VARIANTS:
        assert supported(64, 512, torch.bfloat16, v)[0] and supported(128, 512, torch.bfloat16, v)[0]
        assert not supported(48, 512, torch.bfloat16, v)[0] and not supported(64, 512, torch.float16, v)[0]
    assert not supported(64, 192, torch.bfloat16, "seesaw")[0] and supported(64, 192, torch.bfloat16, "pipelined")[0]
    with pytest.raises(ValueError, match="variant must be one of"):
        supported(64, 512, torch.bfloat16, "nope")


def test_tilelang_kernels_trace():
    """The TileLang kernels build as TIR for every variant at both V4 shapes (no GPU, no compile)."""
    pytest.importorskip("tilelang")
    from streamindex.csa.attention_tilelang import LOG2E, VARIANTS, build_prim_func, padded_topk

    for v in VARIANTS:
        for H, K in ((64, 512), (128, 1024)):
            f = build_prim_func(v, H, 512, padded_topk(v, K, 128), 128, 512 ** -0.5 * LOG2E, num_ctas=132)
            assert "csa" in str(f.attrs["global_symbol"])


def test_csa_forward_timing_events_cpu_noop():
    args, kw, ref = _forward_case(B=1)
    ev = []
    o = csa_forward(*args, **kw, chunk=8, attn_impl="reference", indexer_path=oracle_indexer, timing_events=ev)
    assert ev == [] and rel_err(o, ref) < 1e-2  # events are CUDA-only
    with pytest.raises(TypeError, match="timing_events"):
        csa_forward(*args, **kw, chunk=8, attn_impl="reference", indexer_path=oracle_indexer, timing_events={})


def test_devcheck_speed_table_round_trip(tmp_path):
    """The table tools/csa_devcheck.py writes is what attention.choose_impl reads: only
    implementations whose check and timed output passed, at the largest T per shape."""
    import importlib.util
    from pathlib import Path

    from streamindex.csa.attention import topk_bucket

    path = Path(__file__).resolve().parents[1] / "tools" / "csa_devcheck.py"
    spec = importlib.util.spec_from_file_location("csa_devcheck", path)
    dc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dc)
    rows = [dict(stage="time", model="flash", T=65536, Sq=8192, impl="triton", ms=3.0, rel_err=2e-3),
            dict(stage="time", model="flash", T=262144, Sq=8192, impl="triton", ms=3.5, rel_err=2e-3),
            dict(stage="time", model="flash", T=262144, Sq=8192, impl="tilelang:seesaw", ms=1.5, rel_err=2e-3),
            dict(stage="time", model="flash", T=262144, Sq=8192, impl="tilelang:split", ms=1.0, rel_err=0.5),
            dict(stage="time", model="pro", T=262144, Sq=8192, impl="tilelang:pipelined", ms=4.0, rel_err=2e-3),
            dict(stage="time", model="pro", T=262144, Sq=8192, impl="tilelang:seesaw", error="boom")]
    worst = {"triton": 3e-3, "tilelang:seesaw": 4e-3, "tilelang:split": 3e-3, "tilelang:pipelined": 0.2}
    text = dc.speed_table_text(rows, worst, "NVIDIA H200", "abc1234")
    (tmp_path / "speed_table.py").write_text(text)
    spec = importlib.util.spec_from_file_location("speed_table_new", tmp_path / "speed_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    flash = mod.MEASURED[(64, 512, topk_bucket(512))]
    assert flash["ms"] == {"triton": 3.5, "tilelang:seesaw": 1.5} and flash["gpu"] == "NVIDIA H200"
    assert (128, 512, 1024) not in mod.MEASURED  # the only Pro row failed its check
