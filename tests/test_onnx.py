"""ONNX export: the graph passes onnx's checker and onnxruntime reproduces ``predict_proba``."""

import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli
from fastnn.datasets import load_digits, train_test_split
from fastnn.export import IR_VERSION, OPSET

from conftest import ACTIVATION_NAMES, LOSS_CASES, make_net

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

DTYPES = ("float32", "float64")
# The loss cases as networks: cross-entropy with labels or one-hot is the same net.
CASES = tuple(case for case in LOSS_CASES if case != "ce_onehot")

# onnxruntime runs the same operations as fastnn in its own order (its own GEMM
# kernels, exp, tanh and softmax), so the two agree to round-off, not bit for
# bit. The error is measured against the largest entry of the output array:
# an entry that cancels to ~0 (an mse output) or a tiny probability carries
# the absolute error of the larger terms it came from, so entry-by-entry
# relative error is not meaningful there (we measured up to 1e-2 on such
# entries in float32, with max|difference| / max|output| ~ 5e-7).
# float32: unit roundoff u = 6e-8; 1e-6 is ~17 u, with a margin over the
# <= 4.4e-7 measured with the widths here (<= 24), every activation and loss.
# The bound grows with the width, like k u: with 64- and 128-wide layers we
# measured up to 1.1e-6. float64: 1e-12 (measured <= 1.5e-15).
TOLERANCE = {"float32": 1e-6, "float64": 1e-12}


def _run_onnx(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["X"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    return session.run(["output"], {"X": X})[0]


def _export_and_run(net, X, tmp_path):
    """Export ``net``, check the file with onnx's full checker, and run it on ``X``."""
    path = tmp_path / "model.onnx"
    fastnn.export_onnx(net, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return _run_onnx(path, np.asarray(X, net.dtype))


def _assert_matches(got, expected, dtype):
    assert got.dtype == expected.dtype == np.dtype(dtype)
    assert got.shape == expected.shape
    scale = np.abs(expected).max()
    error = np.abs(got.astype(np.float64) - expected).max() / scale
    assert error <= TOLERANCE[dtype], f"max|onnx - fastnn| / max|fastnn| = {error:.3g}"


def _X(n, n_features, seed=0):
    return 2 * np.random.default_rng(seed).standard_normal((n, n_features))


def _op_types(model):
    return [node.op_type for node in model.graph.node]


# ---- equality with predict_proba -----------------------------------------------------


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("hidden", ACTIVATION_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_activation_and_loss(dtype, hidden, case, tmp_path):
    net = make_net([12, 24, 16, 5], hidden=hidden, case=case, dtype=dtype, seed=3)
    for n in (1000, 1):
        X = _X(n, 12)
        _assert_matches(_export_and_run(net, X, tmp_path), net.predict_proba(X), dtype)


@pytest.mark.parametrize("case", ["ce_labels", "bce", "mse_sigmoid", "mse_identity"])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_depths(dtype, depth, case, tmp_path):
    widths = [10, 24, 16][:depth] + [4]
    net = make_net(widths, hidden="relu", case=case, dtype=dtype, seed=depth)
    X = _X(1000, 10, seed=depth)
    got = _export_and_run(net, X, tmp_path)
    _assert_matches(got, net.predict_proba(X), dtype)
    assert _op_types(onnx.load(str(tmp_path / "model.onnx"))).count("Gemm") == depth


@pytest.mark.parametrize("dtype", DTYPES)
def test_rescaling_becomes_mul_add_and_dropout_is_left_out(dtype, tmp_path):
    layers = [fastnn.Rescaling(1 / 255, offset=-0.5), fastnn.Dense(8, 16, "leaky_relu"),
              fastnn.Dropout(0.3), fastnn.Dense(16, 12, "tanh"), fastnn.Dropout(0.5),
              fastnn.Dense(12, 3)]
    net = fastnn.Network(layers, loss="cross_entropy", dtype=dtype, seed=0)
    rng = np.random.default_rng(1)
    X_raw = rng.integers(0, 256, (200, 8)).astype(np.uint8)
    y = rng.integers(0, 3, 200)
    net.fit(X_raw, y, epochs=3, batch_size=16, optimizer=fastnn.Adam(0.01), verbose=0)
    # fastnn converts X to the dtype before scaling, so the uint8 pixels and
    # their float values give the same predictions.
    got = _export_and_run(net, X_raw.astype(dtype), tmp_path)
    _assert_matches(got, net.predict_proba(X_raw), dtype)
    np.testing.assert_array_equal(got.argmax(axis=1), net.predict(X_raw))
    leaky = "LeakyRelu" if dtype == "float32" else "PRelu"
    assert _op_types(onnx.load(str(tmp_path / "model.onnx"))) == [
        "Mul", "Add", "Gemm", leaky, "Gemm", "Tanh", "Gemm", "Softmax"]


def test_rescaling_constants_are_in_the_network_dtype(tmp_path):
    net = fastnn.Network([fastnn.Rescaling(0.1, 0.3), fastnn.Dense(3, 2)], dtype="float64")
    model = fastnn.export_onnx(net, tmp_path / "m.onnx")
    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert values["rescaling_scale"].dtype == np.float64
    assert values["rescaling_scale"] == 0.1 and values["rescaling_offset"] == 0.3


def test_float64_leaky_relu_slope_is_exactly_0_01(tmp_path):
    # LeakyRelu's alpha attribute is a 32-bit float; float64 graphs use PRelu
    # with a float64 slope so that negative inputs are scaled by 0.01 exactly.
    net = fastnn.Network([fastnn.Dense(4, 6, "leaky_relu"), fastnn.Dense(6, 1, "leaky_relu")],
                         loss="mse", dtype="float64", seed=2)
    X = _X(500, 4)
    got = _export_and_run(net, X, tmp_path)
    np.testing.assert_allclose(got, net.predict_proba(X), rtol=1e-14, atol=0)
    model = onnx.load(str(tmp_path / "model.onnx"))
    slopes = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer
              if t.name.endswith("_slope")]
    assert len(slopes) == 2 and all(s.dtype == np.float64 and s[0] == 0.01 for s in slopes)


@pytest.mark.parametrize("loss, last, op", [("cross_entropy", "softmax", "Softmax"),
                                            ("binary_cross_entropy", "sigmoid", "Sigmoid")])
def test_output_activation_named_on_the_last_layer_is_applied_once(loss, last, op, tmp_path):
    net = fastnn.Network([fastnn.Dense(5, 7, "sigmoid"), fastnn.Dense(7, 3, last)], loss=loss)
    X = _X(50, 5)
    got = _export_and_run(net, X, tmp_path)
    _assert_matches(got, net.predict_proba(X), "float32")
    assert _op_types(onnx.load(str(tmp_path / "model.onnx"))) == ["Gemm", "Sigmoid", "Gemm", op]


@pytest.mark.parametrize("dtype", DTYPES)
def test_graph_interface(dtype, tmp_path):
    net = fastnn.Network([fastnn.Dense(6, 4, "relu"), fastnn.Dense(4, 3)], loss="mse",
                         dtype=dtype)
    model = fastnn.export_onnx(net, tmp_path / "m.onnx")
    assert onnx.load(str(tmp_path / "m.onnx")) == model
    assert model.ir_version == IR_VERSION == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)] and OPSET == 17
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    for value, width in ((model.graph.input[0], 6), (model.graph.output[0], 3)):
        tensor = value.type.tensor_type
        assert tensor.elem_type == elem
        assert [(d.dim_param, d.dim_value) for d in tensor.shape.dim] == [("N", 0), ("", width)]
    assert [i.name for i in model.graph.input] == ["X"]
    assert [o.name for o in model.graph.output] == ["output"]
    assert _op_types(model) == ["Gemm", "Relu", "Gemm"]      # mse + identity: raw outputs
    W0 = onnx.numpy_helper.to_array(model.graph.initializer[0])
    np.testing.assert_array_equal(W0, net.dense_layers[0].W)


def test_assigned_weights_are_exported(tmp_path):
    net = fastnn.Network([fastnn.Dense(3, 2)], loss="mse", dtype="float64")
    net.dense_layers[0].W = np.arange(6.0).reshape(3, 2)     # a new array, not the view
    net.dense_layers[0].b = [1.0, -1.0]
    X = _X(4, 3)
    got = _export_and_run(net, X, tmp_path)
    np.testing.assert_allclose(got, X @ np.arange(6.0).reshape(3, 2) + [1.0, -1.0],
                               rtol=1e-14)


# ---- errors ----------------------------------------------------------------------------


def test_missing_folder_is_named_and_nothing_is_written(tmp_path):
    net = fastnn.Network([fastnn.Dense(3, 2)])
    target = tmp_path / "no_such_dir" / "m.onnx"
    with pytest.raises(FileNotFoundError, match=r"directory .*no_such_dir does not exist"):
        fastnn.export_onnx(net, target)
    assert list(tmp_path.iterdir()) == []


def test_directory_as_path(tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        fastnn.export_onnx(fastnn.Network([fastnn.Dense(3, 2)]), tmp_path)


@pytest.mark.parametrize("bad", [None, "model.npz", {"layers": []}, fastnn.Dense(3, 2)])
def test_non_network_is_a_type_error(bad, tmp_path):
    with pytest.raises(TypeError, match="export_onnx expects a fastnn.Network, got"):
        fastnn.export_onnx(bad, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_path_type(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        fastnn.export_onnx(fastnn.Network([fastnn.Dense(3, 2)]), 3)


def test_non_finite_parameters_are_refused_and_the_old_file_kept(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    net = fastnn.Network([fastnn.Dense(3, 2)])
    net.dense_layers[0].W[0, 0] = np.nan
    with pytest.raises(ValueError, match="parameters are not finite"):
        fastnn.export_onnx(net, target)
    assert target.read_bytes() == b"previous"


def test_missing_onnx_package_gives_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)       # `import onnx` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastnn-numba\[onnx\]"'):
        fastnn.export_onnx(fastnn.Network([fastnn.Dense(3, 2)]), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_importing_fastnn_does_not_import_onnx():
    code = ("import sys, fastnn; fastnn.export_onnx; "
            "print('onnx' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False False"


# ---- the command line ------------------------------------------------------------------


def _main(args, capsys):
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("dtype", DTYPES)
def test_cli_round_trip(dtype, tmp_path, capsys):
    model, onnx_path = tmp_path / "model.npz", tmp_path / "model.onnx"
    code, _, err = _main(["train", "--layers", "16,8", "--activation", "tanh", "--epochs", "2",
                          "--dtype", dtype, "--save", str(model), "--quiet"], capsys)
    assert code == 0, err
    code, out, err = _main(["export", str(model), str(onnx_path)], capsys)
    assert code == 0, err
    assert out == (f"saved ONNX model to {onnx_path} (opset 17, {dtype}, input X: (N, 64), "
                   f"output: (N, 10))\n")
    onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)

    X, y = load_digits()
    _, X_test, _, _ = train_test_split(X, y, test_fraction=0.2, seed=0)
    np.save(tmp_path / "X.npy", X_test)
    code, out, err = _main(["predict", str(model), "--input", str(tmp_path / "X.npy")], capsys)
    assert code == 0, err
    labels = np.array(out.split(), dtype=np.int64)
    proba = _run_onnx(onnx_path, X_test.astype(dtype))
    np.testing.assert_array_equal(proba.argmax(axis=1), labels)
    net = fastnn.load(model)
    _assert_matches(proba, net.predict_proba(X_test), dtype)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=10 * TOLERANCE[dtype])


def _error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def saved_model(tmp_path):
    path = tmp_path / "model.npz"
    fastnn.save(fastnn.Network([fastnn.Dense(3, 2)]), path)
    return path


def test_cli_missing_onnx_package(saved_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, out, err = _main(["export", str(saved_model), str(tmp_path / "m.onnx")], capsys)
    assert code == 1 and out == ""
    assert 'pip install "fastnn-numba[onnx]"' in _error_line(err)
    assert not (tmp_path / "m.onnx").exists()


def test_cli_missing_folder(saved_model, tmp_path, capsys):
    code, out, err = _main(["export", str(saved_model), str(tmp_path / "nope" / "m.onnx")],
                           capsys)
    assert code == 1 and out == ""
    assert "nope does not exist" in _error_line(err)


def test_cli_missing_model(tmp_path, capsys):
    code, _, err = _main(["export", str(tmp_path / "absent.npz"), str(tmp_path / "m.onnx")],
                         capsys)
    assert code == 1
    assert "model file not found" in _error_line(err)
    assert not (tmp_path / "m.onnx").exists()


def test_cli_usage_error(saved_model, capsys):
    code, _, err = _main(["export", str(saved_model)], capsys)
    assert code == 2
    assert "MODEL.onnx" in err and "usage:" in err
