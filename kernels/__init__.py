"""Numba kernels of fastnn (installed as ``fastnn.kernels``)."""

from ._config import invalidate_stale_cache

invalidate_stale_cache()
