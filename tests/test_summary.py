"""``Network.summary()``: a Keras-style table, printed and returned; ``repr`` stays one line."""

import numpy as np
import pytest

import fastnn


def network(dtype="float32"):
    return fastnn.Network([fastnn.Rescaling(1 / 255), fastnn.Dense(784, 128, "relu"),
                           fastnn.Dropout(0.2), fastnn.Dense(128, 64, "tanh"),
                           fastnn.Dense(64, 10)], dtype=dtype)


def rows(text):
    """The table rows, as lists of cells (split on runs of 2+ spaces)."""
    import re
    lines = text.splitlines()
    body = lines[lines.index(next(l for l in lines if l.startswith("---"))) + 1:]
    body = body[:body.index(next(l for l in body if l.startswith("===")))]
    return [re.split(r"\s{2,}", line.strip()) for line in body]


def test_rows_totals_and_memory(capsys):
    net = network()
    text = net.summary()
    assert capsys.readouterr().out == text + "\n"          # printed by default, once
    assert rows(text) == [
        ["0", "Rescaling(0.00392157, offset=0)", "(None, 784)", "-", "0"],
        ["1", "Dense(784, 128)", "(None, 128)", "relu", "100,480"],
        ["2", "Dropout(0.2)", "(None, 128)", "-", "0"],
        ["3", "Dense(128, 64)", "(None, 64)", "tanh", "8,256"],
        ["4", "Dense(64, 10)", "(None, 10)", "softmax (in the loss)", "650"],
    ]
    assert net.n_params == 100_480 + 8_256 + 650
    assert "Total parameters: 109,386" in text
    assert "Parameter memory: 427.3 KiB (437,544 bytes), float32" in text
    assert text.splitlines()[0] == "Network: loss 'cross_entropy', float32, backend 'numba'"
    assert "Optimizer" not in text


def test_float64_mebibytes_and_optimizer_state():
    net = fastnn.Network([fastnn.Dense(512, 512, "relu"), fastnn.Dense(512, 1)], loss="mse",
                         dtype="float64")
    net.fit(np.zeros((3, 512)), np.zeros(3), verbose=0, optimizer=fastnn.Adam())
    text = net.summary(print_fn=None)
    n = 512 * 512 + 512 + 512 + 1
    assert f"Total parameters: {n:,}" in text
    assert f"Parameter memory: {n * 8 / 2 ** 20:.2f} MiB ({n * 8:,} bytes), float64" in text
    assert f"Optimizer: Adam, state {2 * n * 8 / 2 ** 20:.2f} MiB ({2 * n * 8:,} bytes) " \
           f"after 1 step" in text
    assert rows(text)[-1] == ["1", "Dense(512, 1)", "(None, 1)", "identity", "513"]


@pytest.mark.parametrize("loss, shown", [("binary_cross_entropy", "sigmoid (in the loss)"),
                                         ("poisson", "exp (in the loss)")])
def test_fused_output_activations(loss, shown):
    text = fastnn.Network([fastnn.Dense(3, 2)], loss=loss).summary(print_fn=None)
    assert rows(text) == [["0", "Dense(3, 2)", "(None, 2)", shown, "8"]]
    assert "Parameter memory: 32 bytes, float32" in text


def test_print_fn_and_quiet(capsys):
    net = network()
    seen = []
    text = net.summary(print_fn=seen.append)
    assert seen == [text]
    assert net.summary(print_fn=None) == text
    assert capsys.readouterr().out == ""


def test_repr_stays_one_line_and_summary_changes_nothing():
    net = network()
    before = net.get_params()
    net.summary(print_fn=None)
    np.testing.assert_array_equal(net.get_params(), before)
    assert "\n" not in repr(net) and "Parameters" not in repr(net)
    assert str(net) == repr(net)
