"""Property tests: every kernel against the numpy reference over random shapes, dtypes, values."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn import reference
from fastnn.activations import ACTIVATIONS
from fastnn.kernels import activations as ka
from fastnn.kernels import dense as kd
from fastnn.kernels import losses as kl
from fastnn.kernels import optimizers as ko

RTOL = {np.float32: 2e-4, np.float64: 1e-10}
SETTINGS = settings(max_examples=40, deadline=None)

shapes = st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))
dtypes = st.sampled_from([np.float32, np.float64])
activations = st.sampled_from(sorted(ACTIVATIONS))
scales = st.sampled_from([1e-3, 1.0, 30.0])


def draw_array(rng, shape, dtype, scale):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def close(got, want, dtype):
    want = np.asarray(want, dtype=np.float64)
    floor = np.abs(want).max(initial=0.0) * RTOL[dtype] + np.finfo(dtype).tiny
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=floor)


NO_WEIGHTS = np.zeros(0)  # unweighted: every sample weighs 1


@SETTINGS
@given(shapes, dtypes, activations, scales, st.integers(0, 2**32 - 1))
def test_dense_forward_matches_reference(shape, dtype, act, scale, seed):
    n, m_in, m_out = shape
    rng = np.random.default_rng(seed)
    x, W = draw_array(rng, (n, m_in), dtype, scale), draw_array(rng, (m_in, m_out), dtype, 1.0)
    b = draw_array(rng, (m_out,), dtype, 1.0)
    h = np.empty((n, m_out), dtype)
    assert kd.dense_forward(x, W, b, ACTIVATIONS[act].code, h)
    close(h, reference.FORWARD[act](x.astype(np.float64) @ W + b), dtype)


@SETTINGS
@given(shapes, dtypes, activations, st.integers(0, 2**32 - 1))
def test_backward_and_gradients_match_reference(shape, dtype, act, seed):
    n, m_in, m_out = shape
    rng = np.random.default_rng(seed)
    x = draw_array(rng, (n, m_in), dtype, 1.0)
    W = draw_array(rng, (m_in, m_out), dtype, 1.0)
    delta = draw_array(rng, (n, m_out), dtype, 1.0)
    h_prev = reference.FORWARD[act](draw_array(rng, (n, m_in), dtype, 2.0)).astype(dtype)
    delta_prev = np.empty((n, m_in), dtype)
    kd.dense_backward_delta(delta, W, h_prev, ACTIVATIONS[act].code, delta_prev)
    close(delta_prev, (delta @ W.T) * reference.DERIVATIVE[act](h_prev), dtype)
    dW, db = np.empty((m_in, m_out), dtype), np.empty(m_out, dtype)
    kd.dense_gradients(x, delta, dW, db)
    close(dW, x.T.astype(np.float64) @ delta, dtype)
    close(db, delta.astype(np.float64).sum(axis=0), dtype)


@SETTINGS
@given(st.integers(1, 9), st.integers(1, 7), dtypes, st.sampled_from([1e-2, 1.0, 50.0, 1e4]),
       st.integers(0, 2**32 - 1))
def test_loss_kernels_match_reference(n, m, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    u = draw_array(rng, (n, m), dtype, scale)
    labels = rng.integers(0, m, n)
    onehot = np.eye(m, dtype=dtype)[labels]
    t01 = rng.integers(0, 2, (n, m)).astype(dtype)
    counts = rng.poisson(2.0, (n, m)).astype(dtype)
    u64 = u.astype(np.float64)
    # Log-means within exp's float32 range (|u| of 1e4 would mean exp(1e4)).
    log_mu = np.clip(u, -30, 30)
    log_mu64 = log_mu.astype(np.float64)
    for kernel, logits, target, (want_loss, want_delta) in (
            (kl.softmax_cross_entropy, u, labels, reference.cross_entropy(u64, labels)),
            (kl.softmax_cross_entropy_targets, u, onehot,
             reference.cross_entropy_targets(u64, onehot)),
            (kl.sigmoid_binary_cross_entropy, u, t01, reference.binary_cross_entropy(u64, t01)),
            (kl.poisson_deviance, log_mu, counts, reference.poisson_deviance(log_mu64, counts))):
        delta = np.empty_like(logits)
        loss = kernel(logits, target, NO_WEIGHTS, float(n), delta)
        assert np.isfinite(loss) and np.isfinite(delta).all()
        close(delta, want_delta, dtype)
        # The loss is accumulated in float64, but float32 inputs carry ulp(|u|).
        assert abs(loss - want_loss) <= RTOL[dtype] * max(1.0, abs(want_loss), scale)


@SETTINGS
@given(st.integers(1, 50), dtypes, st.sampled_from(["sgd", "momentum", "adam", "adamw", "rmsprop"]),
       st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_optimizer_kernel_matches_reference(size, dtype, name, t, seed):
    from fastnn import optimizers

    opt = {"sgd": optimizers.SGD(0.1, weight_decay=0.01),
           "momentum": optimizers.SGD(0.1, momentum=0.9, nesterov=True),
           "adam": optimizers.Adam(0.01, weight_decay=0.01),
           "adamw": optimizers.AdamW(0.01),
           "rmsprop": optimizers.RMSprop(0.01, momentum=0.5)}[name]
    rng = np.random.default_rng(seed)
    w, g = draw_array(rng, size, dtype, 1.0), draw_array(rng, size, dtype, 1.0)
    s1, s2 = draw_array(rng, size, dtype, 0.1), np.abs(draw_array(rng, size, dtype, 0.1))
    ref = [a.astype(np.float64) for a in (w, g, s1, s2)]
    ko.optimizer_update(opt.code, w, g, s1, s2, t, opt.hyper_array())
    reference.optimizer_update(opt.name, ref[0], ref[1], ref[2], ref[3], t, opt.hyperparameters())
    for got, want in zip((w, s1, s2), (ref[0], ref[2], ref[3])):
        close(got, want, dtype)


@SETTINGS
@given(shapes, dtypes, st.sampled_from([np.nan, np.inf, -np.inf]), st.integers(0, 2**32 - 1))
def test_bias_activation_flags_any_non_finite_value(shape, dtype, bad, seed):
    n, m, _ = shape
    rng = np.random.default_rng(seed)
    u = draw_array(rng, (n, m), dtype, 1.0)
    u[rng.integers(n), rng.integers(m)] = bad
    for act in ACTIVATIONS.values():
        assert not ka.bias_activation(u.copy(), np.zeros(m, dtype), act.code)
