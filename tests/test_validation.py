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
