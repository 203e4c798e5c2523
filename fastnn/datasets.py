"""Small datasets for examples and tests: bundled UCI digits, MNIST (IDX or CSV).

Everything here uses numpy and the standard library only, and nothing touches
the network unless ``load_mnist(..., download=True)`` is called.

The loaders share one convention: features come back as ``X`` of shape
``(n_samples, n_features)`` in a floating ``dtype``, scaled to [0, 1] when
``scale`` is true; labels come back as ``y`` of shape ``(n_samples,)`` with
dtype int64, or one-hot of shape ``(n_samples, n_classes)`` in ``dtype`` when
``one_hot`` is true.
"""

import gzip
import hashlib
import http.client
import importlib.resources
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "DatasetError",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "load_csv",
    "load_digits",
    "load_mnist",
    "read_idx",
    "train_test_split",
    "write_idx",
]


class DatasetError(ValueError):
    """A data file is malformed; the message names the file and the problem."""


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

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UBYTE = 0x08
_IDX_KINDS = {1: "IDX labels", 3: "IDX images"}
_MNIST_SIDE = 28
_MNIST_CLASSES = 10
_CHUNK = 1 << 16


# ----------------------------------------------------------------------------
# shared helpers


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


# ----------------------------------------------------------------------------
# bundled digits and splitting


def load_digits(*, scale=True, one_hot=False, dtype="float32"):
    """Load the bundled UCI optical-recognition digits (1,797 images of 8x8 pixels).

    Parameters
    ----------
    scale : bool, default True
        Divide the pixel values (integers 0..16) by 16 so they lie in [0, 1].
    one_hot : bool, default False
        Return the labels one-hot encoded instead of as integers.
    dtype : str or numpy dtype, default "float32"
        Floating dtype of ``X`` (and of ``y`` when one-hot).

    Returns
    -------
    X : ndarray of shape (1797, 64)
        Row-major 8x8 images.
    y : ndarray of shape (1797,), int64, or of shape (1797, 10), ``dtype``
        Digit labels 0..9.
    """
    raw = importlib.resources.files("fastnn").joinpath("data/digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode("ascii").splitlines(), delimiter=",", dtype=np.int64)
    return _finish(
        table[:, :-1], table[:, -1],
        max_value=16, scale=scale, one_hot=one_hot, dtype=dtype, n_classes=10,
    )


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


# ----------------------------------------------------------------------------
# IDX


def read_idx(path, *, ndim=None):
    """Read an unsigned-byte IDX file (the MNIST format), gzipped or not.

    Compression is detected from the gzip magic bytes, not from the file name.

    Parameters
    ----------
    path : str or os.PathLike
    ndim : int, optional
        Required number of dimensions. When given, the magic number must be
        ``0x000008NN`` with ``NN == ndim`` (``0x00000801`` for labels,
        ``0x00000803`` for images).

    Returns
    -------
    ndarray of dtype uint8 and shape (d_1, ..., d_ndim)
        The shape read from the header.

    Raises
    ------
    DatasetError
        Bad magic number, unsupported data type, or a payload whose length is not
        exactly the product of the dimensions (truncated or trailing bytes).
    """
    name = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{name}: {len(data)} bytes is too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if ndim is not None and magic != (_IDX_UBYTE << 8 | ndim):
        kind = _IDX_KINDS.get(ndim, f"{ndim}-D IDX ubyte")
        raise DatasetError(
            f"{name}: bad magic number 0x{magic:08x}, expected 0x{_IDX_UBYTE << 8 | ndim:08x} ({kind})"
        )
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"{name}: bad magic number 0x{magic:08x}, an IDX file starts with two zero bytes"
        )
    if data[2] != _IDX_UBYTE:
        raise DatasetError(
            f"{name}: IDX data type 0x{data[2]:02x} is not supported, only 0x08 (unsigned byte)"
        )
    n_dims = data[3]
    if n_dims == 0:
        raise DatasetError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * n_dims
    if len(data) < header:
        raise DatasetError(
            f"{name}: truncated header: {n_dims} dimensions need {header} bytes, file has {len(data)}"
        )
    shape = struct.unpack(f">{n_dims}I", data[4:header])
    expected = math.prod(shape)
    actual = len(data) - header
    if actual < expected:
        raise DatasetError(
            f"{name}: truncated payload: shape {shape} needs {expected} bytes, found {actual}"
        )
    if actual > expected:
        raise DatasetError(
            f"{name}: {actual - expected} trailing bytes after the {expected}-byte payload of shape {shape}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def write_idx(path, array):
    """Write an array as an unsigned-byte IDX file, gzipped when ``path`` ends in ``.gz``.

    Parameters
    ----------
    path : str or os.PathLike
    array : array_like of integers in 0..255, with 1 to 255 dimensions
        Written with the magic number ``0x000008NN`` where ``NN = array.ndim``.
        The gzip header carries no timestamp, so equal arrays give equal files.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "uib":
        raise TypeError(
            f"write_idx writes unsigned bytes; got a {array.dtype} array, "
            "convert it with .astype(np.uint8) first"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX holds 1 to 255 dimensions, got an array of {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be below 2**32, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(
            f"IDX ubyte values must lie in 0..255, got {array.min()}..{array.max()}"
        )
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if os.fspath(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as handle:
        handle.write(data)


# ----------------------------------------------------------------------------
# MNIST


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
    splits = []
    for images_name, labels_name in (MNIST_FILES[:2], MNIST_FILES[2:]):
        X, y = _load_mnist_split(folder, images_name, labels_name)
        splits.append(_finish(
            X, y, max_value=255, scale=scale, one_hot=one_hot, dtype=dtype,
            n_classes=_MNIST_CLASSES,
        ))
    return splits[0], splits[1]


# ----------------------------------------------------------------------------
# CSV


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_error(name, lines, width):
    """Find the first ragged row or non-numeric cell among ``(line number, text)`` pairs."""
    for line, text in lines:
        cells = text.split(",")
        if len(cells) != width:
            return DatasetError(
                f"{name}: line {line} has {len(cells)} columns, expected {width} like line {lines[0][0]}"
            )
        for column, cell in enumerate(cells, start=1):
            if not _is_number(cell):
                return DatasetError(f"{name}: line {line}, column {column}: {cell!r} is not a number")
    return None


def load_csv(path, *, scale=True, one_hot=False, dtype="float32", n_features=None, header="auto"):
    """Load a labelled CSV table in the common MNIST form: label first, then pixel values.

    Blank lines are skipped. The file may be gzipped (detected from its magic bytes).
    The first column is always read as the label: a table of features alone
    loads without error but with its first feature as ``y`` (often a single
    value, such as an always-zero corner pixel), so check ``np.unique(y)``
    before training on a file of unknown layout.

    Parameters
    ----------
    path : str or os.PathLike
    scale : bool, default True
        Divide the feature values by 255.
    one_hot : bool, default False
        Return the labels one-hot encoded with ``max(10, largest label + 1)``
        columns.
    dtype : str or numpy dtype, default "float32"
        Floating dtype of ``X`` (and of ``y`` when one-hot).
    n_features : int, optional
        Required number of feature columns (784 for MNIST).
    header : {"auto", True, False}, default "auto"
        Whether the first line is a header. ``"auto"``: it is one when any of its
        cells is not a number.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), int64, or (n_samples, n_classes), ``dtype``

    Raises
    ------
    DatasetError
        Empty file, ragged rows, non-numeric or non-finite cells, negative or
        non-integer labels, or a feature count other than ``n_features``; the
        message names the file and, where there is one, the line.
    """
    if header not in ("auto", True, False):
        raise ValueError(f"header must be 'auto', True or False, got {header!r}")
    name = os.fspath(path)
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name}: not UTF-8 text ({exc})") from exc
    # (line number, text) of every non-blank line
    rows = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if rows and (header is True
                 or (header == "auto" and not all(map(_is_number, rows[0][1].split(","))))):
        rows = rows[1:]
    if not rows:
        raise DatasetError(f"{name}: no data rows")
    width = len(rows[0][1].split(","))
    if width < 2:
        raise DatasetError(f"{name}: line {rows[0][0]} has 1 column; need a label and features")
    lines = [text for _, text in rows]
    table = None
    # numpy's C parser, integers first (several times faster, and what MNIST holds);
    # when both fail, scan the lines once to say where and why
    for parse_dtype in (np.int64, np.float64):
        try:
            table = np.loadtxt(lines, delimiter=",", dtype=parse_dtype, ndmin=2, comments=None)
            break
        except ValueError as exc:
            error = exc
    if table is None:
        raise (_csv_error(name, rows, width) or DatasetError(f"{name}: {error}")) from None
    nonfinite = np.flatnonzero(~np.isfinite(table).all(axis=1))
    if nonfinite.size:
        raise DatasetError(f"{name}: line {rows[nonfinite[0]][0]} has a non-finite value")
    labels = table[:, 0]
    bad = np.flatnonzero((labels < 0) | (labels != np.floor(labels)))
    if bad.size:
        raise DatasetError(
            f"{name}: line {rows[bad[0]][0]}: label {labels[bad[0]]:g} is not a non-negative integer"
        )
    if n_features is not None and width - 1 != n_features:
        raise DatasetError(f"{name}: {width - 1} feature columns, expected n_features={n_features}")
    return _finish(
        table[:, 1:], labels,
        max_value=255, scale=scale, one_hot=one_hot, dtype=dtype,
        n_classes=max(10, int(labels.max()) + 1),
    )
