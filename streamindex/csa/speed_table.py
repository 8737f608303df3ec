"""Measured CSA attention times per shape: what ``attn_impl="auto"`` chooses from.

Written by ``tools/csa_devcheck.py`` (its ``$OUT/speed_table.py``, copied here); edit by hand
only to delete stale entries. Key: ``(Hq, D, topk bucket)`` with the bucket the smallest power of
two >= topk. Value: the GPU, the commit and date measured, the workload, and milliseconds per
implementation (``"tilelang:<variant>"`` or ``"triton"``). Shapes without an entry fall back
to the documented default in :func:`streamindex.csa.attention.choose_impl`.
"""

MEASURED: dict = {}
