"""What the loaders share: the error class, reading (maybe gzipped) files, the final
cast/scale/encode of features and labels, and the seeded train/test split."""

import gzip
import hashlib
import math
import os
import zlib

import numpy as np

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 16

class DatasetError(ValueError):
    """A data file is malformed; the message names the file and the problem."""


def _finish(X, y, *, max_value, scale, one_hot, dtype, n_classes):
    """Cast, scale and encode raw features and labels the same way for every loader.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Raw feature values (any real dtype).
    y : ndarray of shape (n_samples,)
        Non-negative integer labels, all below ``n_classes``.
    max_value : float
        The largest raw feature value; ``X / max_value`` lies in [0, 1].
    scale, one_hot : bool
    dtype : str or numpy dtype
        A floating dtype for ``X`` (and for ``y`` when one-hot).
    n_classes : int
        Width of the one-hot encoding.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype ``dtype``
    y : ndarray of shape (n_samples,), int64, or (n_samples, n_classes), ``dtype``
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(
            f"dtype must be a floating type such as 'float32' or 'float64', got {dtype}"
        )
    X = np.asarray(X).astype(dtype)
    if scale:
        X /= dtype.type(max_value)
    y = np.asarray(y).astype(np.int64)
    if one_hot:
        encoded = np.zeros((y.shape[0], n_classes), dtype=dtype)
        encoded[np.arange(y.shape[0]), y] = 1
        y = encoded
    return X, y


def _read_bytes(path):
    """Return the contents of ``path``, gunzipped when it starts with the gzip magic bytes."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{os.fspath(path)}: corrupt gzip data ({exc})") from exc
    return data


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def train_test_split(X, y, test_fraction=0.2, seed=0):
    """Split samples into a training and a test set by one seeded random permutation.

    The split is not stratified. The test set has ``ceil(test_fraction * n_samples)``
    samples and the training set the rest; both must be non-empty.

    Parameters
    ----------
    X : array_like of shape (n_samples, ...)
    y : array_like of shape (n_samples, ...)
    test_fraction : float, default 0.2
        Fraction of the samples put in the test set, strictly between 0 and 1.
    seed : int, default 0
        Seed for ``np.random.default_rng``; the same seed gives the same split.

    Returns
    -------
    X_train : ndarray of shape (n_samples - n_test, ...)
    X_test : ndarray of shape (n_test, ...)
    y_train : ndarray of shape (n_samples - n_test, ...)
    y_test : ndarray of shape (n_test, ...)
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y must be arrays with one entry per sample, not scalars")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
    if isinstance(test_fraction, bool) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    n_samples = X.shape[0]
    n_test = math.ceil(test_fraction * n_samples)
    if n_test >= n_samples:
        raise ValueError(
            f"test_fraction={test_fraction} of {n_samples} samples leaves no training samples"
        )
    order = np.random.default_rng(seed).permutation(n_samples)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]
