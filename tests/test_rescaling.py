"""The Rescaling first layer: ``x * scale + offset`` in the network's dtype, saved with the model."""

import numpy as np
import pytest

import fastnn


def _nets(dtype, scale, offset, backend="numba"):
    body = [fastnn.Dense(6, 5, "tanh"), fastnn.Dense(5, 3)]
    with_layer = fastnn.Network([fastnn.Rescaling(scale, offset), *body], dtype=dtype, seed=3,
                                backend=backend)
    plain = fastnn.Network([fastnn.Dense(6, 5, "tanh"), fastnn.Dense(5, 3)], dtype=dtype,
                           seed=3, backend=backend)
    return with_layer, plain


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("raw_dtype", [np.uint8, np.int8, np.uint16])
def test_integer_input_with_rescaling_equals_scaled_floats(dtype, raw_dtype, backend):
    rng = np.random.default_rng(0)
    info = np.iinfo(raw_dtype)
    X = rng.integers(info.min, info.max, (40, 6), endpoint=True).astype(raw_dtype)
    y = rng.integers(0, 3, 40)
    scale, offset = 1 / 255, -0.5
    net, plain = _nets(dtype, scale, offset, backend)
    dt = np.dtype(dtype).type
    X_scaled = X.astype(dtype) * dt(scale) + dt(offset)      # the documented rule
    net.fit(X, y, epochs=2, batch_size=8, verbose=0)
    plain.fit(X_scaled, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(net.get_params(), plain.get_params())
    np.testing.assert_array_equal(net.predict_proba(X), plain.predict_proba(X_scaled))
    assert net.evaluate(X, y) == plain.evaluate(X_scaled, y)


def test_rescaling_is_saved_with_the_model(tmp_path):
    net, _ = _nets("float32", 0.5, 2.0)
    X = np.arange(60, dtype=np.uint8).reshape(10, 6)
    path = tmp_path / "m.npz"
    fastnn.save(net, path)
    loaded = fastnn.load(path)
    assert repr(loaded.layers[0]) == "Rescaling(0.5, offset=2.0)"
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "2", True, None])
def test_rescaling_rejects_non_numbers(bad):
    with pytest.raises(ValueError, match="Rescaling scale must be a finite number"):
        fastnn.Rescaling(bad)
    with pytest.raises(ValueError, match="Rescaling offset must be a finite number"):
        fastnn.Rescaling(1.0, bad)


def test_rescaling_only_first():
    with pytest.raises(ValueError, match="Rescaling \\(layer 1\\) must be the first layer"):
        fastnn.Network([fastnn.Dense(2, 2), fastnn.Rescaling(2.0), fastnn.Dense(2, 2)])
