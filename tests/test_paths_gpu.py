"""The contract at real sizes on the H200 (``pytest -m gpu``): V4-Flash / V4-Pro dims, bf16."""
import pytest
import torch

import streamindex as si
from streamindex.metrics import tie_aware_recall
from streamindex.quant import quantize_fp8

pytestmark = pytest.mark.gpu

MODELS = {"v4_flash": dict(H=64, D=128, topk=512, ratio=4), "v4_pro": dict(H=64, D=128, topk=1024, ratio=4),
          "v3_2": dict(H=64, D=128, topk=2048, ratio=1)}
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


@pytest.mark.parametrize("model", ["v4_flash", "v4_pro"])
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
def test_stream_many_chunks_and_ties_equal_materialize(workspace, monkeypatch):
    """Integer-valued inputs make every path's fp32 scores exact (so equal), with massive ties:
    the contract then fixes the output bit for bit. Small workspaces mean many chunks; the ties
    overflow the candidates of some rows, which the radix select takes (checked, not assumed)."""
    from .test_paths_contract import _Routes

    routes = _Routes(monkeypatch)
    B, S, H, D, topk, ratio = 2, 32768, 8, 64, 64, 4
    g = torch.Generator(device="cuda").manual_seed(3)
    q = torch.randint(-2, 3, (B, S, H, D), generator=g, device="cuda").to(torch.bfloat16)
    k = torch.randint(-2, 3, (B, S // ratio, D), generator=g, device="cuda").to(torch.bfloat16)
    w = torch.randint(0, 3, (B, S, H), generator=g, device="cuda").float()
    ref = si.indexer_topk(q, k, w, topk, ratio=ratio, path="materialize_fused")
    got = si.indexer_topk(q, k, w, topk, ratio=ratio, path="stream", workspace_bytes=workspace)
    assert torch.equal(got, ref)
    assert routes.overflowed(), "no row overflowed its candidates"


@pytest.mark.parametrize("model,S", [("v4_pro", 65536), ("v3_2", 32768), ("v3_2", 131072)])
@pytest.mark.parametrize("kind", ["random", "ties8", "recency"])
def test_stream_every_model_and_input_kind_recall_one(model, S, kind):
    m = MODELS[model]
    q, k, w = si.make_inputs(S, m["H"], m["D"], ratio=m["ratio"], device="cuda", seed=5, kind=kind)
    idx = si.indexer_topk(q, k, w, m["topk"], ratio=m["ratio"], path="stream")
    rec = tie_aware_recall(idx, q, k, w, topk=m["topk"], ratio=m["ratio"], rows=sampled_rows(S, 64))
    assert rec.min().item() == 1.0


def test_ties8_equals_materialize_fused_bit_for_bit():
    # Keys from 8 distinct rows: every row's k-th score is a tie thousands wide; the order of the
    # tied keys (smaller index first) is fixed by the contract.
    q, k, w = si.make_inputs(65536, 64, 128, ratio=4, device="cuda", seed=2, kind="ties8")
    ref = si.indexer_topk(q, k, w, 512, ratio=4, path="materialize_fused")
    assert torch.equal(si.indexer_topk(q, k, w, 512, ratio=4, path="stream"), ref)


def test_grid_limit_T16_S4M():
    # One chunk of 4,194,304 rows x 16 keys: 65,536 row blocks, past CUDA's 65,535 on grid y.
    S, T = 4194304, 16
    q, k, w = si.make_inputs(S, 1, 16, T=T, ratio=1, device="cuda", seed=1)
    idx = si.indexer_topk(q, k, w, 4, ratio=1, path="stream", check_finite=False)
    rows = torch.tensor([0, 1, 2, 3, 17, 65535 * 64, S - 1])
    rec = tie_aware_recall(idx, q, k, w, topk=4, ratio=1, rows=rows)
    assert rec.min().item() == 1.0 and (idx[0, 0, 1:] == -1).all()


def test_no_host_sync_inside_an_unchecked_call_and_one_with_checks():
    m = MODELS["v4_pro"]
    q, k, w = inputs(16384, m, seed=3)
    si.indexer_topk(q, k, w, m["topk"], ratio=4, check_finite=False)       # compile
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        si.indexer_topk(q, k, w, m["topk"], ratio=4, check_finite=False)
        with pytest.raises(RuntimeError):
            si.indexer_topk(q, k, w, m["topk"], ratio=4, check_finite=True)   # the input check's one sync
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_check_finite_costs_no_memory_on_a_strided_q():
    S = 65536
    big = torch.randn(1, S, 128, 128, device="cuda", dtype=torch.bfloat16)
    q = big[:, :, ::2]                                       # [1, S, 64, 128], not contiguous
    k = torch.randn(1, S // 4, 128, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(1, S, 64, device="cuda")
    from streamindex.problem import IndexerProblem

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    p = IndexerProblem.from_args(q, k, w, 512, ratio=4, check_finite=True)
    extra = torch.cuda.max_memory_allocated() - before
    assert p.q.data_ptr() == q.data_ptr() and not p.scores_may_overflow
    assert extra < (64 << 20), f"check_finite allocated {extra} bytes (q is {q.numel() * 2} bytes)"


def test_overflowing_scores_raise():
    q, k, w = inputs(8192, MODELS["v4_flash"], seed=4)
    with pytest.raises(ValueError, match="not finite in fp32"):
        si.indexer_topk(q * 1e19, k * 1e19, w, 512, ratio=4)


def test_offset_near_2_31_exact():
    # Every row sees all 2,048 keys; recall 1 and distinct indices (bit-identity with another path
    # holds only for integer inputs: fp32 sums in another order differ in the last bit).
    q, k, w = si.make_inputs(4096, 64, 128, T=2048, ratio=4, device="cuda", seed=6)
    offset = 2 ** 31 - 10
    idx = si.indexer_topk(q, k, w, 512, ratio=4, offset=offset)
    rows = sampled_rows(4096, 64)
    rec = tie_aware_recall(idx, q, k, w, topk=512, ratio=4, offset=offset, rows=rows)
    assert rec.min().item() == 1.0
    assert (idx[0].sort(dim=-1).values.diff(dim=-1) > 0).all()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("path", ["stream", "stream_fp8", "chunked_torch"])
def test_device_guard_cuda1(path):
    # Tensors on cuda:1 while the current device is cuda:0: every launch must follow the inputs.
    torch.cuda.set_device(0)
    q, k, w = si.make_inputs(8192, 64, 128, ratio=4, device="cuda:1", seed=8)
    ref = si.indexer_topk(q.cpu().float(), k.cpu().float(), w.cpu(), 64, ratio=4, path="materialize")
    before = torch.cuda.memory_allocated(0)
    idx = si.indexer_topk(q, k, w, 64, ratio=4, path=path)
    assert idx.device == torch.device("cuda:1")
    assert torch.cuda.memory_allocated(0) == before
    if path != "stream_fp8":
        rec = tie_aware_recall(idx.cpu(), q.cpu().float(), k.cpu().float(), w.cpu(), topk=64, ratio=4)
        assert rec.min().item() == 1.0 and ref.shape == idx.shape
