"""The file format model files and checkpoints share.

Both are one ``.npz`` (a zip of ``.npy`` arrays) holding a ``header`` array of
UTF-8 JSON beside the numeric arrays. This module writes such a file
atomically, reads one back with ``allow_pickle=False`` only, fingerprints the
parameters, and turns layers into the JSON dicts of the header and back.
``fastnn.io`` (models) and ``fastnn.checkpoint`` (training state) build on it.
"""

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from typing import Callable, NamedTuple

import numpy as np

from .layers import Dense, Dropout, Rescaling

__all__ = ["ModelFileError", "LAYER_TYPES", "layer_configs", "layer_from_config",
           "valid_layer_config", "params_sha256", "write_atomic", "read_arrays", "encode_header",
           "decode_header"]

_ZIP_MAGIC = b"PK\x03\x04"


class ModelFileError(ValueError):
    """A model file is not a valid fastnn model; the message names the file and the problem."""


# ---- layers <-> JSON -----------------------------------------------------------

def is_a(value, kind):
    """Strict JSON typing: bool is not an int."""
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _positive_int(value):
    return is_a(value, int) and value >= 1


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class LayerType(NamedTuple):
    to_config: Callable     # layer -> JSON dict
    from_config: Callable   # JSON dict -> layer
    fields: dict            # the dict's keys -> check of the value


#: The layer classes a file can hold.
LAYER_TYPES = {
    Dense: LayerType(
        lambda l: {"n_in": l.n_in, "n_out": l.n_out, "activation": l.activation},
        lambda d: Dense(d["n_in"], d["n_out"], d["activation"]),
        {"n_in": _positive_int, "n_out": _positive_int,
         "activation": lambda v: isinstance(v, str)}),
    Dropout: LayerType(
        lambda l: {"dropout": l.rate},
        lambda d: Dropout(d["dropout"]),
        {"dropout": _number}),
    Rescaling: LayerType(
        lambda l: {"scale": l.scale, "offset": l.offset},
        lambda d: Rescaling(d["scale"], d["offset"]),
        {"scale": _number, "offset": _number}),
}

LAYER_CONFIG_FORMS = ("{'n_in': int >= 1, 'n_out': int >= 1, 'activation': str}, "
                      "{'dropout': number} or {'scale': number, 'offset': number}")


def layer_configs(net):
    """``net.layers`` as JSON-ready dicts, in order.

    A Dense layer is ``{"n_in": int, "n_out": int, "activation": str}``, a
    Dropout layer ``{"dropout": rate}`` and a Rescaling layer
    ``{"scale": float, "offset": float}``.
    """
    configs = []
    for layer in net.layers:
        if type(layer) not in LAYER_TYPES:
            raise TypeError(f"cannot save layer {layer!r}: only "
                            f"{', '.join(c.__name__ for c in LAYER_TYPES)} layers are supported")
        configs.append(LAYER_TYPES[type(layer)].to_config(layer))
    return configs


def _matches(entry, fields):
    """Whether a layer entry has exactly ``fields`` (name -> check) and each passes."""
    return (isinstance(entry, dict) and set(entry) == set(fields)
            and all(check(entry[key]) for key, check in fields.items()))


def valid_layer_config(entry):
    """Whether ``entry`` is the JSON form of a known layer type."""
    return any(_matches(entry, t.fields) for t in LAYER_TYPES.values())


def layer_from_config(entry):
    """The layer a (valid) JSON dict describes."""
    return next(t.from_config for t in LAYER_TYPES.values() if _matches(entry, t.fields))(entry)


# ---- parameters, header ----------------------------------------------------------

def params_sha256(params):
    """SHA-256 of the parameters' little-endian bytes (so it is platform independent)."""
    canonical = np.ascontiguousarray(params, dtype=params.dtype.newbyteorder("<"))
    return hashlib.sha256(canonical.tobytes()).hexdigest()


def encode_header(header, **json_options):
    """The header dict as the uint8 array stored under ``header``."""
    return np.frombuffer(json.dumps(header, **json_options).encode("utf-8"), dtype=np.uint8)


def decode_header(name, arrays):
    """The JSON object of ``arrays["header"]``; ModelFileError naming ``name`` if it is not one."""
    raw = arrays.get("header")
    if raw is None:
        raise ModelFileError(f"{name}: not a fastnn file (no 'header' array)")
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{name}: 'header' must be a 1-D uint8 array")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{name}: header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name}: header must be a JSON object")
    return header


# ---- writing and reading ------------------------------------------------------------

def write_atomic(path, arrays):
    """Write ``arrays`` as an ``.npz`` at ``path``: a temporary file, fsync, rename.

    A crash or an error midway leaves any previous file at ``path`` intact.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # Name the file and the folder: mkstemp's own errors name its temporary file.
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(folder):
        what = "is not a directory" if os.path.exists(folder) else "does not exist"
        raise FileNotFoundError(f"cannot write {path}: directory {folder} {what}")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                   suffix=".tmp")
    except PermissionError:
        raise PermissionError(f"cannot write {path}: no permission to create files in "
                              f"{folder}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def _new_file_mode(path):
    """The existing file's mode, else what ``open(path, "w")`` would give (mkstemp uses 0600)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder):
    """Make the rename itself durable where the OS allows it (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_arrays(name):
    """Every member of the archive ``name``, read with ``allow_pickle=False``."""
    with open(name, "rb") as handle:
        magic = handle.read(len(_ZIP_MAGIC))
    if magic != _ZIP_MAGIC:
        raise ModelFileError(f"{name}: not a fastnn model file (not an .npz/zip archive)")
    arrays = {}
    try:
        with np.load(name, allow_pickle=False) as archive:
            for key in archive.files:
                arrays[key] = archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ModelFileError(f"{name}: contains pickled objects; refusing to load") from None
        raise ModelFileError(f"{name}: corrupted array data ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, NotImplementedError,
            OverflowError, MemoryError, RuntimeError) as exc:
        # RuntimeError: zipfile's "is encrypted, password required", from a flipped flag bit.
        raise ModelFileError(f"{name}: truncated or corrupted file ({exc})") from None
    return arrays
