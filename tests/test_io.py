"""Tests for fastnn.io: exact round trips, atomic writes, and every bad file refused."""

import io as _bytes_io
import json
import os
import tempfile
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn.io import FORMAT_VERSION, ModelFileError, load, read_header, save
from fastnn.optimizers import SGD, Adam, AdamW, RMSprop

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")


def _problem(loss, n=24, n_in=5, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in))
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, n)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, (n, n_out)).astype(np.float64)
    else:
        y = rng.standard_normal((n, n_out))
    return X, y


def _trained(loss="cross_entropy", dtype="float32", optimizer=None, epochs=1, seed=3):
    """A tiny trained network 5 -> 7 tanh -> 3 and its data."""
    X, y = _problem(loss)
    out = "tanh" if loss == "mse" else "identity"
    net = fastnn.Network([fastnn.Dense(5, 7, "tanh"), fastnn.Dense(7, 3, out)],
                         loss=loss, dtype=dtype, seed=seed)
    net.fit(X, y, epochs=epochs, batch_size=8, verbose=0,
            optimizer=optimizer if optimizer is not None else Adam(0.01))
    return net, X, y


@pytest.fixture
def model_file(tmp_path):
    """A valid model file (with optimizer state) and its network."""
    net, _, _ = _trained()
    path = tmp_path / "model.npz"
    save(net, path, include_optimizer=True)
    return path, net


def _arrays(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _header(arrays):
    return json.loads(arrays["header"].tobytes().decode("utf-8"))


def _with_header(arrays, header):
    text = json.dumps(header).encode("utf-8")
    return {**arrays, "header": np.frombuffer(text, np.uint8)}


def _rewrite(path, arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


# ---- round trips ------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("include_optimizer", [False, True])
def test_round_trip_is_bit_identical(tmp_path, dtype, loss, include_optimizer):
    net, X, y = _trained(loss, dtype)
    path = tmp_path / "m.npz"
    save(net, path, include_optimizer=include_optimizer)
    back = load(path)

    assert back.dtype == net.dtype and back.loss.name == loss and back.seed == net.seed
    assert [(l.n_in, l.n_out, l.activation) for l in back.layers] == \
        [(l.n_in, l.n_out, l.activation) for l in net.layers]
    assert back.get_params().dtype == net.dtype
    np.testing.assert_array_equal(back.get_params(), net.get_params())
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    assert back.evaluate(X, y) == net.evaluate(X, y)
    if include_optimizer:
        assert type(back.optimizer) is Adam
        assert back.optimizer.get_config() == net.optimizer.get_config()
        saved, restored = net.optimizer.state_dict(), back.optimizer.state_dict()
        assert restored["t"] == saved["t"] == 3  # 24 samples / batch 8, one epoch
        for key in ("s1", "s2"):
            assert restored[key].dtype == net.dtype
            np.testing.assert_array_equal(restored[key], saved[key])
        assert np.abs(restored["s2"]).max() > 0  # real state, not zeros
    else:
        assert back.optimizer is None


@pytest.mark.parametrize("optimizer", [SGD(0.05, momentum=0.9, nesterov=True), AdamW(0.01),
                                       RMSprop(0.01, momentum=0.5)], ids=repr)
def test_resumed_training_matches_uninterrupted(tmp_path, optimizer):
    """Weights, optimizer state and the shuffling RNG all come back: fit continues exactly."""
    net, X, y = _trained(optimizer=optimizer, epochs=2)
    save(net, tmp_path / "m.npz", include_optimizer=True)
    back = load(tmp_path / "m.npz")
    assert repr(back.optimizer) == repr(net.optimizer)
    net.fit(X, y, epochs=2, batch_size=8, verbose=0)
    back.fit(X, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(back.get_params(), net.get_params())


def test_dropout_layers_round_trip_and_training_resumes_exactly(tmp_path):
    X, y = _problem("cross_entropy")
    net = fastnn.Network([fastnn.Dense(5, 6, "relu"), fastnn.Dropout(0.25),
                          fastnn.Dense(6, 4, "tanh"), fastnn.Dropout(0.5), fastnn.Dense(4, 3)],
                         seed=2)
    net.fit(X, y, epochs=2, batch_size=8, optimizer=SGD(0.1, momentum=0.9), verbose=0)
    save(net, tmp_path / "m.npz", include_optimizer=True)
    assert read_header(tmp_path / "m.npz")["layers"][1] == {"dropout": 0.25}
    back = load(tmp_path / "m.npz")
    assert repr(back.layers) == repr(net.layers)
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    net.fit(X, y, epochs=1, batch_size=8, verbose=0)
    back.fit(X, y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(back.get_params(), net.get_params())


def test_header_describes_the_network(model_file):
    path, net = model_file
    header = read_header(path)
    assert header["format"] == "fastnn" and header["format_version"] == FORMAT_VERSION
    assert header["fastnn_version"] == fastnn.__version__
    assert header["layers"] == [{"n_in": 5, "n_out": 7, "activation": "tanh"},
                                {"n_in": 7, "n_out": 3, "activation": "identity"}]
    assert (header["loss"], header["dtype"], header["seed"]) == ("cross_entropy", "float32", 3)
    assert header["n_params"] == net.n_params == 5 * 7 + 7 + 7 * 3 + 3
    assert header["optimizer"]["name"] == "adam" and header["optimizer"]["t"] == 3
    assert sorted(_arrays(path)) == ["header", "opt_s1", "opt_s2", "params"]


def test_without_optimizer_only_params_are_stored(tmp_path):
    net, _, _ = _trained()
    save(net, tmp_path / "m.npz")
    assert sorted(_arrays(tmp_path / "m.npz")) == ["header", "params"]
    assert read_header(tmp_path / "m.npz")["optimizer"] is None


def test_save_refuses_what_it_cannot_restore(tmp_path):
    net = fastnn.Network([fastnn.Dense(2, 2)])
    with pytest.raises(ValueError, match="no optimizer"):
        save(net, tmp_path / "m.npz", include_optimizer=True)
    with pytest.raises(TypeError, match="Network"):
        save({"W": 1}, tmp_path / "m.npz")
    assert not os.listdir(tmp_path)


# ---- atomic writes ------------------------------------------------------------


def test_failed_write_keeps_the_previous_file(model_file, monkeypatch):
    path, _ = model_file
    before = path.read_bytes()

    def half_written(handle, **arrays):
        handle.write(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_written)
    other, _, _ = _trained(seed=9)
    with pytest.raises(OSError, match="disk full"):
        save(other, path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    def failing(handle, **arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", failing)
    with pytest.raises(KeyboardInterrupt):
        save(_trained()[0], tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_saved_file_has_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        save(_trained()[0], tmp_path / "m.npz")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("where", ["missing", "file", "directory"])
def test_unwritable_destination_names_the_folder_not_a_temporary_file(tmp_path, where):
    (tmp_path / "plain").write_text("a file, not a folder")
    (tmp_path / "m.npz").mkdir()
    target = {"missing": tmp_path / "no" / "such" / "model.npz",
              "file": tmp_path / "plain" / "model.npz", "directory": tmp_path / "m.npz"}[where]
    error = {"directory": IsADirectoryError}.get(where, FileNotFoundError)
    message = {"missing": f"cannot write {target}: directory {target.parent} does not exist",
               "file": f"cannot write {target}: directory {target.parent} is not a directory",
               "directory": f"cannot write {target}: it is a directory"}[where]
    with pytest.raises(error) as raised:
        save(_trained()[0], target)
    assert str(raised.value) == message
    assert ".tmp" not in str(raised.value)
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "plain"]


def test_a_folder_without_write_permission_is_named(tmp_path, monkeypatch):
    def refused(dir, prefix, suffix):       # what mkstemp raises there (root never sees it)
        raise PermissionError(13, "Permission denied", os.path.join(dir, prefix + "x" + suffix))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as raised:
        save(_trained()[0], tmp_path / "m.npz")
    assert str(raised.value) == (f"cannot write {tmp_path / 'm.npz'}: no permission to create "
                                 f"files in {tmp_path}")


def test_checkpoint_to_a_missing_folder_names_the_folder(tmp_path):
    net, X, y = _trained()
    target = tmp_path / "runs" / "ck.npz"
    with pytest.raises(FileNotFoundError,
                       match=f"^cannot write {target}: directory {target.parent} does not exist$"):
        net.fit(X, y, epochs=1, verbose=0, checkpoint=target)


# ---- bad files ------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load(tmp_path / "nope.npz")


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)


@pytest.mark.parametrize("content", [b"", b"hello, world\n", b"\x93NUMPY\x01\x00"],
                         ids=["empty", "text", "npy-magic"])
def test_not_an_npz(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="not an .npz"):
        load(path)


def test_plain_npy_file_is_not_a_model(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ModelFileError, match="not an .npz"):
        load(path)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.05])
def test_truncated(model_file, keep):
    path, _ = model_file
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        load(path)


def test_flipped_parameter_byte_fails_the_zip_crc(model_file):
    path, net = model_file
    data = bytearray(path.read_bytes())
    at = data.find(net.get_params().tobytes()[16:48])
    assert at > 0
    data[at + 3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="CRC"):
        load(path)


def test_edited_parameters_fail_the_checksum(model_file):
    path, _ = model_file
    arrays = _arrays(path)
    arrays["params"] = arrays["params"].copy()
    arrays["params"][4] += 1e-3
    _rewrite(path, arrays)
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load(path)


def _edit_header(path, **changes):
    arrays = _arrays(path)
    header = _header(arrays)
    header.update(changes)
    _rewrite(path, _with_header(arrays, header))


@pytest.mark.parametrize("changes, message", [
    ({"format_version": 2}, "format version 2 is not supported; this fastnn reads format "
                            "version 1"),
    ({"format_version": "1"}, "format version '1' is not supported"),
    ({"format": "keras"}, "not a fastnn model file"),
    ({"n_params": 10}, "n_params=10 but the layers have 66"),
    ({"layers": [{"n_in": 5, "n_out": 8, "activation": "tanh"},
                 {"n_in": 8, "n_out": 3, "activation": "identity"}]},
     "n_params=66 but the layers have 75"),
    ({"layers": []}, "'layers' must be a non-empty list"),
    ({"layers": [{"n_in": 5, "n_out": True, "activation": "tanh"}]}, "layer 0 must be"),
    ({"layers": [{"n_in": 5, "n_out": 7, "activation": "tanh", "dropout": 0.1},
                 {"n_in": 7, "n_out": 3, "activation": "identity"}]}, "layer 0 must be"),
    ({"layers": [{"n_in": 5, "n_out": 7, "activation": "tanh"}, {"dropout": 1.5},
                 {"n_in": 7, "n_out": 3, "activation": "identity"}]},
     "invalid network description: Dropout rate"),
    ({"layers": [{"dropout": 0.5}, {"n_in": 5, "n_out": 7, "activation": "tanh"},
                 {"n_in": 7, "n_out": 3, "activation": "identity"}]}, "must follow a Dense"),
    ({"seed": "3"}, "'seed' must be an integer"),
    ({"dtype": "float16"}, "'dtype' must be one of"),
    ({"loss": "hinge"}, "invalid network description: unknown loss 'hinge'"),
    ({"layers": [{"n_in": 5, "n_out": 7, "activation": "swish"},
                 {"n_in": 7, "n_out": 3, "activation": "identity"}]}, "unknown activation"),
    ({"params_sha256": "abc"}, "'params_sha256' must be 64"),
    ({"optimizer": {"name": "lbfgs", "config": {}, "t": 3}}, "invalid optimizer description"),
    ({"optimizer": {"name": "adam", "config": {"lr": -1}, "t": 3}}, "lr must be"),
    ({"optimizer": {"name": "adam", "config": {}, "t": -1}}, "'optimizer' must be null or"),
    ({"optimizer": None}, "unexpected array\\(s\\) opt_s1, opt_s2"),
    ({"shuffle_rng": {"bit_generator": "PCG64"}}, "invalid 'shuffle_rng'"),
], ids=lambda v: str(v)[:40])
def test_hand_edited_header_is_rejected(model_file, changes, message):
    path, _ = model_file
    _edit_header(path, **changes)
    with pytest.raises(ModelFileError, match=message):
        load(path)


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "not valid UTF-8 JSON"),
    (b"\xff\xfe", "not valid UTF-8 JSON"),
    (b"[1, 2]", "must be a JSON object"),
])
def test_unreadable_header(model_file, raw, message):
    path, _ = model_file
    _rewrite(path, {**_arrays(path), "header": np.frombuffer(raw, np.uint8)})
    with pytest.raises(ModelFileError, match=message):
        load(path)


@pytest.mark.parametrize("key, value, message", [
    ("params", lambda a: a[:-1], "'params' has shape \\(65,\\), expected \\(66,\\)"),
    ("params", lambda a: a.reshape(6, 11), "'params' has shape \\(6, 11\\)"),
    ("params", lambda a: a.astype(np.float64), "'params' has dtype float64, expected float32"),
    ("params", lambda a: a.astype(np.int32), "'params' has dtype int32"),
    ("opt_s1", lambda a: a[:5], "'opt_s1' has shape"),
    ("header", lambda a: a.astype(np.int16), "'header' must be a 1-D uint8 array"),
])
def test_wrong_array_shape_or_dtype(model_file, key, value, message):
    path, _ = model_file
    arrays = _arrays(path)
    arrays[key] = value(arrays[key])
    _rewrite(path, arrays)
    with pytest.raises(ModelFileError, match=message):
        load(path)


@pytest.mark.parametrize("drop, add, message", [
    ("params", None, "missing array\\(s\\) params"),
    ("opt_s2", None, "missing array\\(s\\) opt_s2"),
    ("header", None, "no 'header' array"),
    (None, "extra", "unexpected array\\(s\\) extra"),
])
def test_missing_or_extra_arrays(model_file, drop, add, message):
    path, _ = model_file
    arrays = _arrays(path)
    if drop:
        del arrays[drop]
    if add:
        arrays[add] = np.zeros(2)
    _rewrite(path, arrays)
    with pytest.raises(ModelFileError, match=message):
        load(path)


def test_non_npy_member_is_rejected(model_file):
    path, _ = model_file
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ModelFileError, match="unexpected array\\(s\\) notes.txt"):
        load(path)


UNPICKLED = []


def _record_unpickling():
    UNPICKLED.append(True)
    return 0.0


class _Payload:
    """Unpickling this would call ``_record_unpickling``: the test checks it never runs."""

    def __reduce__(self):
        return _record_unpickling, ()


@pytest.mark.parametrize("member", ["params", "extra"])
def test_pickled_object_array_is_refused(model_file, member):
    path, _ = model_file
    arrays = _arrays(path)
    payload = np.array([_Payload(), 1.0], dtype=object)
    buffers = {key: value for key, value in arrays.items() if key != member}
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in {**buffers, member: payload}.items():
            buffer = _bytes_io.BytesIO()
            np.save(buffer, value, allow_pickle=True)
            archive.writestr(f"{key}.npy", buffer.getvalue())
    with pytest.raises(ModelFileError, match="contains pickled objects; refusing to load"):
        load(path)
    assert UNPICKLED == []
