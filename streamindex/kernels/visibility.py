"""The visibility rule of DESIGN.md §1, shared by the Triton kernels."""
import triton
import triton.language as tl


@triton.jit
def n_visible(s, offset, ratio, T):
    """How many keys query ``s`` sees: key ``t`` is visible exactly when ``t < n_visible``, i.e.
    ``min((offset + s + 1) // ratio, T)``. Pass ``s`` as int64 where positions may pass 2^31."""
    return tl.minimum((offset + s + 1) // ratio, T)
