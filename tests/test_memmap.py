"""Training and predicting from memory maps and 8/16-bit inputs, without copying them."""

import hashlib
import os

import numpy as np
import pytest

import fastnn
from fastnn import data

F, C = 12, 4


def write(tmp_path, name, array):
    path = tmp_path / f"{name}.npy"
    np.save(path, array)
    return path


def mapped(path):
    return np.load(path, mmap_mode="r")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def net(rescale=None, dtype="float32", backend="numba", dropout=False):
    layers = [fastnn.Rescaling(*rescale)] if rescale else []
    layers.append(fastnn.Dense(F, 16, "relu"))
    if dropout:
        layers.append(fastnn.Dropout(0.2))
    layers.append(fastnn.Dense(16, C))
    return fastnn.Network(layers, dtype=dtype, seed=3, backend=backend)


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (301, F), dtype=np.uint8)
    y = rng.integers(0, C, 301).astype(np.uint8)
    return X, y


def fit(model, X, y, **kwargs):
    kwargs.setdefault("optimizer", fastnn.Adam(0.01))
    return model.fit(X, y, epochs=3, batch_size=32, verbose=0, **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_memory_map_trains_bit_identically_to_memory(tmp_path, problem, dtype, backend):
    X, y = problem
    Xf = (X / 255).astype(dtype)
    X_map, y_map = mapped(write(tmp_path, "X", Xf)), mapped(write(tmp_path, "y", y))
    assert not X_map.flags.writeable
    a, b = net(dtype=dtype, backend=backend, dropout=True), net(dtype=dtype, backend=backend,
                                                                dropout=True)
    ha = fit(a, X_map, y_map, validation_data=(X_map[:50], y_map[:50]))
    hb = fit(b, Xf, y.astype(np.int64), validation_data=(Xf[:50], y[:50]))
    np.testing.assert_array_equal(a.get_params(), b.get_params())
    assert ha.history == hb.history or all(
        ha.history[k] == hb.history[k] for k in ha.history if k not in ("seconds",
                                                                         "samples_per_second"))
    np.testing.assert_array_equal(a.predict_proba(X_map), b.predict_proba(Xf))
    assert a.evaluate(X_map, y_map) == b.evaluate(Xf, y)


@pytest.mark.parametrize("raw", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize("shuffle", [True, "block", False])
def test_8_and_16_bit_maps_with_rescaling_equal_scaled_floats(tmp_path, raw, shuffle):
    """``Rescaling(s, o)`` on integer X is ``X.astype(dtype) * dtype(s) + dtype(o)``, exactly."""
    rng = np.random.default_rng(1)
    info = np.iinfo(raw)
    X = rng.integers(info.min, info.max, (257, F), endpoint=True).astype(raw)
    y = rng.integers(0, C, 257)
    scale, offset = 1.0 / info.max, -0.25
    X_map = mapped(write(tmp_path, "X", X))
    a = net((scale, offset))
    b = net()
    X_scaled = X.astype(np.float32) * np.float32(scale) + np.float32(offset)
    fit(a, X_map, y, shuffle=shuffle)
    fit(b, X_scaled, y, shuffle=shuffle)
    np.testing.assert_array_equal(a.get_params(), b.get_params())
    np.testing.assert_array_equal(a.predict_proba(X_map), b.predict_proba(X_scaled))


def test_fit_never_copies_or_writes_the_map(tmp_path, problem, monkeypatch):
    X, y = problem
    path = write(tmp_path, "X", X)
    before = digest(path), os.stat(path).st_mtime_ns
    X_map = mapped(path)
    # A copy of the whole map would go through ascontiguousarray or astype: forbid them.
    real_ascontiguous = np.ascontiguousarray

    def guarded(a, *args, **kwargs):
        assert not data.is_mapped(a), "the memory map was copied"
        return real_ascontiguous(a, *args, **kwargs)

    monkeypatch.setattr(np, "ascontiguousarray", guarded)
    model = net((1 / 255, 0.0))
    fit(model, X_map, y.astype(np.int64))
    model.predict(X_map)
    model.evaluate(X_map, y.astype(np.int64))
    monkeypatch.undo()
    assert (digest(path), os.stat(path).st_mtime_ns) == before


def rejected(model, call):
    """Run ``call``; return its error message, checking that nothing changed."""
    params = model.get_params()
    optimizer = model.optimizer
    state = None if optimizer is None else optimizer.state_dict()
    rng = model._shuffle_rng.bit_generator.state
    with pytest.raises(ValueError) as info:
        call()
    np.testing.assert_array_equal(model.get_params(), params)
    assert model._shuffle_rng.bit_generator.state == rng
    if state is not None:
        after = model.optimizer.state_dict()
        assert after["t"] == state["t"]
        np.testing.assert_array_equal(after["s1"], state["s1"])
    return str(info.value)


@pytest.mark.parametrize("where", [0, 150, 300])
def test_nan_row_in_a_map_is_the_in_memory_error_and_changes_nothing(tmp_path, where):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((301, F)).astype(np.float32)
    X[where, 5] = np.nan
    y = rng.integers(0, C, 301)
    path = write(tmp_path, "X", X)
    before = digest(path)
    model = net()
    fit(model, np.ones((100, F), np.float32), y[:100])      # some state to keep
    message = rejected(model, lambda: fit(model, mapped(path), y))
    expected = f"X contains NaN or inf (first at index ({where}, 5))"
    assert message == expected
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at index"):
        fit(net(), X, y)                         # the in-memory check, up front
    for call in (model.predict, model.predict_proba, lambda X: model.evaluate(X, y)):
        with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at index "
                                             rf"\({where}, 5\)\)"):
            call(mapped(path))
    assert digest(path) == before


def test_value_too_large_for_float32_in_a_float64_map(tmp_path):
    X = np.ones((40, F))
    X[33, 2] = 1e300
    with pytest.raises(ValueError, match=r"X has a value too large for float32 at index "
                                         r"\(33, 2\)"):
        fit(net(), mapped(write(tmp_path, "X", X)), np.zeros(40, np.int64))


@pytest.mark.parametrize("label", [C, 255])
def test_label_out_of_range_in_a_map(tmp_path, problem, label):
    X, y = problem
    y = y.copy()
    y[77] = label
    model = net((1 / 255, 0.0))
    message = rejected(model, lambda: fit(model, mapped(write(tmp_path, "X", X)),
                                          mapped(write(tmp_path, "y", y))))
    assert message == f"labels must be in 0..{C - 1} for {C} outputs; found {label} (at index 77)"


def test_nan_target_in_a_map(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, F)).astype(np.float32)
    T = rng.standard_normal((60, C)).astype(np.float32)
    T[12, 1] = np.inf
    model = fastnn.Network([fastnn.Dense(F, C)], loss="mse")
    with pytest.raises(ValueError, match=r"y contains NaN or inf \(first at index \(12, 1\)\)"):
        model.fit(mapped(write(tmp_path, "X", X)), mapped(write(tmp_path, "T", T)), verbose=0)


def test_maps_that_would_need_a_copy_are_refused(tmp_path, problem):
    X, y = problem
    fortran = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32,
                                        shape=(301, F), fortran_order=True)
    fortran[...] = X
    with pytest.raises(ValueError, match="not C-contiguous"):
        fit(net(), fortran, y)
    wide = np.lib.format.open_memmap(tmp_path / "w.npy", mode="w+", dtype=np.int32,
                                     shape=(301, F))
    with pytest.raises(ValueError, match="memory map of dtype int32"):
        fit(net(), wide, y)


def test_block_shuffle_is_a_seeded_permutation_of_every_row():
    rng = np.random.default_rng(5)
    for n, row_bytes, batch in ((1000, 784, 64), (70001, 784, 64), (5, 8, 2), (3000, 2, 7)):
        orders = [data.block_permutation(np.random.default_rng(9), n, row_bytes, batch)
                  for _ in range(2)]
        np.testing.assert_array_equal(orders[0], orders[1])          # seeded
        np.testing.assert_array_equal(np.sort(orders[0]), np.arange(n))
        other = data.block_permutation(rng, n, row_bytes, batch)
        assert n < 10 or not np.array_equal(other, orders[0])
    # Rows come in windows of BLOCKS_PER_BUFFER blocks of contiguous rows.
    order = data.block_permutation(np.random.default_rng(0), 200000, 784, 64)
    rows = max(64, data.BLOCK_BYTES // 784)
    window = rows * data.BLOCKS_PER_BUFFER
    blocks = order[:window] // rows
    assert len(np.unique(blocks)) == data.BLOCKS_PER_BUFFER


def test_block_shuffle_resumes_bit_identically(tmp_path, problem):
    X, y = problem
    X_map = mapped(write(tmp_path, "X", X))
    full, first = net((1 / 255, 0.0)), net((1 / 255, 0.0))
    full.fit(X_map, y, epochs=4, batch_size=16, shuffle="block", verbose=0)
    first.fit(X_map, y, epochs=2, batch_size=16, shuffle="block", verbose=0,
              checkpoint=tmp_path / "ck.npz")
    resumed = net((1 / 255, 0.0))
    resumed.fit(X_map, y, epochs=4, batch_size=16, shuffle="block", verbose=0,
                resume=tmp_path / "ck.npz")
    np.testing.assert_array_equal(resumed.get_params(), full.get_params())
    with pytest.raises(ValueError, match="trained with shuffle=block"):
        net((1 / 255, 0.0)).fit(X_map, y, epochs=4, batch_size=16, verbose=0,
                                resume=tmp_path / "ck.npz")


def test_shuffle_must_be_true_false_or_block(problem):
    X, y = problem
    with pytest.raises(ValueError, match="shuffle must be True, False or 'block'"):
        net().fit(X, y, shuffle="blocks", verbose=0)


# ---- .npy data folders and the command line -----------------------------------------

def test_save_npy_keeps_uint8_and_load_npy_maps_it(tmp_path, problem):
    X, y = problem
    folder = fastnn.datasets.save_npy(tmp_path / "set", X, y, X[:10], y[:10])
    assert sorted(p.name for p in folder.iterdir()) == ["X.npy", "X_test.npy", "y.npy",
                                                        "y_test.npy"]
    (Xm, ym), (Xt, yt) = fastnn.datasets.load_npy(folder)
    assert Xm.dtype == np.uint8 and data.is_mapped(Xm) and not Xm.flags.writeable
    np.testing.assert_array_equal(Xm, X)
    np.testing.assert_array_equal(yt, y[:10])
    (Xi, _), none = fastnn.datasets.load_npy(fastnn.datasets.save_npy(tmp_path / "b", X, y),
                                             mmap_mode=None)
    assert none is None and not data.is_mapped(Xi)


def test_save_npy_streams_a_map_in_chunks(tmp_path, monkeypatch, problem):
    from fastnn.datasets import npy

    X, y = problem
    monkeypatch.setattr(npy, "_CHUNK_ROWS", 7)          # several chunks, a partial last one
    folder = fastnn.datasets.save_npy(tmp_path / "s", mapped(write(tmp_path, "X", X)), y)
    np.testing.assert_array_equal(np.load(folder / "X.npy"), X)


@pytest.mark.parametrize("missing, message", [
    (("y.npy",), "missing y.npy"), (("y_test.npy",), "X_test.npy without its pair")])
def test_load_npy_names_missing_files(tmp_path, problem, missing, message):
    X, y = problem
    folder = fastnn.datasets.save_npy(tmp_path / "s", X, y, X, y)
    for name in missing:
        (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=message):
        fastnn.datasets.load_npy(folder)


def test_truncated_npy_file_is_a_clear_error(tmp_path, problem):
    X, y = problem
    folder = fastnn.datasets.save_npy(tmp_path / "s", X, y)
    path = folder / "X.npy"
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) - 100)
    with pytest.raises(fastnn.datasets.DatasetError, match=r"X.npy: the file is truncated"):
        fastnn.datasets.load_npy(folder)


def test_load_npy_checks_shapes(tmp_path, problem):
    X, y = problem
    folder = fastnn.datasets.save_npy(tmp_path / "s", X, y)
    np.save(folder / "y.npy", y[:-1])
    with pytest.raises(fastnn.datasets.DatasetError, match="does not match X.npy's 301 rows"):
        fastnn.datasets.load_npy(folder)


def test_mnist_idx_converts_to_uint8_npy(tmp_path):
    rng = np.random.default_rng(0)
    idx = tmp_path / "idx"
    idx.mkdir()
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 30).astype(np.uint8)
    for name, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels),
                        ("t10k-images-idx3-ubyte.gz", images[:9]),
                        ("t10k-labels-idx1-ubyte.gz", labels[:9])):
        fastnn.datasets.write_idx(idx / name, array)
    folder = fastnn.datasets.mnist_to_npy(idx, tmp_path / "npy")
    (X, y), (Xt, yt) = fastnn.datasets.load_npy(folder)
    assert X.dtype == np.uint8 and X.shape == (30, 784) and Xt.shape == (9, 784)
    np.testing.assert_array_equal(X, images.reshape(30, -1))
    np.testing.assert_array_equal(yt, labels[:9])
    (Xf, _), _ = fastnn.datasets.load_mnist(idx)
    np.testing.assert_array_equal(Xf, (X / 255).astype(np.float32))


def cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "fastnn.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_trains_from_a_npy_folder_and_predicts_raw_pixels(tmp_path):
    X, y = fastnn.datasets.load_digits(scale=False, dtype="float64")
    X = (X * 15).astype(np.uint8)                # 0..240: raw 8-bit pixels
    folder = fastnn.datasets.save_npy(tmp_path / "digits", X[:1500], y[:1500], X[1500:],
                                      y[1500:])
    model = tmp_path / "m.npz"
    train = cli("train", "--data", f"npy:{folder}", "--epochs", "3", "--save", model)
    assert train.returncode == 0, train.stderr
    assert "rescale x*0.00392157+0" in train.stdout          # uint8 -> Rescaling(1/255)
    accuracy = float(train.stdout.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.8
    np.save(tmp_path / "raw.npy", X[1500:])
    predicted = cli("predict", model, "--input", tmp_path / "raw.npy")
    assert predicted.returncode == 0 and "warning" not in predicted.stderr
    labels = np.array(predicted.stdout.split(), dtype=np.int64)
    assert np.mean(labels == y[1500:]) == pytest.approx(accuracy, abs=5e-5)   # printed to 4 places
    evaluated = cli("evaluate", model, "--data", f"npy:{folder}")
    assert evaluated.stdout.strip() == train.stdout.strip().splitlines()[-2]


def test_predict_warns_about_inputs_outside_the_training_range(tmp_path):
    X, y = fastnn.datasets.load_digits()                    # pixels scaled to [0, 1]
    model = tmp_path / "m.npz"
    net = fastnn.Network([fastnn.Dense(64, 10)], seed=0)
    net.fit(X, y, epochs=1, verbose=0)
    assert net.input_range == (0.0, 1.0)
    fastnn.save(net, model)
    assert fastnn.load(model).input_range == (0.0, 1.0)
    np.save(tmp_path / "raw.npy", X[:5] * 16)               # raw 0..16 pixels
    raw = cli("predict", model, "--input", tmp_path / "raw.npy")
    assert raw.returncode == 0
    assert "warning: the inputs span [0, 16] but the model was trained on [0, 1]" in raw.stderr
    scaled = cli("predict", model, "--input", tmp_path / "raw.npy", "--scale", "16")
    assert scaled.returncode == 0 and scaled.stderr == ""
    assert "input range:  [0, 1]" in cli("info", model).stdout


def test_input_range_of_a_map_comes_from_a_sample_and_widens_over_fits(tmp_path, problem):
    X, y = problem
    model = net((1 / 255, 0.0))
    fit(model, mapped(write(tmp_path, "X", X)), y)
    assert model.input_range == (X.min() / 255, X.max() / 255)
    fit(model, X[:50] // 2, y[:50])
    assert model.input_range == (X.min() / 255, X.max() / 255)


def test_cli_shuffle_option_reaches_fit(tmp_path):
    X, y = fastnn.datasets.load_digits(scale=False, dtype="float64")
    folder = fastnn.datasets.save_npy(tmp_path / "d", (X * 15).astype(np.uint8), y)
    params = {}
    for name, mode in (("block", "block"), ("block2", "block"), ("true", "true"),
                       ("false", "false")):
        model = tmp_path / f"{name}.npz"
        run = cli("train", "--data", f"npy:{folder}", "--epochs", "2", "--shuffle", mode,
                  "--save", model, "--quiet")
        assert run.returncode == 0, run.stderr
        params[name] = fastnn.load(model).get_params()
    np.testing.assert_array_equal(params["block"], params["block2"])     # seeded
    assert not np.array_equal(params["block"], params["true"])           # another order
    assert not np.array_equal(params["true"], params["false"])
    bad = cli("train", "--shuffle", "sometimes")
    assert bad.returncode == 2 and "--shuffle" in bad.stderr


@pytest.mark.parametrize("n, batch_size, rank, size", [(200_003, 64, 1, 3), (70_000, 7, 0, 2),
                                                       (5, 64, 0, 1)])
def test_read_order_in_pieces_equals_one_sort(monkeypatch, n, batch_size, rank, size):
    """read_order sorts READ_ORDER_ROWS at a time (bounded memory); the result is the same."""
    from fastnn import data
    perm = np.random.default_rng(n).permutation(n)
    pieces = data.read_order(perm, batch_size, rank, size)
    monkeypatch.setattr(data, "READ_ORDER_ROWS", 1 << 40)
    whole = data.read_order(perm, batch_size, rank, size)
    np.testing.assert_array_equal(pieces, whole)
    steps = -(-n // batch_size)
    for s in (0, steps // 2, steps - 1):                 # within a share: file order, a bijection
        start = s * batch_size
        r = min(batch_size, n - start)
        lo, hi = start + r * rank // size, start + r * (rank + 1) // size
        slots = pieces[lo:hi]
        assert sorted(slots) == list(range(hi - lo))
        assert (np.diff(perm[lo + slots]) > 0).all()


# ---- over many rows: an order computed a block at a time, memory that does not grow -------

@pytest.mark.parametrize("n", [1, 2, 3, 97, 65_537, 250_000])
def test_keyed_order_is_a_seeded_permutation_in_any_pieces(n):
    order = data.KeyedOrder(np.random.default_rng(4), n)
    whole = order.rows(0, n)
    np.testing.assert_array_equal(np.sort(whole), np.arange(n))            # every row once
    np.testing.assert_array_equal(data.KeyedOrder(np.random.default_rng(4), n).rows(0, n),
                                  whole)                                     # seeded
    cuts = np.unique(np.random.default_rng(n).integers(0, n + 1, 7).tolist() + [0, n])
    np.testing.assert_array_equal(
        np.concatenate([order.rows(a, b) for a, b in zip(cuts[:-1], cuts[1:])]), whole)
    np.testing.assert_array_equal(order.rows(n - 1, n + 50), whole[n - 1:])  # clipped at n
    if n > 1000:
        other = data.KeyedOrder(np.random.default_rng(5), n).rows(0, n)
        assert np.mean(other == whole) < 0.01                               # another seed
        # Shuffled: no trace of the identity or of its neighbourhoods.
        assert abs(np.corrcoef(np.arange(n), whole)[0, 1]) < 0.02
        assert np.mean(np.abs(np.diff(whole)) < n / 100) < 0.03
        # Each tenth of the positions takes about a tenth of every tenth of the rows.
        counts = np.histogram2d(np.arange(n), whole, bins=10)[0]
        assert counts.min() > 0.8 * n / 100 and counts.max() < 1.2 * n / 100


def test_epoch_order_keeps_numpys_permutation_for_few_rows_and_keys_many():
    small = data.epoch_order(np.random.default_rng(1), data.PERMUTATION_ROWS, True, 12, 32)
    np.testing.assert_array_equal(small.rows(0, data.PERMUTATION_ROWS),
                                  np.random.default_rng(1).permutation(data.PERMUTATION_ROWS))
    big = data.epoch_order(np.random.default_rng(1), data.PERMUTATION_ROWS + 1, True, 12, 32)
    assert isinstance(big, data.KeyedOrder)
    assert isinstance(data.epoch_order(np.random.default_rng(1), 10 ** 6, "block", 784, 64),
                      data.BlockOrder)
    np.testing.assert_array_equal(data.epoch_order(None, 10, False, 12, 32).rows(3, 20),
                                  np.arange(3, 10))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_keyed_order_maps_train_bit_identically_to_memory_and_resume(tmp_path, problem,
                                                                    monkeypatch, backend):
    monkeypatch.setattr(data, "PERMUTATION_ROWS", 50)          # 301 rows: the keyed order
    X, y = problem
    Xf = (X / 255).astype(np.float32)
    X_map, y_map = mapped(write(tmp_path, "X", Xf)), mapped(write(tmp_path, "y", y))
    a, b = net(backend=backend), net(backend=backend)
    fit(a, X_map, y_map)
    fit(b, Xf, y.astype(np.int64))
    np.testing.assert_array_equal(a.get_params(), b.get_params())
    first = net(backend=backend)
    first.fit(X_map, y_map, epochs=1, batch_size=32, verbose=0, optimizer=fastnn.Adam(0.01),
              checkpoint=tmp_path / "ck.npz")
    resumed = net(backend=backend)
    resumed.fit(X_map, y_map, epochs=3, batch_size=32, verbose=0, optimizer=fastnn.Adam(0.01),
                resume=tmp_path / "ck.npz")
    np.testing.assert_array_equal(resumed.get_params(), a.get_params())
    # The order is not numpy's permutation: the same fit with it differs.
    monkeypatch.setattr(data, "PERMUTATION_ROWS", 1 << 16)
    c = net(backend=backend)
    fit(c, X_map, y_map)
    assert not np.array_equal(c.get_params(), a.get_params())


def test_keyed_order_numba_equals_the_numpy_reference(tmp_path, problem, monkeypatch):
    monkeypatch.setattr(data, "PERMUTATION_ROWS", 50)
    X, y = problem
    X_map = mapped(write(tmp_path, "X", X))
    a, b = net((1 / 255, 0.0), dtype="float64"), net((1 / 255, 0.0), dtype="float64",
                                                    backend="numpy")
    fit(a, X_map, y, optimizer=fastnn.SGD(0.1))
    fit(b, X_map, y, optimizer=fastnn.SGD(0.1))
    np.testing.assert_allclose(a.get_params(), b.get_params(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shuffle", [True, "block"])
def test_memory_of_a_fit_on_a_map_does_not_grow_with_the_rows(tmp_path, shuffle):
    """numpy's allocations at their peak during fit, for N and 10 N rows of a map.

    Before the orders were computed a block at a time, the epoch's
    permutation, read order and per-step arrays grew by about 33 bytes a row
    (57 MiB more at 10 N here); now a fit holds one block's stretch of the
    order and its read order (``MAX_BLOCK_ROWS`` rows at most).
    """
    import gc
    import tracemalloc

    peaks = []
    for n in (200_000, 2_000_000):          # past the block's cap of rows (MAX_BLOCK_ROWS)
        rng = np.random.default_rng(n)
        X = np.lib.format.open_memmap(tmp_path / f"X{n}.npy", mode="w+", dtype=np.uint8,
                                      shape=(n, 8))
        X[:] = rng.integers(0, 256, (n, 8), dtype=np.uint8)
        X.flush()
        np.save(tmp_path / f"y{n}.npy", rng.integers(0, 2, n).astype(np.uint8))
        X_map, y_map = mapped(tmp_path / f"X{n}.npy"), mapped(tmp_path / f"y{n}.npy")
        model = fastnn.Network([fastnn.Rescaling(1 / 255), fastnn.Dense(8, 4, "relu"),
                                fastnn.Dense(4, 2)], seed=0, threads=1)
        model.fit(X_map[:500], y_map[:500], epochs=1, batch_size=64, verbose=0)  # buffers
        gc.collect()
        tracemalloc.start()
        try:
            model.fit(X_map, y_map, epochs=2, batch_size=64, shuffle=shuffle, verbose=0)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # 8 MiB: the peak moves by ~2 MiB from run to run (what the collector has freed by
    # then, how the steps fell into calls), and the old per-row arrays added 57 MiB.
    assert peaks[1] - peaks[0] < 8 << 20, peaks
