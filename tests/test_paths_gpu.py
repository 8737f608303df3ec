"""The contract at real sizes on the H200 (``pytest -m gpu``): V4-Flash / V4-Pro dims, bf16."""
import pytest
import torch

import streamindex as si
from streamindex.metrics import tie_aware_recall
from streamindex.quant import quantize_fp8

pytestmark = pytest.mark.gpu

MODELS = {"v4_flash": dict(H=64, D=128, topk=512, ratio=4), "v4_pro": dict(H=64, D=128, topk=1024, ratio=4)}
PATHS = [p for p in si.list_paths() if not si.get_path(p).fp8]


def sampled_rows(S, n=192, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge = torch.cat([torch.arange(min(S, 32)), torch.arange(max(0, S - 32), S)])
    return torch.unique(torch.cat([edge, torch.randint(0, S, (n,), generator=g)]))


def inputs(S, m, seed=0):
    return si.make_inputs(S, m["H"], m["D"], ratio=m["ratio"], dtype=torch.bfloat16, device="cuda", seed=seed)


@pytest.fixture(autouse=True)
def _free_memory():
    yield
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("S", [2048, 8192, 32768])
@pytest.mark.parametrize("path", PATHS)
def test_recall_is_one(path, S, model):
    m = MODELS[model]
    q, k, w = inputs(S, m, seed=S)
    idx = si.indexer_topk(q, k, w, m["topk"], ratio=m["ratio"], path=path)
    assert idx.shape == (1, S, m["topk"]) and idx.dtype == torch.int32
    rec = tie_aware_recall(idx, q, k, w, topk=m["topk"], ratio=m["ratio"], rows=sampled_rows(S))
    assert rec.min().item() == 1.0


@pytest.mark.parametrize("S", [32768, 1 << 20])
def test_stream_fp8_recall_against_dequantized_oracle(S):
    m = MODELS["v4_flash"]
    q, k, w = inputs(S, m, seed=7)
    q8, k8, qs, ks = quantize_fp8(q, k)
    del q, k
    idx = si.indexer_topk(q8, k8, w, m["topk"], ratio=m["ratio"], path="stream_fp8", q_scale=qs, k_scale=ks)
    rec = tie_aware_recall(idx, q8, k8, w, topk=m["topk"], ratio=m["ratio"], rows=sampled_rows(S, 96),
                           q_scale=qs, k_scale=ks)
    assert rec.min().item() == 1.0


def test_materialize_ooms_at_65536():
    m = MODELS["v4_flash"]
    q, k, w = inputs(65536, m)
    with pytest.raises(torch.OutOfMemoryError):
        si.indexer_topk(q, k, w, m["topk"], ratio=m["ratio"], path="materialize")


def test_stream_completes_1m_with_recall_one():
    m = MODELS["v4_flash"]
    S = 1 << 20
    q, k, w = inputs(S, m, seed=1)
    idx = si.indexer_topk(q, k, w, m["topk"], ratio=m["ratio"], path="stream")
    assert idx.shape == (1, S, m["topk"])
    assert (idx[0, -1] >= 0).all() and (idx[0, :3] == -1).all()
    rec = tie_aware_recall(idx, q, k, w, topk=m["topk"], ratio=m["ratio"], rows=sampled_rows(S, 96))
    assert rec.min().item() == 1.0


@pytest.mark.parametrize("workspace", [1 << 20, 16 << 20])
def test_stream_many_chunks_and_ties_equal_materialize(workspace):
    """Integer-valued inputs make every path's fp32 scores exact (so equal), with massive ties:
    the contract then fixes the output bit for bit. Small workspaces mean many chunks; the ties
    overflow the candidates of some rows, which take the re-selection."""
    B, S, H, D, topk, ratio = 2, 32768, 8, 64, 64, 4
    g = torch.Generator(device="cuda").manual_seed(3)
    q = torch.randint(-2, 3, (B, S, H, D), generator=g, device="cuda").to(torch.bfloat16)
    k = torch.randint(-2, 3, (B, S // ratio, D), generator=g, device="cuda").to(torch.bfloat16)
    w = torch.randint(0, 3, (B, S, H), generator=g, device="cuda").float()
    ref = si.indexer_topk(q, k, w, topk, ratio=ratio, path="materialize_fused")
    got = si.indexer_topk(q, k, w, topk, ratio=ratio, path="stream", workspace_bytes=workspace)
    assert torch.equal(got, ref)
