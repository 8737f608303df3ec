"""Built-in paths; importing this module registers them (see :mod:`streamindex.registry`)."""
# isort: off
from . import materialize, materialize_fused, chunked_torch, partition_merge, stream  # noqa: F401
