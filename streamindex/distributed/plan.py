"""The shard layout of one distributed call: from ``S`` / ``bounds`` / ``scheme``, checked against
the process group and against the rows this rank was given."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..problem import check_int
from .collectives import check_backend_device, device_guard, group_info
from .sharding import check_shards, shard_bounds, shard_rows, with_local_base

GATHER = (None, "rank0", "all")


@dataclass(frozen=True)
class ShardPlan:
    """This rank's place in a distributed call: ``shards[r]`` are rank ``r``'s ``(s0, s1)`` ranges
    of ``[0, S)``; ``ranges`` are this rank's, with the local row where each starts."""

    rank: int
    world_size: int
    S: int
    shards: list
    ranges: list  # (s0, s1, base)

    @property
    def n_local(self) -> int:
        return shard_rows(self.shards[self.rank])


def make_plan(n_local: int, *, S, bounds, scheme: str, row_cost, ratio: int, offset: int, T: int, group,
              device: torch.device, rows_arg: str) -> ShardPlan:
    """Resolve the layout. ``S=None`` and ``bounds=None``: the row counts of all ranks are
    all-gathered (one small collective) and summed. ``rows_arg`` names the argument whose rows
    are checked against this rank's shard."""
    rank, W = group_info(group)
    check_backend_device(group, device, rows_arg)
    if bounds is not None:
        if not isinstance(bounds, (list, tuple)) or len(bounds) != W:
            n = len(bounds) if isinstance(bounds, (list, tuple)) else type(bounds).__name__
            raise ValueError(f"bounds must hold one list of ranges per rank of the group ({W}), got {n}")
        try:
            S_b = max((int(s1) for ranks in bounds for _, s1 in ranks), default=0)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bounds must be a list (one per rank) of lists of (s0, s1) pairs, got {bounds!r}") \
                from exc
        if S_b < 1:
            raise ValueError(f"bounds must cover [0, S) for some S >= 1, got {bounds!r}")
        if S is not None and check_int("S", S, 1) != S_b:
            raise ValueError(f"S={S} does not match bounds, which cover [0, {S_b})")
        shards = check_shards(bounds, S_b)
        S = S_b
    else:
        if S is None:
            S = _sum_rows(n_local, group, W, device)
        S = check_int("S", S, 1)
        shards = shard_bounds(S, W, ratio=ratio, offset=offset, T=T, scheme=scheme, row_cost=row_cost)
    want = shard_rows(shards[rank])
    if n_local != want:
        raise ValueError(f"{rows_arg} has {n_local} query rows but rank {rank}'s shard {shards[rank]} of S={S} has "
                         f"{want} (slice the full tensor with shard_bounds(S, {W}, scheme={scheme!r}, ...) and "
                         "local_rows, or pass the bounds you used)")
    return ShardPlan(rank=rank, world_size=W, S=S, shards=shards, ranges=with_local_base(shards[rank]))


def _sum_rows(n_local: int, group, W: int, device: torch.device) -> int:
    if W == 1:
        return n_local
    with device_guard(device):
        mine = torch.tensor([n_local], dtype=torch.int64, device=device)
        parts = [torch.empty_like(mine) for _ in range(W)]
        dist.all_gather(parts, mine, group=group)
        return int(sum(int(p.item()) for p in parts))


def check_gather(gather) -> None:
    if gather not in GATHER:
        raise ValueError(f"gather must be one of {GATHER}, got {gather!r}")
