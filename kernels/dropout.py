"""Inverted dropout with a counter-based random mask.

Whether unit ``j`` of row ``i`` is kept at optimizer step ``t`` in layer ``l``
is a pure function of ``(seed, t, l, i * width + j)`` (a splitmix64 hash), so
the mask is never stored: the backward pass recomputes it, any chunking of
the steps gives the same masks, a resumed run repeats them exactly, and the
numpy reference draws the very same ones (``fastnn.reference.dropout_scale``).
"""

import numpy as np
from numba import njit

from ._config import JIT
from .activations import LEAKY_SLOPE, derivative
from .team import row

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(inline="always", **JIT)
def splitmix64(z):
    """splitmix64's finalizer of the uint64 ``z`` (a bijection that mixes every bit)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always", **JIT)
def uniform(seed, step, layer, index):
    """A uniform float64 in [0, 1) determined by its four integer arguments."""
    z = splitmix64(np.uint64(seed) * _GOLDEN + np.uint64(step))
    z = splitmix64(z + np.uint64(layer) * _GOLDEN + np.uint64(index))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(**JIT)
def dropout_forward(h, rate, seed, step, layer, row0, width, col0):
    """In place ``h <- h * m / (1 - rate)`` with ``m`` ~ Bernoulli(1 - rate).

    Parameters
    ----------
    h : ndarray of shape (n_samples, n_units)
        A tile of the layer's output: its rows ``row0 ...`` of the batch and
        units ``col0 ...`` of the layer's ``width`` (a share of a batch, or a
        tile of columns, draws the mask of the whole batch's units there).
    rate : float
        Probability of dropping a unit, in [0, 1).
    seed, step, layer : int
        Determine the mask (see the module docstring).
    row0, width, col0 : int
    """
    n, m = h.shape
    scale = h.dtype.type(1.0 / (1.0 - rate))
    zero = h.dtype.type(0)
    for i in range(n):
        hi = row(h, i)
        for j in range(m):
            keep = uniform(seed, step, layer, (row0 + i) * width + col0 + j) >= rate
            hi[j] = hi[j] * scale if keep else zero


@njit(**JIT)
def dropout_backward(delta, h, code, rate, seed, step, layer, row0, width, col0):
    """In place ``delta <- delta * m / (1 - rate) * phi'(u)`` through a dropout layer.

    ``h`` is the layer's output *after* dropout: for a kept unit the
    activation output is ``h * (1 - rate)``, from which phi' is taken;
    dropped units get a zero delta. ``row0``, ``width``, ``col0`` place the
    tile as for :func:`dropout_forward`.
    """
    n, m = delta.shape
    dt = h.dtype.type
    scale, keep_fraction = dt(1.0 / (1.0 - rate)), dt(1.0 - rate)
    zero, one, slope = dt(0), dt(1), dt(LEAKY_SLOPE)
    for i in range(n):
        di, hi = row(delta, i), row(h, i)
        for j in range(m):
            if uniform(seed, step, layer, (row0 + i) * width + col0 + j) >= rate:
                di[j] *= scale * derivative(hi[j] * keep_fraction, code, zero, one, slope)
            else:
                di[j] = zero
