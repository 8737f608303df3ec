"""Input builders for the contract tests: random and adversarial (exact ties, all-zero scores)."""
import torch

import streamindex as si


def random_case(S, H=4, D=24, *, B=2, T=None, ratio=4, dtype=torch.float32, seed=0, device="cpu"):
    return si.make_inputs(S, H, D, B=B, T=T, ratio=ratio, dtype=dtype, device=device, seed=seed)


def integer_case(S, H=3, D=16, *, B=2, T=None, ratio=2, dup_keys=True, seed=0, dtype=torch.float32):
    """Small-integer q and k with power-of-two weights: every score is exact in fp32 (and bf16
    products), so ties are exact ties in every path. Duplicate keys force ties by construction."""
    g = torch.Generator().manual_seed(seed)
    T = max(1, S // ratio) if T is None else T
    q = torch.randint(-2, 3, (B, S, H, D), generator=g).to(dtype)
    k = torch.randint(-2, 3, (B, T, D), generator=g).to(dtype)
    if dup_keys and T >= 4:
        k[:, 1::3] = k[:, 0:1]          # many keys equal to key 0
    w = torch.tensor([0.5, 0.25, -0.125, 1.0])[torch.randint(0, 4, (B, S, H), generator=g)]
    return q, k, w


def zero_case(S, H=2, D=16, *, B=1, ratio=1):
    """Every score is exactly 0: the answer is keys 0, 1, 2, … in order."""
    q, k, w = integer_case(S, H, D, B=B, ratio=ratio, dup_keys=False)
    return q, k, torch.zeros_like(w)
