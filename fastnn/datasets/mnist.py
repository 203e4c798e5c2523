"""MNIST from its four IDX files, in a folder or downloaded (checked against SHA-256)."""

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from ._base import _CHUNK, DatasetError, _finish, _sha256
from .idx import read_idx

#: The four MNIST files, without the ``.gz`` suffix.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: Base URLs tried in order; a file is fetched as ``<mirror><name>.gz``.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: SHA-256 of the published MNIST ``.gz`` files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

_MNIST_SIDE = 28
_MNIST_CLASSES = 10

def _mnist_folder(path, cache_dir):
    if path is not None and cache_dir is not None:
        raise ValueError("pass either path or cache_dir, not both")
    if path is not None:
        return Path(path).expanduser()
    root = cache_dir or os.environ.get("FASTNN_CACHE_DIR") or Path.home() / ".cache" / "fastnn"
    return Path(root).expanduser() / "mnist"


def _find(folder, name):
    """The plain or gzipped copy of ``name`` in ``folder`` (plain first), or None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download(name, folder, mirrors, expected, timeout):
    """Fetch ``<mirror><name>`` from the first mirror that serves the expected bytes.

    The file is written to a temporary file in ``folder``, verified, then moved
    into place with ``os.replace``; a rejected download is deleted.

    Returns
    -------
    list of str
        The mirrors that could not be reached, so later files try them last.
    """
    unreachable, failures, mismatches = [], [], []
    for mirror in mirrors:
        url = mirror + name
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        try:
            digest = hashlib.sha256()
            request = urllib.request.Request(url, headers={"User-Agent": "fastnn-numba"})
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
            if digest.hexdigest() == expected:
                os.replace(tmp, folder / name)
                return unreachable
            mismatches.append(f"got {digest.hexdigest()} from {url}")
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            unreachable.append(mirror)
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    if mismatches:
        raise DatasetError(
            f"{name}: checksum mismatch, expected sha256 {expected}; "
            + "; ".join(mismatches + failures)
        )
    gz_names = ", ".join(f"{f}.gz" for f in MNIST_FILES)
    raise ConnectionError(
        f"could not download {name} from any mirror ({'; '.join(failures)}). "
        f"Without network access, download {gz_names} by hand and put them in {folder}"
    )


def _fetch_missing(folder, mirrors, checksums, timeout):
    """Make sure every MNIST file is in ``folder``, downloading what is missing or corrupt."""
    if isinstance(mirrors, str):
        raise TypeError("mirrors must be a list of base URLs, not a single string")
    mirrors = [m if m.endswith("/") else m + "/" for m in mirrors]
    if not mirrors:
        raise ValueError("mirrors is empty: give at least one base URL")
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    folder.mkdir(parents=True, exist_ok=True)
    for base in MNIST_FILES:
        name = f"{base}.gz"
        if name not in checksums:
            raise ValueError(f"checksums has no entry for {name}")
        expected = checksums[name].lower()
        gz = folder / name
        if gz.is_file():
            if _sha256(gz) == expected:
                continue
        elif (folder / base).is_file():
            continue  # a plain copy put there by hand; the published digests are of the .gz
        unreachable = _download(name, folder, mirrors, expected, timeout)
        mirrors = [m for m in mirrors if m not in unreachable] + unreachable


def _load_mnist_split(folder, images_name, labels_name):
    images_path, labels_path = _find(folder, images_name), _find(folder, labels_name)
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[1:] != (_MNIST_SIDE, _MNIST_SIDE):
        raise DatasetError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected {_MNIST_SIDE}x{_MNIST_SIDE}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{labels_path}: {labels.shape[0]} labels but {images_path} holds {images.shape[0]} images"
        )
    bad = np.flatnonzero(labels >= _MNIST_CLASSES)
    if bad.size:
        raise DatasetError(
            f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is outside 0..{_MNIST_CLASSES - 1}"
        )
    return images.reshape(images.shape[0], -1), labels


def load_mnist(path=None, *, download=False, cache_dir=None, mirrors=None, scale=True,
               one_hot=False, dtype="float32", timeout=10.0, checksums=None):
    """Load MNIST from the four standard IDX files, downloading them on request.

    The files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` are looked for in
    the data folder, each plain or with ``.gz`` (the plain copy is used when both
    exist).

    Parameters
    ----------
    path : str or os.PathLike, optional
        Data folder. Default: ``<cache_dir>/mnist``.
    download : bool, default False
        Fetch missing files as ``<mirror><name>.gz`` into the data folder. Each
        download goes to a temporary file, is checked against its SHA-256, then is
        moved into place. A ``.gz`` already there is kept when its checksum
        verifies and replaced when it does not; a plain copy is used as it is.
    cache_dir : str or os.PathLike, optional
        Cache root used when ``path`` is None. Default: ``$FASTNN_CACHE_DIR`` if
        set, else ``~/.cache/fastnn``.
    mirrors : sequence of str, optional
        Base URLs tried in order. Default: ``MNIST_MIRRORS``.
    scale : bool, default True
        Divide pixel values (0..255) by 255.
    one_hot : bool, default False
        Return labels one-hot encoded, shape (n, 10).
    dtype : str or numpy dtype, default "float32"
        Floating dtype of ``X`` (and of ``y`` when one-hot).
    timeout : float, default 10.0
        Seconds allowed for each connection and read.
    checksums : mapping of str to str, optional
        ``.gz`` file name -> SHA-256 hex digest. Default: ``MNIST_SHA256``.

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
        ``X_*`` of shape (n, 784), row-major 28x28 images; ``y_*`` of shape (n,),
        int64, or (n, 10) in ``dtype`` when ``one_hot``. The standard files give
        n = 60000 for training and 10000 for test.

    Raises
    ------
    FileNotFoundError
        A file is missing and ``download`` is false.
    DatasetError
        A file is malformed, or no mirror served bytes with the expected checksum.
    ConnectionError
        No mirror could be reached.
    """
    (X_train, y_train), (X_test, y_test) = load_mnist_raw(
        path, download=download, cache_dir=cache_dir, mirrors=mirrors, timeout=timeout,
        checksums=checksums)
    return tuple(_finish(X, y, max_value=255, scale=scale, one_hot=one_hot, dtype=dtype,
                         n_classes=_MNIST_CLASSES)
                 for X, y in ((X_train, y_train), (X_test, y_test)))


def load_mnist_raw(path=None, *, download=False, cache_dir=None, mirrors=None, timeout=10.0,
                   checksums=None):
    """MNIST as stored: uint8 pixels of shape (n, 784) and uint8 labels (see :func:`load_mnist`).

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
    """
    folder = _mnist_folder(path, cache_dir)
    if download:
        _fetch_missing(
            folder,
            MNIST_MIRRORS if mirrors is None else mirrors,
            MNIST_SHA256 if checksums is None else checksums,
            timeout,
        )
    missing = [name for name in MNIST_FILES if _find(folder, name) is None]
    if missing:
        found = len(MNIST_FILES) - len(missing)
        others = f"; the other {found} are there" if found else ""
        raise FileNotFoundError(
            f"MNIST files missing from {folder}: {', '.join(missing)} (each plain or with "
            f".gz{others}). Pass download=True to fetch them, or put the files there."
        )
    train, test = (_load_mnist_split(folder, images_name, labels_name)
                   for images_name, labels_name in (MNIST_FILES[:2], MNIST_FILES[2:]))
    return train, test
