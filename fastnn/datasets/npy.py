"""Data sets as ``.npy`` files, for training from memory maps larger than memory.

A data folder holds ``X.npy`` (shape (n, n_features)) and ``y.npy`` (shape
(n,) labels or (n, n_outputs) targets) and, optionally, a test split
``X_test.npy`` and ``y_test.npy``. The arrays keep their dtypes: uint8 pixels
stay uint8 (a quarter of float32's bytes) and are converted while training
reads them (``fastnn.Rescaling`` scales them inside the network).

>>> from fastnn import datasets
>>> datasets.mnist_to_npy("mnist-idx/", "mnist-npy/")      # doctest: +SKIP
>>> (X, y), (X_test, y_test) = datasets.load_npy("mnist-npy/")   # memory maps
"""

import os
from pathlib import Path

import numpy as np

from ._base import DatasetError

NPY_FILES = ("X.npy", "y.npy", "X_test.npy", "y_test.npy")
_CHUNK_ROWS = 65536


def _write_array(path, array):
    """Write ``array`` to ``path`` as ``.npy`` in chunks of rows, atomically (temp file, rename)."""
    array = np.asarray(array) if not isinstance(array, np.ndarray) else array
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=array.dtype, shape=array.shape)
        for start in range(0, array.shape[0], _CHUNK_ROWS):
            out[start:start + _CHUNK_ROWS] = array[start:start + _CHUNK_ROWS]
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def save_npy(folder, X, y, X_test=None, y_test=None):
    """Write a data set as ``.npy`` files for memory mapping, keeping its dtypes.

    Parameters
    ----------
    folder : str or os.PathLike
        Created if missing. Receives ``X.npy`` and ``y.npy`` (and
        ``X_test.npy``, ``y_test.npy`` when given).
    X : array-like of shape (n_samples, n_features)
        Written C-contiguous in its own dtype (uint8 stays uint8), a chunk of
        rows at a time: ``X`` may itself be a memory map larger than memory.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    X_test, y_test : array-like, optional
        A test split, written likewise.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(folder)
    pairs = [("X", X, "y", y)]
    if (X_test is None) != (y_test is None):
        raise ValueError("pass X_test and y_test together, or neither")
    if X_test is not None:
        pairs.append(("X_test", X_test, "y_test", y_test))
    for x_name, features, y_name, labels in pairs:
        if np.ndim(features) != 2:
            raise ValueError(f"{x_name} must be 2-D (n_samples, n_features), got shape "
                             f"{np.shape(features)}")
        if np.shape(labels)[:1] != np.shape(features)[:1]:
            raise ValueError(f"{x_name} has {np.shape(features)[0]} rows but {y_name} has "
                             f"{np.shape(labels)[:1] or 'none'}")
    folder.mkdir(parents=True, exist_ok=True)
    for x_name, features, y_name, labels in pairs:
        _write_array(folder / f"{x_name}.npy", features)
        _write_array(folder / f"{y_name}.npy", labels)
    return folder


def _open(path, mmap_mode):
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except ValueError as exc:
        message = str(exc)
        if "mmap length" in message or "cannot reshape" in message or "EOF" in message:
            message = f"the file is truncated or corrupted ({message})"
        raise DatasetError(f"{path}: {message}") from None
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npy file ({exc})") from None


def load_npy(folder, *, mmap_mode="r"):
    """Open a data folder written by :func:`save_npy` (memory-mapped, read-only by default).

    Parameters
    ----------
    folder : str or os.PathLike
    mmap_mode : {"r", None}, default "r"
        "r": memory maps, of which training reads only the rows it uses;
        None: read the arrays into memory.

    Returns
    -------
    (X, y), test
        ``test`` is ``(X_test, y_test)``, or None when the folder has no test split.

    Raises
    ------
    FileNotFoundError
        ``X.npy`` or ``y.npy`` is missing (or one of the test pair).
    DatasetError
        A file is truncated, holds pickled objects, or the shapes do not match.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    have = {name: (folder / name).is_file() for name in NPY_FILES}
    missing = [name for name in NPY_FILES[:2] if not have[name]]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)} (a data folder holds "
                                f"X.npy and y.npy, and optionally X_test.npy and y_test.npy)")
    if have["X_test.npy"] != have["y_test.npy"]:
        present = "X_test.npy" if have["X_test.npy"] else "y_test.npy"
        raise FileNotFoundError(f"{folder}: {present} without its pair")
    splits = []
    for x_name, y_name in (NPY_FILES[:2], NPY_FILES[2:]):
        if not have[x_name]:
            splits.append(None)
            continue
        X, y = _open(folder / x_name, mmap_mode), _open(folder / y_name, mmap_mode)
        if X.ndim != 2:
            raise DatasetError(f"{folder / x_name}: must be 2-D (n_samples, n_features), got "
                               f"shape {X.shape}")
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise DatasetError(f"{folder / y_name}: shape {y.shape} does not match "
                               f"{x_name}'s {X.shape[0]} rows")
        splits.append((X, y))
    return splits[0], splits[1]


def mnist_to_npy(source, folder, *, download=False):
    """Convert MNIST's IDX files into a data folder of uint8 ``.npy`` files.

    Parameters
    ----------
    source : str or os.PathLike or None
        The folder of the four IDX files (as :func:`fastnn.datasets.load_mnist`
        finds them; None: its cache folder).
    folder : str or os.PathLike
        Receives ``X.npy`` (60000, 784) and ``X_test.npy`` (10000, 784) as
        uint8 pixels 0..255, ``y.npy`` and ``y_test.npy`` as uint8 labels.
    download : bool, default False
        Fetch missing IDX files first (see ``load_mnist``).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    from .mnist import load_mnist_raw

    (X, y), (X_test, y_test) = load_mnist_raw(source, download=download)
    return save_npy(folder, X, y, X_test, y_test)
