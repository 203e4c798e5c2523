"""Activation kernels: fused bias + activation forward, Hadamard backward.

An activation is an integer code inside the kernels (``fastnn.activations``
maps names to codes). Derivatives are computed from the saved forward output
``h`` (``h > 0``, ``h (1 - h)``, ``1 - h**2``), so the pre-activation is never
stored.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ._config import JIT
from .team import row

IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH = 0, 1, 2, 3, 4
LEAKY_SLOPE = 0.01

# float32 tanh as Eigen/XLA compute it: an odd 13/6 rational function clamped
# to +-7.905 (beyond it tanh rounds to +-1 in float32); max error 3.5e-7
# (about 3 ulp). Made only of multiply, add, divide and min/max, so LLVM
# vectorizes it: without SVML, math.tanh and math.exp are scalar calls
# (measured: 17 ns against 0.5 ns an element).
_TANH_CLAMP = np.float32(7.90531110763549805)
_TANH_P = tuple(np.float32(c) for c in (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_TANH_Q = tuple(np.float32(c) for c in (
    4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))


def fast_tanh(v):
    """tanh: the vectorizable rational approximation in float32, exact in float64."""
    return math.tanh(v)


@overload(fast_tanh, inline="always")
def _fast_tanh(v):
    if v != types.float32:
        return lambda v: math.tanh(v)
    p1, p3, p5, p7, p9, p11, p13 = _TANH_P
    q0, q2, q4, q6 = _TANH_Q
    clamp = _TANH_CLAMP

    def impl(v):
        x = min(max(v, -clamp), clamp)
        x2 = x * x
        p = ((((((p13 * x2 + p11) * x2 + p9) * x2 + p7) * x2 + p5) * x2 + p3) * x2 + p1) * x
        q = ((q6 * x2 + q4) * x2 + q2) * x2 + q0
        return p / q

    return impl


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the low 32 bits of the integer ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32)) if bits.bitwidth > 32 else args[0]
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen


# float32 exp as Cephes' expf computes it: exp(x) = 2**n * e**r with
# n = round(x / ln 2) and |r| <= ln(2) / 2, e**r by a degree-7 polynomial
# (max error about 1 ulp), 2**n built from its exponent bits. Clamped to
# [-87.33, 88.37], where 2**n stays a normal float32: below, exp is under
# float32's smallest normal number (1.2e-38); above, within 30 % of its
# largest. Multiply, add, convert and shift only, so LLVM vectorizes it.
_EXP_LOW, _EXP_HIGH = np.float32(-87.33654475), np.float32(88.3762626647949)
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_EXP_P = tuple(np.float32(c) for c in (
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))


def fast_exp(v):
    """exp: the vectorizable Cephes form in float32, ``math.exp`` in float64."""
    return math.exp(v)


@overload(fast_exp, inline="always")
def _fast_exp(v):
    if v != types.float32:
        return lambda v: math.exp(v)
    low, high, log2e, ln2_hi, ln2_lo = _EXP_LOW, _EXP_HIGH, _LOG2E, _LN2_HI, _LN2_LO
    p0, p1, p2, p3, p4, p5 = _EXP_P
    half, one = np.float32(0.5), np.float32(1)

    def impl(v):
        x = min(max(v, low), high)
        t = x * log2e
        n = np.int32(t + half if t >= 0 else t - half)      # round half away from zero
        fn = np.float32(n)
        r = x - fn * ln2_hi - fn * ln2_lo
        p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
        e = p * r * r + r + one
        return e * _float32_from_bits((n + 127) << 23)

    return impl


def fast_sigmoid(v):
    """The logistic function ``1 / (1 + exp(-v))``; float32 through ``fast_exp`` (vectorizable)."""
    return 1 / (1 + math.exp(-v))


@overload(fast_sigmoid, inline="always")
def _fast_sigmoid(v):
    if v != types.float32:
        return lambda v: 1.0 / (1.0 + math.exp(-v))
    one = np.float32(1)
    return lambda v: one / (one + fast_exp(-v))


# The scalar helpers take the constants 0, 1 and the leaky slope already in
# the array's dtype: a Python literal would silently widen float32 to float64.

@njit(inline="always", **JIT)
def piecewise(v, code, zero, slope):
    """phi(v) for one scalar of the piecewise-linear activations (identity, relu, leaky relu)."""
    if code == RELU:
        return v if v > zero else zero
    if code == LEAKY_RELU:
        return v if v > zero else v * slope
    return v


@njit(inline="always", **JIT)
def activate(v, code, zero, one, slope):
    """phi(v) for one scalar."""
    if code == SIGMOID:
        return fast_sigmoid(v)
    if code == TANH:
        return fast_tanh(v)
    return piecewise(v, code, zero, slope)


@njit(inline="always", **JIT)
def piecewise_derivative(h, code, zero, one, slope):
    """phi'(u) for one scalar of the piecewise-linear activations, from h = phi(u)."""
    if code == RELU:
        return one if h > zero else zero
    if code == LEAKY_RELU:
        return one if h > zero else slope
    return one


@njit(inline="always", **JIT)
def derivative(h, code, zero, one, slope):
    """phi'(u) for one scalar, from the forward output h = phi(u)."""
    if code == SIGMOID:
        return h * (one - h)
    if code == TANH:
        return one - h * h
    return piecewise_derivative(h, code, zero, one, slope)


def only_piecewise(curved):
    """Whether ``curved`` is a literal False (typing time): no sigmoid or tanh to compile.

    The kernels' ``curved`` argument defaults to True (every activation); the
    training step passes a literal False when no layer is sigmoid or tanh
    (``kernels.features.CURVED``), and then only the piecewise-linear
    activations are compiled (no vectorized exp or tanh: about a tenth of
    the step's cold compile).
    """
    if isinstance(curved, types.Omitted):
        return curved.value is False
    return isinstance(curved, types.BooleanLiteral) and not curved.literal_value


def activate_as(v, code, zero, one, slope, curved):
    """:func:`activate`, or :func:`piecewise` when ``curved`` is a literal False (numba only)."""
    raise NotImplementedError


def derivative_as(h, code, zero, one, slope, curved):
    """:func:`derivative`, or :func:`piecewise_derivative` when ``curved`` is a literal False."""
    raise NotImplementedError


@overload(activate_as, prefer_literal=True, inline="always")
def _activate_as(v, code, zero, one, slope, curved):
    if only_piecewise(curved):
        return lambda v, code, zero, one, slope, curved: piecewise(v, code, zero, slope)
    return lambda v, code, zero, one, slope, curved: activate(v, code, zero, one, slope)


@overload(derivative_as, prefer_literal=True, inline="always")
def _derivative_as(h, code, zero, one, slope, curved):
    if only_piecewise(curved):
        return lambda h, code, zero, one, slope, curved: piecewise_derivative(
            h, code, zero, one, slope)
    return lambda h, code, zero, one, slope, curved: derivative(h, code, zero, one, slope)


@njit(**JIT)
def bias_activation(u, b, code, curved=True):
    """In place ``u <- phi(u + b)``; return whether every ``u + b`` was finite.

    Parameters
    ----------
    u : ndarray of shape (n_samples, n_out)
        The product ``x @ W``, overwritten with the layer output ``h``.
    b : ndarray of shape (n_out,)
    code : int
        Activation code.
    curved : bool
        False (a literal, from the training step): ``code`` is identity, relu
        or leaky relu, and only those are compiled (:func:`only_piecewise`).

    The finiteness flag costs a subtract and a compare per element: ``v - v``
    is 0 for finite ``v`` and NaN for NaN or inf. The flags are or-ed, an
    integer reduction that vectorizes in IEEE arithmetic (a float sum would
    need ``reassoc``, see ``kernels._config``).
    """
    n, m = u.shape
    zero, one, slope = u.dtype.type(0), u.dtype.type(1), u.dtype.type(LEAKY_SLOPE)
    bad = False
    for i in range(n):
        ui = row(u, i)                  # unit stride known: the loop vectorizes
        for j in range(m):
            v = ui[j] + b[j]
            bad |= v - v != zero
            ui[j] = activate_as(v, code, zero, one, slope, curved)
    return not bad


@njit(**JIT)
def activation_backward(delta, h, code, curved=True):
    """In place Hadamard product ``delta <- delta * phi'(u)``, phi' from ``h``.

    Parameters
    ----------
    delta : ndarray of shape (n_samples, n_units)
    h : ndarray of shape (n_samples, n_units)
        The saved forward output ``phi(u)`` of the same layer.
    code : int
    curved : bool
        As in :func:`bias_activation`.
    """
    if code == IDENTITY:
        return
    n, m = delta.shape
    zero, one, slope = h.dtype.type(0), h.dtype.type(1), h.dtype.type(LEAKY_SLOPE)
    for i in range(n):
        di, hi = row(delta, i), row(h, i)
        for j in range(m):
            di[j] *= derivative_as(hi[j], code, zero, one, slope, curved)
