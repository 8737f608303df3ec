"""Context-parallel prefill on ``torch.distributed``: the indexer top-k and the CSA step of one long
sequence, its query rows sharded over the ranks of a process group (one GPU per rank, NCCL; or
CPU ranks on gloo).

* :func:`shard_bounds` -- which query rows each rank owns (equal causal work, exact);
  :func:`local_rows` slices a full tensor by them.
* :func:`indexer_topk_distributed` -- each rank's rows of :func:`streamindex.indexer_topk`,
  bit-identical to the single-process call; optionally gathered on rank 0 or on all ranks.
* :func:`csa_forward_distributed` -- the same for :func:`streamindex.csa_forward`.
* :func:`gather_rows` -- uneven row shards into the full tensor (also for keys that were sharded).

Every rank of the group makes the same call (SPMD). The calls contain collectives only where
they say so (``S=None``: one all-gather of row counts; ``gather``: point-to-point transfers of
the result); arguments are checked before any of them, but an error raised on one rank only
still leaves its peers waiting in their next collective until the process group's timeout.

Every rank holds all compressed keys. Launch one process per GPU (``torchrun --nproc-per-node N``),
set its device (``torch.cuda.set_device(local_rank)``) and call ``init_process_group("nccl")``;
keep NVLink multicast off (:func:`keep_multicast_off`). ``tools/distributed_example.py`` is a
complete example.
"""
from .collectives import NCCL_ENV_DEFAULTS, gather_rows, keep_multicast_off
from .csa import csa_forward_distributed, csa_row_cost
from .indexer import indexer_topk_distributed
from .sharding import SCHEMES, local_rows, shard_bounds, shard_cost

__all__ = ["shard_bounds", "shard_cost", "local_rows", "SCHEMES", "indexer_topk_distributed",
           "csa_forward_distributed", "csa_row_cost", "gather_rows", "keep_multicast_off", "NCCL_ENV_DEFAULTS"]
