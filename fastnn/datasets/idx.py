"""IDX files, the format of MNIST: unsigned bytes with a big-endian shape header."""

import gzip
import math
import os
import struct

import numpy as np

from ._base import DatasetError, _read_bytes

_IDX_UBYTE = 0x08
_IDX_KINDS = {1: "IDX labels", 3: "IDX images"}

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
