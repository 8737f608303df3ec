"""StreamIndex: memory-bounded exact top-k for DeepSeek-V4's CSA indexer."""
from .api import indexer_topk, precompile
from .inputs import make_fp8_inputs, make_inputs
from .registry import get_path, list_paths, register_path

__all__ = ["indexer_topk", "precompile", "make_inputs", "make_fp8_inputs", "get_path", "list_paths", "register_path"]
__version__ = "0.1.0"
from .csa import csa_forward  # noqa: E402  (the CSA step: indexer top-k + sparse attention)
