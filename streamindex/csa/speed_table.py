"""Measured CSA attention times per shape: what ``attn_impl="auto"`` chooses from.

Written by ``tools/csa_devcheck.py run`` (copy of its ``$OUT/speed_table.py``); edit by hand
only to delete stale entries. Key: ``(Hq, D, topk bucket)`` with the bucket the smallest power of
two >= topk. Value: the GPU, the commit and date measured, the workload, and milliseconds per
implementation (``"tilelang:<variant>"`` or ``"triton"``). Shapes without an entry fall back
to the documented default in :func:`streamindex.csa.attention.choose_impl`.
"""

MEASURED: dict = {
    (64, 512, 512): {'gpu': 'NVIDIA H200', 'commit': '2dde986', 'date': '2026-12-01', 'workload': '8192 late queries, T=262144, random distinct indices', 'ms': {'tilelang:seesaw': 2.21, 'tilelang:split': 2.0776, 'tilelang:seesaw_grid': 2.2492, 'tilelang:pipelined': 2.6823, 'triton': 3.0752}},
    (128, 512, 1024): {'gpu': 'NVIDIA H200', 'commit': '2dde986', 'date': '2026-12-01', 'workload': '8192 late queries, T=262144, random distinct indices', 'ms': {'tilelang:seesaw': 6.6518, 'tilelang:split': 6.5901, 'tilelang:seesaw_grid': 6.8347, 'tilelang:pipelined': 8.2872, 'triton': 10.2855}},
}
