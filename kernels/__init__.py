"""Numba kernels of fastnn (installed as ``fastnn.kernels``)."""
