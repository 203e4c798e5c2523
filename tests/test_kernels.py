"""Every numba kernel against the pure-numpy reference (``fastnn.reference``).

Parametrized over dtype x tiny shapes (odd sizes, one-row batches) x activation.
Inputs are drawn in float64, rounded to the kernel's dtype, and the reference is
evaluated in float64 on the rounded values, so the only difference left is the
kernel's own rounding (see ``conftest.TOL``).
"""

import numpy as np
import pytest
from numba import njit

import fastnn
from fastnn import data, reference
from fastnn.activations import ACTIVATIONS
from fastnn.kernels import activations as ka
from fastnn.kernels import dense as kd
from fastnn.kernels import gather as kg
from fastnn.kernels import losses as kl
from fastnn.kernels import optimizers as ko
from fastnn.kernels import forward as kf
from fastnn.kernels import step as ks
from fastnn.kernels import team as kteam
from fastnn.kernels.blas import gemm

from conftest import (ACTIVATION_NAMES, DTYPES, assert_close, flat, make_net, make_problem,
                      reference_loss_and_gradients)

# (n_samples, n_in, n_out): a one-row batch, odd sizes, a width-1 layer.
SHAPES = [(1, 3, 2), (5, 7, 3), (4, 1, 5)]


def draw(rng, shape, dtype, scale=1.0):
    """Standard normal values rounded to ``dtype`` (C-contiguous)."""
    return (scale * rng.standard_normal(shape)).astype(dtype)


def f64(a):
    return np.asarray(a, np.float64)


def code(name):
    return ACTIVATIONS[name].code


pytestmark = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)


# ---- activations -----------------------------------------------------------------

NO_WEIGHTS = np.zeros(0)  # unweighted: every sample weighs 1


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", ACTIVATION_NAMES)
def test_bias_activation(dtype, shape, act, rng):
    n, _, m = shape
    u, b = draw(rng, (n, m), dtype, 2.0), draw(rng, m, dtype)
    expected = reference.FORWARD[act](f64(u) + f64(b))
    ok = ka.bias_activation(u, b, code(act))
    assert ok is True
    assert_close(u, expected, dtype)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("act", ACTIVATION_NAMES)
def test_bias_activation_flags_nonfinite(dtype, act, bad, rng):
    u, b = draw(rng, (3, 5), dtype), draw(rng, 5, dtype)
    u[1, 2] = bad
    assert ka.bias_activation(u, b, code(act)) is False
    # A bias can bring the non-finite value in too.
    u, b = draw(rng, (3, 5), dtype), draw(rng, 5, dtype)
    b[4] = bad
    assert ka.bias_activation(u, b, code(act)) is False


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", ACTIVATION_NAMES)
def test_activation_backward(dtype, shape, act, rng):
    n, _, m = shape
    h = reference.FORWARD[act](draw(rng, (n, m), np.float64, 2.0)).astype(dtype)
    delta = draw(rng, (n, m), dtype)
    expected = f64(delta) * reference.DERIVATIVE[act](f64(h))
    ka.activation_backward(delta, h, code(act))
    assert_close(delta, expected, dtype)


# ---- dense layer kernels (and through them blas.gemm with NN, TN and NT) --------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", ACTIVATION_NAMES)
def test_dense_forward(dtype, shape, act, rng):
    n, n_in, n_out = shape
    x, W, b = draw(rng, (n, n_in), dtype), draw(rng, (n_in, n_out), dtype), draw(rng, n_out, dtype)
    h = np.full((n, n_out), np.nan, dtype)  # garbage in the output buffer must not leak
    assert kd.dense_forward(x, W, b, code(act), h) is True
    expected = reference.forward(f64(x), [f64(W)], [f64(b)], [act])[0]
    assert_close(h, expected, dtype)


def test_dense_forward_flags_nan_input(dtype, rng):
    x, W, b = draw(rng, (3, 4), dtype), draw(rng, (4, 2), dtype), draw(rng, 2, dtype)
    x[2, 1] = np.nan
    assert kd.dense_forward(x, W, b, code("relu"), np.empty((3, 2), dtype)) is False


@pytest.mark.parametrize("shape", SHAPES)
def test_dense_gradients(dtype, shape, rng):
    n, n_in, n_out = shape
    x, delta = draw(rng, (n, n_in), dtype), draw(rng, (n, n_out), dtype)
    dW, db = np.full((n_in, n_out), np.nan, dtype), np.full(n_out, np.nan, dtype)
    kd.dense_gradients(x, delta, dW, db)
    assert_close(dW, f64(x).T @ f64(delta), dtype)
    assert_close(db, f64(delta).sum(axis=0), dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", ACTIVATION_NAMES)
def test_dense_backward_delta(dtype, shape, act, rng):
    n, n_in, n_out = shape
    delta, W = draw(rng, (n, n_out), dtype), draw(rng, (n_in, n_out), dtype)
    h_prev = reference.FORWARD[act](draw(rng, (n, n_in), np.float64)).astype(dtype)
    delta_prev = np.full((n, n_in), np.nan, dtype)
    kd.dense_backward_delta(delta, W, h_prev, code(act), delta_prev)
    expected = (f64(delta) @ f64(W).T) * reference.DERIVATIVE[act](f64(h_prev))
    assert_close(delta_prev, expected, dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_dense_sgd_step(dtype, shape, weight_decay, rng):
    n, n_in, n_out = shape
    x, delta = draw(rng, (n, n_in), dtype), draw(rng, (n, n_out), dtype)
    W, b = draw(rng, (n_in, n_out), dtype), draw(rng, n_out, dtype)
    lr = 0.3
    expected_W, expected_b = f64(W).copy(), f64(b).copy()
    hp = dict(lr=lr, weight_decay=weight_decay, momentum=0.0, dampening=0.0, nesterov=False)
    for param, grad in ((expected_W, f64(x).T @ f64(delta)), (expected_b, f64(delta).sum(0))):
        reference.optimizer_update("sgd", param, grad, None, None, 1, hp)
    kd.dense_sgd_step(x, delta, W, b, lr, weight_decay)
    assert_close(W, expected_W, dtype)
    assert_close(b, expected_b, dtype)


# ---- blas.gemm on its own: all four transpose pairs, alpha and beta -------------

@njit(cache=False)
def _gemm(trans_a, trans_b, alpha, a, b, beta, c):
    gemm(trans_a, trans_b, alpha, a, b, beta, c)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm(dtype, trans_a, trans_b, rng):
    m, k, n = 3, 5, 2
    a = draw(rng, (k, m) if trans_a else (m, k), dtype)
    b = draw(rng, (n, k) if trans_b else (k, n), dtype)
    c = draw(rng, (m, n), dtype)
    op_a = f64(a).T if trans_a else f64(a)
    op_b = f64(b).T if trans_b else f64(b)
    expected = -0.5 * op_a @ op_b + 0.25 * f64(c)
    _gemm(trans_a, trans_b, -0.5, a, b, 0.25, c)
    assert_close(c, expected, dtype)


def test_gemm_on_leading_row_slice(dtype, rng):
    # The training kernels pass the first r rows of a larger C-contiguous buffer.
    a, b = draw(rng, (6, 4), dtype), draw(rng, (4, 3), dtype)
    c = np.zeros((6, 3), dtype)
    _gemm(False, False, 1.0, a[:2], b, 0.0, c[:2])
    assert_close(c[:2], f64(a[:2]) @ f64(b), dtype)
    assert not c[2:].any()


# ---- mini-batch gather -------------------------------------------------------------

# (n_rows, n_cols, batch): batches that end inside perm, a partial last batch,
# rows narrower and wider than a cache line.
GATHER_CASES = [(10, 3, 4), (9, 37, 4), (5, 1, 5), (40, 200, 7)]


SOURCE_KINDS = (np.float32, np.float64, np.uint8, np.int8, np.uint16, np.int16, np.int32,
                np.int64)


def source_values(kind, shape, rng):
    if np.dtype(kind).kind == "f":
        return rng.standard_normal(shape).astype(kind)
    info = np.iinfo(kind)
    low, high = max(info.min, -2 ** 20), min(info.max, 2 ** 20)
    return rng.integers(low, high, shape, endpoint=True).astype(kind)


@pytest.mark.parametrize("n, m, batch", GATHER_CASES)
@pytest.mark.parametrize("kind", SOURCE_KINDS)
@pytest.mark.parametrize("sort", [False, True])
def test_gather_rows_equals_fancy_indexing(dtype, n, m, batch, kind, sort, rng):
    # Every batch of every step, prefetching past the batch and up to the end of
    # perm; bit-identical to X[perm[...]].astype(dtype), whatever the order of reads.
    X = source_values(kind, (n, m), rng)
    src = data.source(X)
    perm = rng.permutation(n)
    out = np.full((batch + 1, m), np.nan, dtype)
    for start in range(0, n, batch):
        r = min(batch, n - start)
        order = data.read_order(perm, batch)[start:start + r] if sort else np.zeros(0, np.int64)
        assert kg.gather_rows(src.values, perm, start, r, out, 1.0, 0.0, False, order) == -1
        np.testing.assert_array_equal(out[:r], X[perm[start:start + r]].astype(dtype))
    assert np.isnan(out[batch]).all()       # rows past r untouched


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_gather_rescales_as_numpy_does(dtype, kind, rng):
    """``x * scale + offset`` in the dtype, a rounded product then a rounded sum (no FMA)."""
    X = source_values(kind, (50, 13), rng)
    src = data.source(X)
    perm = rng.permutation(50)
    out = np.empty((50, 13), dtype)
    scale, offset = 1 / 255, -0.1234567
    kg.gather_rows(src.values, perm, 0, 50, out, scale, offset, True, np.zeros(0, np.int64))
    dt = np.dtype(dtype).type
    np.testing.assert_array_equal(out, X[perm].astype(dtype) * dt(scale) + dt(offset))


@pytest.mark.parametrize("bad, message", [(np.nan, "nan"), (np.inf, "inf"), (1e300, "big")])
def test_gather_finds_the_first_bad_value(dtype, bad, message, rng):
    X = rng.standard_normal((20, 6))
    X[13, 4] = bad
    src = data.source(X)
    perm = rng.permutation(20)
    out = np.empty((20, 6), dtype)
    found = kg.gather_rows(src.values, perm, 0, 20, out, 1.0, 0.0, False, np.zeros(0, np.int64))
    if message == "big" and dtype == np.float64:
        assert found == -1                  # 1e300 fits in float64
    else:
        assert found == 13 * 6 + 4


@pytest.mark.parametrize("kind", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64])
def test_gather_labels(dtype, kind, rng):
    # Labels are int64 whatever the source's integer kind (and the network's dtype);
    # out-of-range ones are found.
    y, perm = rng.integers(0, 9, 11).astype(kind), rng.permutation(11)
    src = data.source(y)
    out = np.full(5, -1, np.int64)
    assert kg.gather_labels(src.values, perm, 8, 3, out, 9) == -1
    np.testing.assert_array_equal(out, [*y[perm[8:]], -1, -1])
    assert kg.gather_labels(src.values, perm, 0, 11, np.empty(11, np.int64), 8) == \
        (np.flatnonzero(y >= 8).min() if (y >= 8).any() else -1)      # the smallest such row
    if np.iinfo(kind).min < 0:
        y[perm[2]] = -1
        assert kg.gather_labels(src.values, perm, 0, 11, np.empty(11, np.int64),
                                9) == perm[2]


# ---- losses ------------------------------------------------------------------------

LOSS_SHAPES = [(1, 2), (5, 3), (4, 7)]


@pytest.mark.parametrize("shape", LOSS_SHAPES)
@pytest.mark.parametrize("in_place", [False, True], ids=["out", "inplace"])
def test_softmax_cross_entropy(dtype, shape, in_place, rng):
    n, m = shape
    u, y = draw(rng, shape, dtype, 3.0), rng.integers(0, m, n)
    loss_ref, delta_ref = reference.cross_entropy(f64(u), y)
    delta = u if in_place else np.full(shape, np.nan, dtype)
    loss = kl.softmax_cross_entropy(u, y, NO_WEIGHTS, float(u.shape[0]), delta)
    assert_close(loss, loss_ref, dtype)
    assert_close(delta, delta_ref, dtype)


@pytest.mark.parametrize("shape", LOSS_SHAPES)
@pytest.mark.parametrize("soft", [False, True], ids=["onehot", "soft"])
def test_softmax_cross_entropy_targets(dtype, shape, soft, rng):
    n, m = shape
    u = draw(rng, shape, dtype, 3.0)
    t = rng.dirichlet(np.ones(m), n) if soft else np.eye(m)[rng.integers(0, m, n)]
    t = t.astype(dtype)
    loss_ref, delta_ref = reference.cross_entropy_targets(f64(u), f64(t))
    delta = np.full(shape, np.nan, dtype)
    loss = kl.softmax_cross_entropy_targets(u, t, NO_WEIGHTS, float(u.shape[0]), delta)
    assert_close(loss, loss_ref, dtype)
    assert_close(delta, delta_ref, dtype)


@pytest.mark.parametrize("shape", LOSS_SHAPES)
def test_sigmoid_binary_cross_entropy(dtype, shape, rng):
    u = draw(rng, shape, dtype, 3.0)
    u[0, 0] = 40.0  # both branches of the stable formula, and saturation
    u[-1, -1] = -40.0
    t = rng.integers(0, 2, shape).astype(dtype)
    loss_ref, delta_ref = reference.binary_cross_entropy(f64(u), f64(t))
    delta = np.full(shape, np.nan, dtype)
    loss = kl.sigmoid_binary_cross_entropy(u, t, NO_WEIGHTS, float(u.shape[0]), delta)
    assert_close(loss, loss_ref, dtype)
    assert_close(delta, delta_ref, dtype)


@pytest.mark.parametrize("shape", LOSS_SHAPES)
@pytest.mark.parametrize("act", ACTIVATION_NAMES)
def test_mean_squared_error(dtype, shape, act, rng):
    h = reference.FORWARD[act](draw(rng, shape, np.float64)).astype(dtype)
    t = draw(rng, shape, dtype)
    loss_ref, delta_ref = reference.mean_squared_error(f64(h), f64(t), act)
    delta = np.full(shape, np.nan, dtype)
    loss = kl.mean_squared_error(h, t, NO_WEIGHTS, float(h.shape[0]), code(act), delta)
    assert_close(loss, loss_ref, dtype)
    assert_close(delta, delta_ref, dtype)


@pytest.mark.parametrize("shape", LOSS_SHAPES)
@pytest.mark.parametrize("in_place", [False, True], ids=["out", "inplace"])
def test_poisson_deviance(dtype, shape, in_place, rng):
    u = draw(rng, shape, dtype, 2.0)
    u[0, 0] = 30.0  # a mean of 1e13, and a target of 0 (the exp(u) branch)
    t = rng.poisson(2.0, shape).astype(dtype)
    t[0, 0] = 0
    t[-1, -1] = 7
    loss_ref, delta_ref = reference.poisson_deviance(f64(u), f64(t))
    delta = u if in_place else np.full(shape, np.nan, dtype)
    loss = kl.poisson_deviance(u, t, NO_WEIGHTS, float(u.shape[0]), delta)
    assert_close(loss, loss_ref, dtype)
    assert_close(delta, delta_ref, dtype)


def test_poisson_deviance_is_zero_at_a_perfect_fit(dtype):
    """exp(u) = t: every term vanishes (no large terms cancelling to rounding noise)."""
    t = np.array([[1.0, 3.0, 1e6], [0.5, 20.0, 1e-3]], dtype)
    u = np.log(t.astype(np.float64)).astype(dtype)
    delta = np.empty_like(u)
    loss = kl.poisson_deviance(u, t, NO_WEIGHTS, float(u.shape[0]), delta)
    # Only the rounding of u = log t remains: t * d^2 / 2 with |d| <= ulp(u).
    d = np.spacing(np.abs(u).astype(dtype)).astype(np.float64)
    assert 0 <= loss <= (t * d * d).sum() + 1e-300


# ---- optimizers: every code, several steps, non-default hyperparameters ---------

OPTIMIZERS = {
    "sgd": lambda: fastnn.SGD(lr=0.1, weight_decay=0.05),
    "sgd_momentum": lambda: fastnn.SGD(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.05),
    "sgd_nesterov": lambda: fastnn.SGD(lr=0.1, momentum=0.8, nesterov=True),
    "adam": lambda: fastnn.Adam(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
    "adamw": lambda: fastnn.AdamW(lr=0.01, betas=(0.85, 0.99), weight_decay=0.2),
    "rmsprop": lambda: fastnn.RMSprop(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1),
    "rmsprop_momentum": lambda: fastnn.RMSprop(lr=0.01, alpha=0.95, momentum=0.7),
}


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
@pytest.mark.parametrize("size", [1, 7])
def test_optimizer_update(dtype, opt_name, size, rng):
    opt = OPTIMIZERS[opt_name]()
    w = draw(rng, size, dtype)
    s1, s2 = np.zeros(size, dtype), np.zeros(size, dtype)
    w_ref, s1_ref, s2_ref = f64(w).copy(), np.zeros(size), np.zeros(size)
    hyper, hp = opt.hyper_array(), opt.hyperparameters()
    for t in (1, 2, 3):
        g = draw(rng, size, dtype)
        ko.optimizer_update(opt.code, w, g, s1, s2, t, hyper)
        reference.optimizer_update(opt.name, w_ref, f64(g), s1_ref, s2_ref, t, hp)
        assert_close(w, w_ref, dtype)
        assert_close(s1, s1_ref, dtype)
        assert_close(s2, s2_ref, dtype)




@pytest.mark.parametrize("beta2", [0.999, 0.9999])
def test_adam_second_moment_rate(dtype, beta2, request, rng):
    """After Adam's first step ``v = (1 - beta2) g**2`` and the step is ``lr * g / |g|``.

    Both hold to a few float32 roundings (~3 u = 2e-7); the default beta2 = 0.999
    is where (1 - beta2) is most sensitive to how it is rounded.
    """
    opt = fastnn.Adam(lr=0.01, betas=(0.9, beta2), eps=1e-30)
    g = draw(rng, 5, dtype)
    w, s1, s2 = np.zeros(5, dtype), np.zeros(5, dtype), np.zeros(5, dtype)
    ko.optimizer_update(opt.code, w, g, s1, s2, 1, opt.hyper_array())
    bound = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(s2, (1 - beta2) * f64(g) ** 2, rtol=bound)
    np.testing.assert_allclose(w, -0.01 * np.sign(f64(g)), rtol=bound)


# ---- whole-network kernels ----------------------------------------------------------

NETS = {
    # widths, activations as the kernels apply them, loss case
    "1layer_mse": ([3, 2], ["sigmoid"], "mse"),
    "2layer_ce": ([5, 7, 3], ["relu", "identity"], "ce_labels"),
    "3layer_ce_targets": ([4, 3, 5, 2], ["tanh", "leaky_relu", "identity"], "ce_onehot"),
    "3layer_bce": ([1, 5, 3, 3], ["sigmoid", "relu", "identity"], "bce"),
    "2layer_poisson": ([3, 6, 2], ["tanh", "identity"], "poisson"),
}
LOSS_CODES = {"mse": kl.MSE, "ce_labels": kl.CE_LABELS, "ce_onehot": kl.CE_TARGETS,
              "bce": kl.BCE, "poisson": kl.POISSON}
REF_LOSS = {"mse": "mse", "ce_labels": "cross_entropy", "ce_onehot": "cross_entropy",
            "bce": "binary_cross_entropy", "poisson": "poisson"}


def flat_net(widths, acts, dtype, rng):
    """``theta``, ``sizes``, ``codes`` and the float64 ``Ws``, ``bs`` of a random network."""
    Ws = [draw(rng, (a, b), dtype) for a, b in zip(widths[:-1], widths[1:])]
    bs = [draw(rng, b, dtype) for b in widths[1:]]
    theta = np.concatenate([a.ravel() for pair in zip(Ws, bs) for a in pair])
    return (theta, np.array(widths, np.int64), np.array([code(a) for a in acts], np.int64),
            [f64(W) for W in Ws], [f64(b) for b in bs])


def problem(case, n, widths, dtype, rng):
    x = draw(rng, (n, widths[0]), dtype)
    m = widths[-1]
    labels, targets = np.zeros(0, np.int64), np.zeros((0, m), dtype)
    if case == "ce_labels":
        labels = rng.integers(0, m, n)
    elif case == "ce_onehot":
        targets = np.eye(m, dtype=dtype)[rng.integers(0, m, n)]
    elif case == "bce":
        targets = rng.integers(0, 2, (n, m)).astype(dtype)
    elif case == "poisson":
        targets = rng.poisson(1.5, (n, m)).astype(dtype)
    else:
        targets = draw(rng, (n, m), dtype)
    return x, labels, targets


NO_DROPOUT = np.zeros(0)  # the dropout rates argument of the training kernels: none


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("tiles", [1, 3])
def test_forward_tiles(dtype, net, n, tiles, rng):
    """The step's forward phase by tiles of columns equals the reference forward pass."""
    widths, acts, _ = NETS[net]
    theta, sizes, codes, Ws, bs = flat_net(widths, acts, dtype, rng)
    x = draw(rng, (n, widths[0]), dtype)
    cap = n + 2  # the buffer may hold more rows than the batch
    hbuf = np.full(cap * sum(widths[1:]), np.nan, dtype)
    woff, hoff = ks.layer_offsets(sizes, cap)
    ftiles = np.minimum(tiles, sizes[1:])
    no_csr = np.zeros(0, np.int64)
    ok = ks.forward_tiles(0, 1, x.reshape(-1), 0, no_csr, no_csr, np.zeros(0, dtype), theta,
                          sizes, codes, NO_DROPOUT, 0, 0, 0, hbuf, woff, hoff, ftiles, n,
                          np.zeros(kteam.TEAM_STATE_SIZE, np.int64), 0)
    assert ok is True
    offset = 0
    for h_ref, m in zip(reference.forward(f64(x), Ws, bs, acts), widths[1:]):
        h = hbuf[offset:offset + n * m].reshape(n, m)
        assert_close(h, h_ref, dtype)
        offset += cap * m


def backend_loss_and_gradients(x, labels, targets, theta, widths, acts, case, dtype):
    """``NumbaBackend.loss_and_gradients``: one step of the training kernel with no update."""
    from fastnn.activations import ACTIVATIONS as A
    from fastnn.backends import NumbaBackend
    from fastnn.network import NetSpec

    spec = NetSpec(sizes=np.array(widths, np.int64),
                   codes=np.array([A[a].code for a in acts], np.int64), rates=NO_DROPOUT, seed=0,
                   kernel_activations=tuple(acts), loss=None, dtype=np.dtype(dtype),
                   rescaling=None)
    return NumbaBackend().loss_and_gradients(spec, theta, x, labels, targets, LOSS_CODES[case])


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("n", [1, 7])
def test_loss_and_gradients_kernel(dtype, net, n, rng):
    widths, acts, case = NETS[net]
    theta, sizes, codes, Ws, bs = flat_net(widths, acts, dtype, rng)
    x, labels, targets = problem(case, n, widths, dtype, rng)
    loss, grad = backend_loss_and_gradients(x, labels, targets, theta, widths, acts, case, dtype)
    y = labels if case == "ce_labels" else f64(targets)
    loss_ref, grads_ref = reference.loss_and_gradients(f64(x), y, Ws, bs, acts, REF_LOSS[case])
    assert_close(loss, loss_ref, dtype)
    assert_close(grad, flat(grads_ref), dtype)


def test_loss_and_gradients_kernel_nan_input_gives_nan_loss(dtype, rng):
    widths, acts, case = NETS["2layer_ce"]
    theta, sizes, codes, _, _ = flat_net(widths, acts, dtype, rng)
    x, labels, targets = problem(case, 3, widths, dtype, rng)
    x[1, 0] = np.inf
    loss, _ = backend_loss_and_gradients(x, labels, targets, theta, widths, acts, case, dtype)
    assert np.isnan(loss)


def predict_raw(src, scale, offset, rescale, theta, sizes, codes, cap, out, status):
    """``kernels.forward.predict_raw`` on one thread, in chunks of ``cap`` rows."""
    n0 = int(sizes[0])
    full = np.zeros(2, np.int64)
    ok = kf.predict_raw(0, 1, np.zeros(1, np.int64), src.values, *src.csr_arrays(theta.dtype),
                        scale, offset, rescale, theta, sizes, codes,
                        np.ones(len(sizes) - 1, np.int64),
                        np.empty(cap * int(sizes[1:].sum()), theta.dtype),
                        np.empty(cap * n0, theta.dtype), cap, out, full, 0)
    status[0] = full[0]
    return ok


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("n, cap", [(1, 1), (7, 3), (7, 7)])
@pytest.mark.parametrize("kind", [None, np.float32, np.float64, np.uint8])
def test_predict_raw_in_chunks(dtype, net, n, cap, kind, rng):
    """Rows in the network's dtype are read in place, others converted (and rescaled)."""
    widths, acts, _ = NETS[net]
    theta, sizes, codes, Ws, bs = flat_net(widths, acts, dtype, rng)
    X = draw(rng, (n, widths[0]), dtype) if kind is None else source_values(kind, (n, widths[0]),
                                                                            rng)
    rescale = kind is not None
    scale, offset = (0.5, 0.25) if rescale else (1.0, 0.0)
    src = data.source(X)
    out = np.full((n, widths[-1]), np.nan, dtype)
    status = np.zeros(1, np.int64)
    ok = predict_raw(src, scale, offset, rescale, theta, sizes, codes, cap, out, status)
    assert ok is True and status[0] == -1
    dt = np.dtype(dtype).type
    x = X.astype(dtype) * dt(scale) + dt(offset) if rescale else X
    assert_close(out, reference.forward(f64(x), Ws, bs, acts)[-1], dtype)


def test_predict_raw_reports_a_bad_converted_value(dtype, rng):
    widths, acts, _ = NETS["2layer_ce"]
    theta, sizes, codes, _, _ = flat_net(widths, acts, dtype, rng)
    X = rng.standard_normal((9, widths[0])).astype(np.float32 if dtype == np.float64 else
                                                    np.float64)
    X[6, 1] = np.nan
    status = np.zeros(1, np.int64)
    ok = predict_raw(data.source(X), 1.0, 0.0, False, theta, sizes, codes, 4,
                     np.empty((9, widths[-1]), dtype), status)
    assert ok is False and status[0] == 6 * widths[0] + 1


# ---- train_steps, through Network.fit, against a reference training loop --------

TRAIN_OPTIMIZERS = ["sgd", "sgd_momentum", "adam", "rmsprop_momentum"]


@pytest.mark.parametrize("opt_name", TRAIN_OPTIMIZERS)
@pytest.mark.parametrize("case", ["ce_labels", "ce_onehot", "bce", "mse_tanh", "poisson"])
def test_train_steps_match_reference_loop(dtype, opt_name, case, rng):
    """One epoch of ``fit`` (numba backend, no shuffle) equals a hand-rolled numpy loop.

    7 samples in batches of 3: two full steps and a partial one. The
    reference runs in float64 from the same initial weights, so in float32
    the difference is the kernels' rounding carried over 3 steps.
    """
    widths = [4, 5, 3]
    net = make_net(widths, hidden="tanh", case=case, dtype=np.dtype(dtype).name)
    X, y = make_problem(widths, case, 7, seed=3)
    Xd = X.astype(dtype).astype(np.float64)  # what the network sees
    theta_ref = net.get_params().astype(np.float64)
    opt = OPTIMIZERS[opt_name]()

    ref_net = make_net(widths, hidden="tanh", case=case, dtype="float64")
    ref_net.set_params(theta_ref)
    s1, s2 = np.zeros_like(theta_ref), np.zeros_like(theta_ref)
    losses = []
    for t, rows in enumerate([slice(0, 3), slice(3, 6), slice(6, 7)], start=1):
        loss, grads = reference_loss_and_gradients(ref_net, Xd[rows], y[rows])
        losses.append(loss * len(Xd[rows]))
        reference.optimizer_update(opt.name, theta_ref, flat(grads), s1, s2, t,
                                   opt.hyperparameters())
        ref_net.set_params(theta_ref)

    history = net.fit(X, y, epochs=1, batch_size=3, optimizer=opt, shuffle=False, verbose=0)
    assert opt.state["t"] == 3
    # Float32: 3 steps of rounding, each ~1e-6 relative; see test_backends for the argument.
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(net.get_params(), theta_ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(history.history["loss"][0], sum(losses) / 7, rtol=rtol)
