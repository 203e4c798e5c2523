"""Activation kernels: fused bias + activation forward, Hadamard backward.

An activation is an integer code inside the kernels (``fastnn.activations``
maps names to codes). Derivatives are computed from the saved forward output
``h`` (``h > 0``, ``h (1 - h)``, ``1 - h**2``), so the pre-activation is never
stored.
"""

import math

from numba import njit

from ._config import JIT

IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH = 0, 1, 2, 3, 4
LEAKY_SLOPE = 0.01


# The scalar helpers take the constants 0, 1 and the leaky slope already in
# the array's dtype: a Python literal would silently widen float32 to float64.

@njit(inline="always", **JIT)
def activate(v, code, zero, one, slope):
    """phi(v) for one scalar."""
    if code == RELU:
        return v if v > zero else zero
    if code == LEAKY_RELU:
        return v if v > zero else v * slope
    if code == SIGMOID:
        return one / (one + math.exp(-v))
    if code == TANH:
        return math.tanh(v)
    return v


@njit(inline="always", **JIT)
def derivative(h, code, zero, one, slope):
    """phi'(u) for one scalar, from the forward output h = phi(u)."""
    if code == RELU:
        return one if h > zero else zero
    if code == LEAKY_RELU:
        return one if h > zero else slope
    if code == SIGMOID:
        return h * (one - h)
    if code == TANH:
        return one - h * h
    return one


@njit(**JIT)
def bias_activation(u, b, code):
    """In place ``u <- phi(u + b)``; return whether every ``u + b`` was finite.

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_out)
        The product ``x @ W``, overwritten with the layer output ``h``.
    b : ndarray of shape (n_out,)
    code : int
        Activation code.

    The finiteness flag costs one multiply-add per element: ``v * 0`` is 0
    for finite ``v`` and NaN for NaN or inf, and NaN survives the sum.
    """
    n, m = u.shape
    zero, one, slope = u.dtype.type(0), u.dtype.type(1), u.dtype.type(LEAKY_SLOPE)
    check = zero
    for i in range(n):
        for j in range(m):
            v = u[i, j] + b[j]
            check += v * zero
            u[i, j] = activate(v, code, zero, one, slope)
    return check == zero


@njit(**JIT)
def activation_backward(delta, h, code):
    """In place Hadamard product ``delta <- delta * phi'(u)``, phi' from ``h``.

    Parameters
    ----------
    delta : ndarray of shape (n_samples, n_units)
    h : ndarray of shape (n_samples, n_units)
        The saved forward output ``phi(u)`` of the same layer.
    code : int
    """
    if code == IDENTITY:
        return
    n, m = delta.shape
    zero, one, slope = h.dtype.type(0), h.dtype.type(1), h.dtype.type(LEAKY_SLOPE)
    for i in range(n):
        for j in range(m):
            delta[i, j] *= derivative(h[i, j], code, zero, one, slope)
