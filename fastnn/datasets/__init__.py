"""Data sets for examples, tests and training: bundled digits, MNIST, CSV, ``.npy`` folders.

Everything here uses numpy and the standard library only, and nothing touches
the network unless ``load_mnist(..., download=True)`` is called. One source a
module: :mod:`.digits`, :mod:`.idx` (the IDX format), :mod:`.mnist`,
:mod:`.csv` and :mod:`.npy` (folders of ``.npy`` files for memory mapping).

The in-memory loaders share one convention: features come back as ``X`` of
shape ``(n_samples, n_features)`` in a floating ``dtype``, scaled to [0, 1]
when ``scale`` is true; labels come back as ``y`` of shape ``(n_samples,)``
with dtype int64, or one-hot of shape ``(n_samples, n_classes)`` in ``dtype``
when ``one_hot`` is true. ``load_npy`` instead returns the stored arrays as
memory maps, in their own dtypes.
"""

from ._base import DatasetError, train_test_split
from .csv import _is_number, load_csv  # noqa: F401  (_is_number: the CLI's CSV reader)
from .digits import load_digits
from .idx import read_idx, write_idx
from .mnist import (MNIST_FILES, MNIST_MIRRORS, MNIST_SHA256, load_mnist, load_mnist_raw)
from .npy import NPY_FILES, load_npy, mnist_to_npy, save_npy

__all__ = [
    "DatasetError",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "NPY_FILES",
    "load_csv",
    "load_digits",
    "load_mnist",
    "load_mnist_raw",
    "load_npy",
    "mnist_to_npy",
    "read_idx",
    "save_npy",
    "train_test_split",
    "write_idx",
]
