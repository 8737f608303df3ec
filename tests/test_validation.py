"""Bad input gets a clear error naming the argument (DESIGN.md §1)."""
import pytest
import torch

import streamindex as si

from .cases import random_case


@pytest.fixture
def qkw():
    return random_case(16, B=2, ratio=4)


@pytest.mark.parametrize("bad,match", [
    (dict(topk=0), "topk must be >= 1"),
    (dict(topk=2.5), "topk must be an int"),
    (dict(ratio=0), "ratio must be >= 1"),
    (dict(offset=-1), "offset must be >= 0"),
    (dict(path="nope"), "path must be one of"),
    (dict(workspace_bytes=0), "workspace_bytes must be a positive int"),
    (dict(chunk_t=-3), "chunk_t must be a positive int"),
])
def test_bad_scalars(qkw, bad, match):
    q, k, w = qkw
    args = dict(topk=4)
    args.update(bad)
    topk = args.pop("topk")
    with pytest.raises((ValueError, TypeError), match=match):
        si.indexer_topk(q, k, w, topk, path=args.pop("path", "materialize"), **args)


def test_bad_shapes_and_dtypes(qkw):
    q, k, w = qkw
    with pytest.raises(ValueError, match=r"k must be \[B=2, T, D=24\]"):
        si.indexer_topk(q, k[:, :, :10], w, 4)
    with pytest.raises(ValueError, match=r"k must be \[B=2, T, D=24\]"):
        si.indexer_topk(q, k[:1], w, 4)
    with pytest.raises(ValueError, match=r"w must be \[B=2, S=16, H=4\]"):
        si.indexer_topk(q, k, w[:, :5], 4)
    with pytest.raises(ValueError, match="q must be"):
        si.indexer_topk(q[0, 0, 0], k, w, 4)
    with pytest.raises(ValueError, match="k must be"):
        si.indexer_topk(q, k[0], w, 4)
    with pytest.raises(TypeError, match="k must have q's dtype"):
        si.indexer_topk(q, k.double(), w, 4)
    with pytest.raises(TypeError, match="w must be float32"):
        si.indexer_topk(q, k, w.half(), 4)
    with pytest.raises(TypeError, match="q must be bf16, fp16, fp32"):
        si.indexer_topk(q.double(), k.double(), w, 4)
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        si.indexer_topk(q.numpy(), k, w, 4)


def test_fp8_needs_scales(qkw):
    q, k, w = qkw
    q8, k8 = q.to(torch.float8_e4m3fn), k.to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="q_scale"):
        si.indexer_topk(q8, k8, w, 4, path="materialize")
    with pytest.raises(ValueError, match="q_scale must be float32 of shape"):
        si.indexer_topk(q8, k8, w, 4, path="materialize", q_scale=torch.ones(2, 16), k_scale=torch.ones(2, 4))
    with pytest.raises(ValueError, match="only accepted with fp8"):
        si.indexer_topk(q, k, w, 4, path="materialize", k_scale=torch.ones(2, 4))


@pytest.mark.parametrize("name", ["q", "k", "w"])
def test_nan_is_rejected(qkw, name):
    q, k, w = (t.clone() for t in qkw)
    {"q": q, "k": k, "w": w}[name].view(-1)[3] = float("nan")
    with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
        si.indexer_topk(q, k, w, 4, path="materialize")


def test_nan_unchecked_does_not_crash(qkw):
    # Documented: with check_finite=False the rows touched by NaN get unspecified indices,
    # but the call returns the contract's shape and dtype.
    q, k, w = (t.clone() for t in qkw)
    w[0, 5, 1] = float("nan")
    idx = si.indexer_topk(q, k, w, 4, path="stream", check_finite=False)
    assert idx.shape == (2, 16, 4) and idx.dtype == torch.int32


def test_cuda_path_rejects_cpu_without_interpreter(qkw, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, w = qkw
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        si.indexer_topk(q, k, w, 4, path="stream")


# ------------------------------------------------------------------ values real models feed (issue: inputs)

ALL_PATHS = [p for p in si.list_paths()]


def _fp8(qkw):
    from streamindex.quant import quantize_fp8

    q, k, w = qkw
    q8, k8, qs, ks = quantize_fp8(q, k)
    return q8, k8, w, qs, ks


@pytest.mark.parametrize("path", ["stream", "stream_fp8", "materialize"])
@pytest.mark.parametrize("which,value,match", [("k_scale", -1.0, "k_scale must be > 0"),
                                                ("q_scale", -1.0, "q_scale must be > 0"),
                                                ("k_scale", 0.0, "k_scale must be > 0"),
                                                ("q_scale", float("inf"), "q_scale contains NaN or Inf")])
def test_fp8_scales_must_be_finite_and_positive(qkw, path, which, value, match):
    # A negative scale cannot be folded outside the relu: refused, never a silent wrong answer.
    q8, k8, w, qs, ks = _fp8(qkw)
    (ks if which == "k_scale" else qs).view(-1)[2] = value
    with pytest.raises(ValueError, match=match):
        si.indexer_topk(q8, k8, w, 4, ratio=4, path=path, q_scale=qs, k_scale=ks)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_offsets_near_2_31_are_exact(path):
    # (offset + s + 1) // ratio in int64 everywhere: every row sees every key, the oracle agrees.
    from streamindex.oracle import oracle_topk

    q, k, w = random_case(20, B=1, T=9, ratio=4, seed=21)
    kw = {}
    if si.get_path(path).fp8:
        q, k, w, qs, ks = _fp8((q, k, w))
        kw = dict(q_scale=qs, k_scale=ks)
    offset = 2 ** 31 - 10
    idx = si.indexer_topk(q, k, w, 5, ratio=4, offset=offset, path=path, **kw)
    oi, _ = oracle_topk(q, k, w, 5, ratio=4, offset=offset, **kw)
    assert torch.equal(idx.long(), oi)
    assert all(len(set(r.tolist())) == 5 for r in idx[0])


def test_offsets_beyond_int64_room_are_refused(qkw):
    q, k, w = qkw
    with pytest.raises(ValueError, match=r"offset \+ S must be <= 2\*\*62"):
        si.indexer_topk(q, k, w, 4, offset=2 ** 63 - 64, path="materialize")


@pytest.mark.parametrize("path", ALL_PATHS)
def test_finite_inputs_whose_scores_overflow_are_refused(path):
    # |q|, |k| ~ 1e19: every input is finite, the fp32 head sums are not.
    q, k, w = random_case(24, B=1, ratio=2, seed=4)
    kw = {}
    if si.get_path(path).fp8:
        q, k, w = q * 1e3, k * 1e3, w * 1e38
    else:
        q, k = q * 1e19, k * 1e19
    with pytest.raises(ValueError, match="not finite in fp32"):
        si.indexer_topk(q, k, w, 4, ratio=2, path=path, **kw)
    # Unchecked: no error, the contract's shape (indices unspecified for those rows).
    assert si.indexer_topk(q, k, w, 4, ratio=2, path=path, check_finite=False).shape == (1, 24, 4)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_outputs_never_require_grad(qkw, path):
    q, k, w = (t.clone().requires_grad_() for t in qkw)
    idx, scores = si.indexer_topk(q, k, w, 4, path=path, return_scores=True)
    assert not idx.requires_grad and not scores.requires_grad


def test_meta_tensors_get_a_clear_error(qkw):
    q, k, w = (t.to("meta") for t in qkw)
    with pytest.raises(ValueError, match="q is a meta tensor"):
        si.indexer_topk(q, k, w, 4, path="materialize")


def test_scales_must_be_on_qs_device_and_tensors(qkw):
    q8, k8, w, qs, ks = _fp8(qkw)
    with pytest.raises(TypeError, match="k_scale must be a torch.Tensor"):
        si.indexer_topk(q8, k8, w, 4, path="materialize", q_scale=qs, k_scale=[1.0])


def test_check_finite_reads_strided_inputs_in_place(qkw):
    # A q that is a view with a contiguous last dim is used as it is: no copy for the check or the path.
    from streamindex.problem import IndexerProblem

    q, k, w = qkw
    big = torch.randn(2, 16, 8, 24)
    qv = big[:, :, ::2]                                   # [2, 16, 4, 24], head stride 2·24
    p = IndexerProblem.from_args(qv, k, w, 4, ratio=4)
    assert p.q.data_ptr() == qv.data_ptr() and p.q.stride() == qv.stride()
    qv[1, 3, 2, 5] = float("inf")
    with pytest.raises(ValueError, match="q contains NaN or Inf"):
        IndexerProblem.from_args(qv, k, w, 4, ratio=4)
    ref = si.indexer_topk(big[:, :, ::2].contiguous(), k, w, 4, path="materialize", check_finite=False)
    got = si.indexer_topk(big[:, :, ::2], k, w, 4, path="stream", check_finite=False)
    assert torch.equal(ref[0], got[0])


@pytest.mark.parametrize("bad_byte", [0x7F, 0xFF])
def test_fp8_nan_bytes_are_found(qkw, bad_byte):
    q8, k8, w, qs, ks = _fp8(qkw)
    q8.view(torch.uint8).view(-1)[7] = bad_byte
    with pytest.raises(ValueError, match="q contains NaN"):
        si.indexer_topk(q8, k8, w, 4, path="materialize", q_scale=qs, k_scale=ks)


def test_overflow_check_runs_only_when_the_bound_allows_overflow(qkw):
    # Ordinary inputs: the Cauchy-Schwarz bound rules overflow out, so no score check (and no sync)
    # is needed. Huge but orthogonal q and k: the bound cannot rule it out, the scores are checked,
    # found finite, and the call succeeds.
    from streamindex.problem import IndexerProblem

    q, k, w = qkw
    assert not IndexerProblem.from_args(q, k, w, 4, ratio=4).scores_may_overflow
    q2, k2 = torch.zeros_like(q), torch.zeros_like(k)
    q2[..., 0], k2[..., 1] = 1e30, 1e30
    k2[:, :, 0] = 1.0
    p = IndexerProblem.from_args(q2, k2, w, 4, ratio=4)
    assert p.scores_may_overflow
    for path in ALL_PATHS:
        if not si.get_path(path).fp8:
            idx = si.indexer_topk(q2, k2, w, 4, ratio=4, path=path)
            assert idx.shape == (2, 16, 4)
