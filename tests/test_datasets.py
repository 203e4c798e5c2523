"""Tests for fastnn.datasets. Everything is local: the download tests use an HTTP server on 127.0.0.1."""

import functools
import gzip
import hashlib
import http.server
import os
import re
import socket
import struct
import threading
import time

import numpy as np
import pytest

from fastnn.datasets import (
    MNIST_FILES,
    MNIST_MIRRORS,
    MNIST_SHA256,
    DatasetError,
    load_csv,
    load_digits,
    load_mnist,
    read_idx,
    train_test_split,
    write_idx,
)

N_TRAIN, N_TEST = 50, 20


# ----------------------------------------------------------------------------
# digits


def test_load_digits_shapes_dtypes_ranges():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    counts = np.bincount(y, minlength=10)
    assert counts.size == 10 and counts.sum() == 1797 and counts.min() > 150


def test_load_digits_unscaled_is_integers_0_to_16():
    X, _ = load_digits(scale=False, dtype="float64")
    assert X.dtype == np.float64
    assert X.max() == 16 and np.array_equal(X, np.round(X))
    np.testing.assert_allclose(load_digits()[0], X / 16, rtol=1e-6)


def test_load_digits_one_hot_matches_labels():
    _, labels = load_digits()
    _, Y = load_digits(one_hot=True, dtype="float64")
    assert Y.shape == (1797, 10) and Y.dtype == np.float64
    assert np.array_equal(Y.sum(axis=1), np.ones(1797))
    assert np.array_equal(Y.argmax(axis=1), labels)


def test_non_float_dtype_rejected():
    with pytest.raises(ValueError, match="floating"):
        load_digits(dtype="int32")


# ----------------------------------------------------------------------------
# split


def test_split_sizes_disjoint_and_complete():
    X = np.arange(100).reshape(50, 2)
    y = np.arange(50)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.3, seed=1)
    assert X_train.shape == (35, 2) and X_test.shape == (15, 2)
    assert np.array_equal(X_train[:, 0] // 2, y_train) and np.array_equal(X_test[:, 0] // 2, y_test)
    assert sorted(np.concatenate([y_train, y_test])) == list(range(50))


def test_split_is_deterministic_per_seed():
    X, y = np.arange(40).reshape(20, 2), np.arange(20)
    first = train_test_split(X, y, seed=7)
    again = train_test_split(X, y, seed=7)
    other = train_test_split(X, y, seed=8)
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    assert not np.array_equal(first[3], other[3])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(np.zeros((10, 2)), np.zeros(10), test_fraction=fraction)


def test_split_rejects_length_mismatch_and_empty_train_set():
    with pytest.raises(ValueError, match="10 samples but y has 9"):
        train_test_split(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="no training samples"):
        train_test_split(np.zeros((3, 2)), np.zeros(3), test_fraction=0.9)


# ----------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (4, 3, 5), (2, 1, 3, 2)])
def test_idx_round_trip(tmp_path, suffix, shape):
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    assert np.array_equal(back, array)


def test_idx_compression_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "x.gz", array)
    os.replace(tmp_path / "x.gz", tmp_path / "gzipped-without-suffix")
    write_idx(tmp_path / "y", array)
    os.replace(tmp_path / "y", tmp_path / "plain-with-suffix.gz")
    assert np.array_equal(read_idx(tmp_path / "gzipped-without-suffix"), array)
    assert np.array_equal(read_idx(tmp_path / "plain-with-suffix.gz"), array)


def test_idx_header_bytes_are_the_mnist_ones(tmp_path):
    write_idx(tmp_path / "img", np.zeros((2, 28, 28), np.uint8))
    write_idx(tmp_path / "lbl", np.zeros(2, np.uint8))
    assert (tmp_path / "img").read_bytes()[:16] == struct.pack(">IIII", 0x803, 2, 28, 28)
    assert (tmp_path / "lbl").read_bytes()[:8] == struct.pack(">II", 0x801, 2)


def test_write_idx_rejects_values_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="astype"):
        write_idx(tmp_path / "f", np.zeros(3))
    with pytest.raises(ValueError, match="0..255"):
        write_idx(tmp_path / "f", np.array([0, 256]))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "f", np.uint8(3))


def test_read_idx_bad_magic_names_file_and_numbers(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIIII", 0x804, 1, 1, 1, 1) + b"\x00"))
    expected = (f"{path}: bad magic number 0x00000804, expected 0x00000801 (IDX labels)")
    with pytest.raises(DatasetError, match=re.escape(expected)):
        read_idx(path, ndim=1)


@pytest.mark.parametrize("payload, problem", [
    (b"\x00" * 11, "truncated payload: shape (3, 4) needs 12 bytes, found 11"),
    (b"\x00" * 14, "2 trailing bytes after the 12-byte payload"),
])
def test_read_idx_payload_must_match_dimensions_exactly(tmp_path, payload, problem):
    path = tmp_path / "bad-idx"
    path.write_bytes(struct.pack(">III", 0x802, 3, 4) + payload)
    with pytest.raises(DatasetError, match=re.escape(f"{path}: {problem}")):
        read_idx(path)


@pytest.mark.parametrize("content, problem", [
    (b"\x00\x00", "too short for an IDX header"),
    (struct.pack(">II", 0x803, 5), "truncated header"),
    (b"PK\x03\x04", "two zero bytes"),
    (struct.pack(">II", 0x0D01, 1) + b"\x00" * 4, "data type 0x0d is not supported"),
    (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
])
def test_read_idx_rejects_malformed_headers(tmp_path, content, problem):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=problem):
        read_idx(path)


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)


# ----------------------------------------------------------------------------
# CSV


def _write_csv(path, table, header=None):
    lines = ([header] if header else []) + [",".join(str(v) for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("header", [None, "label,p0,p1,p2"])
def test_csv_round_trip_with_and_without_header(tmp_path, header):
    table = np.array([[3, 0, 255, 17], [0, 1, 2, 3], [9, 255, 255, 0]])
    path = tmp_path / "mnist.csv"
    _write_csv(path, table, header)
    X, y = load_csv(path, n_features=3)
    assert X.shape == (3, 3) and X.dtype == np.float32
    assert np.array_equal(y, [3, 0, 9]) and y.dtype == np.int64
    np.testing.assert_allclose(X, table[:, 1:] / 255, rtol=1e-6)
    X_raw, Y = load_csv(path, scale=False, one_hot=True, dtype="float64")
    assert np.array_equal(X_raw, table[:, 1:]) and Y.shape == (3, 10)
    assert np.array_equal(Y.argmax(axis=1), [3, 0, 9])


def test_csv_explicit_header_flag(tmp_path):
    path = tmp_path / "numeric-header.csv"
    _write_csv(path, [[0, 1, 2], [1, 3, 4], [2, 5, 6]])
    assert load_csv(path, header=True)[1].tolist() == [1, 2]
    assert load_csv(path, header=False)[1].tolist() == [0, 1, 2]
    _write_csv(path, [[0, 1, 2]], header="label,a,b")
    with pytest.raises(DatasetError, match="line 1, column 1: 'label' is not a number"):
        load_csv(path, header=False)


def test_csv_float_cells_and_gzip(tmp_path):
    path = tmp_path / "floats.csv.gz"
    path.write_bytes(gzip.compress(b"1,0.5,2.5\n\n2,127.5,0\n"))
    X, y = load_csv(path, scale=False)
    assert y.tolist() == [1, 2] and np.array_equal(X, [[0.5, 2.5], [127.5, 0]])


@pytest.mark.parametrize("text, problem", [
    ("label,a,b\n1,2,3\n4,5\n", "line 3 has 2 columns, expected 3"),
    ("1,2,3\n4,x,6\n", "line 2, column 2: 'x' is not a number"),
    ("1,2,3\n4,,6\n", "line 2, column 2: '' is not a number"),
    ("1,2,3\n-1,5,6\n", "line 2: label -1 is not a non-negative integer"),
    ("1,2,3\n1.5,5,6\n", "line 2: label 1.5 is not a non-negative integer"),
    ("1,2,3\n2,nan,6\n", "line 2 has a non-finite value"),
    ("", "no data rows"),
    ("label,a,b\n", "no data rows"),
    ("1\n2\n", "line 1 has 1 column; need a label and features"),
])
def test_csv_errors_name_the_problem_and_line(tmp_path, text, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=re.escape(f"{path}: {problem}")):
        load_csv(path)


def test_csv_wrong_feature_count(tmp_path):
    path = tmp_path / "short.csv"
    _write_csv(path, [[1, 2, 3]])
    with pytest.raises(DatasetError, match="2 feature columns, expected n_features=784"):
        load_csv(path, n_features=784)


# ----------------------------------------------------------------------------
# MNIST from a folder


def _mnist_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        MNIST_FILES[0]: rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        MNIST_FILES[1]: np.arange(N_TRAIN, dtype=np.uint8) % 10,
        MNIST_FILES[2]: rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        MNIST_FILES[3]: rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def _write_mnist(folder, arrays, gz=(True, False, True, False)):
    folder.mkdir(parents=True, exist_ok=True)
    for (name, array), zipped in zip(arrays.items(), gz):
        write_idx(folder / (name + ".gz" if zipped else name), array)


def _assert_is(data, arrays):
    (X_train, y_train), (X_test, y_test) = data
    assert X_train.shape == (N_TRAIN, 784) and X_test.shape == (N_TEST, 784)
    assert X_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_allclose(X_train, arrays[MNIST_FILES[0]].reshape(N_TRAIN, 784) / 255, rtol=1e-6)
    np.testing.assert_allclose(X_test, arrays[MNIST_FILES[2]].reshape(N_TEST, 784) / 255, rtol=1e-6)
    assert np.array_equal(y_train, arrays[MNIST_FILES[1]])
    assert np.array_equal(y_test, arrays[MNIST_FILES[3]])


def test_load_mnist_from_folder_plain_and_gz(tmp_path):
    arrays = _mnist_arrays()
    _write_mnist(tmp_path, arrays)
    _assert_is(load_mnist(tmp_path), arrays)
    (_, Y), _ = load_mnist(tmp_path, one_hot=True, scale=False, dtype="float64")
    assert Y.shape == (N_TRAIN, 10) and np.array_equal(Y.argmax(axis=1), arrays[MNIST_FILES[1]])


def test_load_mnist_missing_files_message(tmp_path):
    arrays = _mnist_arrays()
    del arrays[MNIST_FILES[3]]
    _write_mnist(tmp_path, arrays)
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "download=True" in message and "put the files there" in message
    assert message.count(MNIST_FILES[3]) == 1 and "the other 3 are there" in message
    for name in MNIST_FILES[:3]:
        assert name not in message


def test_load_mnist_all_missing_names_each_file_once(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert message == (f"MNIST files missing from {tmp_path}: {', '.join(MNIST_FILES)} (each "
                       "plain or with .gz). Pass download=True to fetch them, or put the files "
                       "there.")
    assert all(message.count(name) == 1 for name in MNIST_FILES)


def test_load_mnist_default_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNN_CACHE_DIR", str(tmp_path / "env-cache"))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "env-cache" / "mnist"))):
        load_mnist()
    _write_mnist(tmp_path / "env-cache" / "mnist", _mnist_arrays())
    assert load_mnist()[0][0].shape == (N_TRAIN, 784)


def test_load_mnist_path_and_cache_dir_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        load_mnist(tmp_path, cache_dir=tmp_path)


@pytest.mark.parametrize("change, problem", [
    ({MNIST_FILES[1]: np.zeros(N_TRAIN - 1, np.uint8)}, "49 labels but"),
    ({MNIST_FILES[3]: np.full(N_TEST, 10, np.uint8)}, "label 10 at index 0 is outside 0..9"),
    ({MNIST_FILES[0]: np.zeros((N_TRAIN, 32, 32), np.uint8)}, "images are 32x32, expected 28x28"),
    ({MNIST_FILES[2]: np.zeros((N_TEST, 784), np.uint8)}, "expected 0x00000803 (IDX images)"),
])
def test_load_mnist_rejects_inconsistent_files(tmp_path, change, problem):
    arrays = _mnist_arrays()
    arrays.update(change)
    _write_mnist(tmp_path, arrays)
    name = next(iter(change))
    with pytest.raises(DatasetError, match=re.escape(problem)) as info:
        load_mnist(tmp_path)
    assert name in str(info.value)


def test_mnist_constants():
    assert set(MNIST_SHA256) == {name + ".gz" for name in MNIST_FILES}
    assert all(re.fullmatch("[0-9a-f]{64}", digest) for digest in MNIST_SHA256.values())
    assert all(m.startswith("https://") and m.endswith("/") for m in MNIST_MIRRORS)


# ----------------------------------------------------------------------------
# MNIST download, against a local server


class _Server:
    """A static file server on 127.0.0.1 that records the paths it was asked for."""

    def __init__(self, root):
        self.root = root
        self.requests = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def served(tmp_path):
    """Generated MNIST .gz files behind a local server; yields (server, arrays, checksums)."""
    arrays = _mnist_arrays(seed=1)
    root = tmp_path / "served"
    _write_mnist(root, arrays, gz=(True,) * 4)
    checksums = {
        name + ".gz": hashlib.sha256((root / (name + ".gz")).read_bytes()).hexdigest()
        for name in MNIST_FILES
    }
    server = _Server(root)
    yield server, arrays, checksums
    server.close()


@pytest.fixture
def dead_url():
    """A local URL whose port was just closed, so connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _cache_listing(cache):
    return sorted(p.name for p in (cache / "mnist").iterdir())


def test_download_fills_cache_once(tmp_path, served):
    server, arrays, checksums = served
    cache = tmp_path / "cache"
    kwargs = dict(download=True, cache_dir=cache, mirrors=[server.url], checksums=checksums)
    _assert_is(load_mnist(**kwargs), arrays)
    assert _cache_listing(cache) == sorted(name + ".gz" for name in MNIST_FILES)
    assert sorted(server.requests) == sorted(f"/{name}.gz" for name in MNIST_FILES)
    _assert_is(load_mnist(**kwargs), arrays)
    assert len(server.requests) == 4  # verified cache, no second download


def test_download_replaces_corrupt_cached_file(tmp_path, served):
    server, arrays, checksums = served
    folder = tmp_path / "cache" / "mnist"
    _write_mnist(folder, arrays, gz=(True,) * 4)
    bad = folder / (MNIST_FILES[2] + ".gz")
    bad.write_bytes(b"\x1f\x8b not really")
    data = load_mnist(download=True, cache_dir=tmp_path / "cache", mirrors=[server.url],
                      checksums=checksums)
    _assert_is(data, arrays)
    assert server.requests == [f"/{MNIST_FILES[2]}.gz"]
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == checksums[MNIST_FILES[2] + ".gz"]


def test_download_rejects_checksum_mismatch_and_keeps_nothing(tmp_path, served):
    server, _, checksums = served
    name = MNIST_FILES[0] + ".gz"
    wrong = dict(checksums, **{name: "0" * 64})
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError) as info:
        load_mnist(download=True, cache_dir=cache, mirrors=[server.url], checksums=wrong)
    message = str(info.value)
    assert name in message and "0" * 64 in message and checksums[name] in message
    assert _cache_listing(cache) == []  # no partial or unverified file left behind


def test_dead_first_mirror_falls_through(tmp_path, served, dead_url):
    server, arrays, checksums = served
    data = load_mnist(download=True, cache_dir=tmp_path / "cache", mirrors=[dead_url, server.url],
                      checksums=checksums)
    _assert_is(data, arrays)
    assert len(server.requests) == 4


def test_no_network_fails_fast_naming_folder_and_files(tmp_path, dead_url):
    cache = tmp_path / "cache"
    start = time.perf_counter()
    with pytest.raises(ConnectionError) as info:
        load_mnist(download=True, cache_dir=cache, mirrors=[dead_url, dead_url + "other/"],
                   timeout=2.0)
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert str(cache / "mnist") in message and dead_url in message
    for name in MNIST_FILES:
        assert name + ".gz" in message
    assert _cache_listing(cache) == []


def test_download_argument_checks(tmp_path):
    with pytest.raises(TypeError, match="list of base URLs"):
        load_mnist(download=True, cache_dir=tmp_path, mirrors="http://127.0.0.1:1/")
    with pytest.raises(ValueError, match="mirrors is empty"):
        load_mnist(download=True, cache_dir=tmp_path, mirrors=[])
    with pytest.raises(ValueError, match="checksums has no entry"):
        load_mnist(download=True, cache_dir=tmp_path, mirrors=["http://127.0.0.1:1/"], checksums={})
