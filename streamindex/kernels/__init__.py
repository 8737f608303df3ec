"""Triton kernels (one concern per module)."""
