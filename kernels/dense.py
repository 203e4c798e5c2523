"""Dense-layer kernels: forward, input delta, weight gradients, fused SGD step.

Row-major, one sample per row: ``h = phi(x @ W + b)`` with ``W`` of shape
(n_in, n_out). Every product goes through ``blas.gemm`` (SciPy's BLAS).
"""

from numba import njit

from ._config import JIT
from .activations import activation_backward, bias_activation
from .blas import gemm
from .team import row


@njit(**JIT)
def dense_forward(x, W, b, code, h):
    """``h <- phi(x @ W + b)``; return whether the pre-activation was finite.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_in)
    W : ndarray of shape (n_in, n_out)
    b : ndarray of shape (n_out,)
    code : int
        Activation code.
    h : ndarray of shape (n_samples, n_out)
        Output buffer (must not alias ``x``).
    """
    gemm(False, False, 1.0, x, W, 0.0, h)
    return bias_activation(h, b, code)


@njit(**JIT)
def column_sums(delta, db):
    """``db[j] = sum_i delta[i, j]`` (the bias gradient)."""
    db[:] = 0
    for i in range(delta.shape[0]):
        di = row(delta, i)
        for j in range(delta.shape[1]):
            db[j] += di[j]


@njit(**JIT)
def dense_gradients(x, delta, dW, db):
    """Weight and bias gradients: ``dW = x.T @ delta``, ``db = sum_rows(delta)``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_in)
        The layer's input.
    delta : ndarray of shape (n_samples, n_out)
        d loss / d u of the layer.
    dW : ndarray of shape (n_in, n_out)
    db : ndarray of shape (n_out,)
    """
    gemm(True, False, 1.0, x, delta, 0.0, dW)
    column_sums(delta, db)


@njit(**JIT)
def dense_backward_delta(delta, W, h_prev, code_prev, delta_prev):
    """``delta_prev <- (delta @ W.T) * phi'(u_prev)``, phi' from ``h_prev``.

    Parameters
    ----------
    delta : ndarray of shape (n_samples, n_out)
    W : ndarray of shape (n_in, n_out)
    h_prev : ndarray of shape (n_samples, n_in)
        Forward output of the previous layer.
    code_prev : int
        Activation code of the previous layer.
    delta_prev : ndarray of shape (n_samples, n_in)
    """
    gemm(False, True, 1.0, delta, W, 0.0, delta_prev)
    activation_backward(delta_prev, h_prev, code_prev)


@njit(**JIT)
def dense_sgd_step(x, delta, W, b, lr, weight_decay):
    """Plain SGD fused into the gradient product.

    ``W <- (1 - lr wd) W - lr x.T @ delta`` is one gemm with beta = 1 - lr wd,
    so ``dW`` is never written; ``b <- b - lr (sum_rows(delta) + wd b)``.
    """
    gemm(True, False, -lr, x, delta, 1.0 - lr * weight_decay, W)
    rate = b.dtype.type(lr)
    keep = b.dtype.type(1.0 - lr * weight_decay)
    for j in range(b.shape[0]):
        b[j] *= keep
    for i in range(delta.shape[0]):
        di = row(delta, i)
        for j in range(delta.shape[1]):
            b[j] -= rate * di[j]
