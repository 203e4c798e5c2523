"""Fuzzing ``fastnn.load`` with random corruptions of a valid model file.

Every corrupted file either loads into a network that predicts exactly like
the original, or raises the documented ``ModelFileError``; nothing else
(no other exception, no crash, no silently different model).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import Dense, Dropout, Network

X = np.random.default_rng(0).random((5, 6))


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    net = Network([Dense(6, 5, "tanh"), Dropout(0.2), Dense(5, 3)], seed=4)
    net.fit(X, np.array([0, 1, 2, 1, 0]), epochs=2, batch_size=2, verbose=0,
            optimizer=fastnn.Adam(0.01))
    path = tmp_path_factory.mktemp("model") / "m.npz"
    fastnn.save(net, path, include_optimizer=True)
    return path.read_bytes(), net.predict_proba(X)


corruptions = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**9), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**9), st.just(0)),
    st.tuples(st.just("overwrite"), st.integers(0, 10**9), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**9), st.integers(0, 255)),
)


def corrupt(data, kind, position, value):
    if not data:
        return data
    position %= len(data)
    if kind == "flip":
        return data[:position] + bytes([data[position] ^ value]) + data[position + 1:]
    if kind == "truncate":
        return data[:position]
    if kind == "overwrite":
        return data[:position] + bytes([value]) * 8 + data[position + 8:]
    return data[:position] + bytes([value]) + data[position:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(corruptions, min_size=1, max_size=3))
def test_corrupted_model_loads_identically_or_raises_model_file_error(tmp_path, model_bytes, edits):
    data, expected = model_bytes
    for edit in edits:
        data = corrupt(data, *edit)
    path = tmp_path / "corrupt.npz"
    path.write_bytes(data)
    try:
        net = fastnn.load(path)
    except fastnn.ModelFileError:
        return
    np.testing.assert_array_equal(net.predict_proba(X), expected)


def test_a_flipped_encryption_flag_raises_model_file_error(model_bytes, tmp_path):
    """Hypothesis found it: a corrupted general-purpose flag that marks a member as encrypted
    made zipfile raise RuntimeError ("password required"), which escaped ``fastnn.load``."""
    data = bytearray(model_bytes[0])
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 1                  # the first central entry's "encrypted" bit
    path = tmp_path / "encrypted.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(fastnn.ModelFileError, match="corrupted"):
        fastnn.load(path)
