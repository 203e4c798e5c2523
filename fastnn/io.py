"""Saving and loading networks: one ``.npz`` file, no pickle, checked on load.

A model file is a zip of ``.npy`` arrays written by ``np.savez``:

``header``
    uint8 array of UTF-8 JSON describing the network (format name and
    version, fastnn version, layers, loss, dtype, seed, parameter count, the
    SHA-256 of the parameter bytes and, when saved, the optimizer).
``params``
    The flat parameter vector of ``Network.get_params()``, shape (n_params,).
``opt_s1``, ``opt_s2``
    The optimizer's state arrays, shape (n_params,), only when saved with
    ``include_optimizer=True``.

Files are always read with ``np.load(path, allow_pickle=False)``, so loading a
model file never runs code from it.
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
from .network import Network
from .optimizers import OPTIMIZERS, get_optimizer

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ModelFileError", "layer_configs", "load",
           "read_header", "save"]

FORMAT_NAME = "fastnn"
FORMAT_VERSION = 1

_ZIP_MAGIC = b"PK\x03\x04"
_STATE_KEYS = ("opt_s1", "opt_s2")
_DTYPES = ("float32", "float64")


def _positive_int(value):
    return _is_a(value, int) and value >= 1


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _LayerType(NamedTuple):
    to_config: Callable     # layer -> JSON dict
    from_config: Callable   # JSON dict -> layer
    fields: dict            # the dict's keys -> check of the value


#: The layer classes a model file can hold.
_LAYER_TYPES = {
    Dense: _LayerType(
        lambda l: {"n_in": l.n_in, "n_out": l.n_out, "activation": l.activation},
        lambda d: Dense(d["n_in"], d["n_out"], d["activation"]),
        {"n_in": _positive_int, "n_out": _positive_int,
         "activation": lambda v: isinstance(v, str)}),
    Dropout: _LayerType(
        lambda l: {"dropout": l.rate},
        lambda d: Dropout(d["dropout"]),
        {"dropout": _number}),
    Rescaling: _LayerType(
        lambda l: {"scale": l.scale, "offset": l.offset},
        lambda d: Rescaling(d["scale"], d["offset"]),
        {"scale": _number, "offset": _number}),
}


class ModelFileError(ValueError):
    """A model file is not a valid fastnn model; the message names the file and the problem."""


# ----------------------------------------------------------------------------
# saving


def save(net, path, include_optimizer=False):
    """Write a network (and optionally its optimizer) to one ``.npz`` file.

    The file is written to a temporary file in the same directory, flushed to
    disk, then moved over ``path`` with ``os.replace``: a crash or an error
    midway leaves any previous file at ``path`` intact. ``path`` is used as
    given (no ``.npz`` suffix is added).

    Parameters
    ----------
    net : fastnn.Network
    path : str or os.PathLike
    include_optimizer : bool, default False
        Also save ``net.optimizer``: its name, constructor arguments, step
        count and state arrays ``s1``/``s2`` of shape (n_params,), plus the
        network's shuffling random state, so that training resumes exactly
        where it stopped.

    Raises
    ------
    TypeError
        ``net`` is not a Network, or holds a layer type that cannot be saved.
    ValueError
        ``include_optimizer`` is true but the network has no optimizer, or an
        optimizer that cannot be rebuilt by name.
    """
    from . import __version__  # not at the top: fastnn/__init__ imports this module first

    if not isinstance(net, Network):
        raise TypeError(f"save expects a fastnn.Network, got {type(net).__name__}")

    params = np.ascontiguousarray(net.get_params())
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fastnn_version": __version__,
        "layers": layer_configs(net),
        "loss": net.loss.name,
        "dtype": net.dtype.name,
        "seed": net.seed,
        "n_params": int(params.size),
        "params_sha256": _sha256(params),
        "optimizer": None,
    }
    arrays = {"params": params}
    if include_optimizer:
        opt = net.optimizer
        if opt is None:
            raise ValueError("include_optimizer=True but the network has no optimizer "
                             "(it is set by fit)")
        if OPTIMIZERS.get(opt.name) is not type(opt):
            raise ValueError(f"cannot save optimizer {type(opt).__name__}: only "
                             f"{', '.join(c.__name__ for c in OPTIMIZERS.values())} can be "
                             "rebuilt on load")
        state = opt.state_dict()
        header["optimizer"] = {"name": opt.name, "config": opt.get_config(),
                               "t": None if state is None else int(state["t"])}
        if state is not None:
            arrays["opt_s1"] = np.ascontiguousarray(state["s1"], dtype=net.dtype)
            arrays["opt_s2"] = np.ascontiguousarray(state["s2"], dtype=net.dtype)
        header["shuffle_rng"] = net._shuffle_rng.bit_generator.state
    text = json.dumps(header, indent=1, allow_nan=False)
    arrays["header"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    _write_atomic(path, arrays)


def layer_configs(net):
    """``net.layers`` as JSON-ready dicts, in order.

    A Dense layer is ``{"n_in": int, "n_out": int, "activation": str}``, a
    Dropout layer ``{"dropout": rate}`` and a Rescaling layer
    ``{"scale": float, "offset": float}``.
    """
    configs = []
    for layer in net.layers:
        if type(layer) not in _LAYER_TYPES:
            raise TypeError(f"cannot save layer {layer!r}: only "
                            f"{', '.join(c.__name__ for c in _LAYER_TYPES)} layers are supported")
        configs.append(_LAYER_TYPES[type(layer)].to_config(layer))
    return configs


def _sha256(params):
    """SHA-256 of the parameters' little-endian bytes (so it is platform independent)."""
    canonical = np.ascontiguousarray(params, dtype=params.dtype.newbyteorder("<"))
    return hashlib.sha256(canonical.tobytes()).hexdigest()


def _write_atomic(path, arrays):
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


# ----------------------------------------------------------------------------
# loading


def load(path, *, backend="numba", threads=None):
    """Read a network written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
    backend, threads
        As for :class:`fastnn.Network` (not stored in the file).

    Returns
    -------
    fastnn.Network
        Predicts bit-identically to the saved network. When the optimizer was
        saved, ``net.optimizer`` is rebuilt with its state, so ``fit`` resumes.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ModelFileError
        The file is not a fastnn model, is truncated or corrupted, holds
        pickled objects, has an unsupported format version, or its contents
        are inconsistent (shapes, dtypes, parameter checksum).
    """
    return _read(path, backend, threads)[1]


def read_header(path):
    """The header of a model file as a dict, after the same checks as :func:`load`.

    Keys: ``format``, ``format_version``, ``fastnn_version``, ``layers`` (as
    :func:`layer_configs` gives them), ``loss``, ``dtype``, ``seed``,
    ``n_params``, ``params_sha256``, ``optimizer`` (None or ``{"name",
    "config", "t"}``) and, when the optimizer was saved, ``shuffle_rng``.
    """
    return _read(path, "numpy", None)[0]


def _read(path, backend, threads):
    """Check the file and rebuild the network; return ``(header, network)``."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"model file not found: {name}")
    if os.path.isdir(name):
        raise IsADirectoryError(f"{name} is a directory, not a model file")
    arrays = _read_arrays(name)
    header = _parse_header(name, arrays)
    _check_keys(name, header, arrays)
    params = _check_array(name, arrays, "params", header)
    if _sha256(params) != header["params_sha256"]:
        raise ModelFileError(f"{name}: parameter checksum mismatch: the parameters are "
                             "corrupted or were edited")
    net = _build(name, header, params, arrays, backend, threads)
    return header, net


def _read_arrays(name):
    """Every member of the archive, read with ``allow_pickle=False``."""
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
            OverflowError, MemoryError) as exc:
        raise ModelFileError(f"{name}: truncated or corrupted file ({exc})") from None
    return arrays


def _parse_header(name, arrays):
    raw = arrays.get("header")
    if raw is None:
        raise ModelFileError(f"{name}: not a fastnn model file (no 'header' array)")
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{name}: 'header' must be a 1-D uint8 array")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{name}: header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name}: header must be a JSON object")
    if header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{name}: not a fastnn model file (format "
                             f"{header.get('format')!r}, expected {FORMAT_NAME!r})")
    version = header.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ModelFileError(f"{name}: format version {version!r} is not supported; this "
                             f"fastnn reads format version {FORMAT_VERSION}")

    def need(key, kind, what):
        value = header.get(key)
        if not _is_a(value, kind):
            raise ModelFileError(f"{name}: header field {key!r} must be {what}, got {value!r}")
        return value

    need("fastnn_version", str, "a string")
    layers = need("layers", list, "a non-empty list")
    if not layers:
        raise ModelFileError(f"{name}: header field 'layers' must be a non-empty list")
    for i, layer in enumerate(layers):
        if not any(_matches(layer, t.fields) for t in _LAYER_TYPES.values()):
            raise ModelFileError(f"{name}: layer {i} must be {{'n_in': int >= 1, 'n_out': "
                                 f"int >= 1, 'activation': str}}, {{'dropout': number}} or "
                                 f"{{'scale': number, 'offset': number}}, "
                                 f"got {layer!r}")
    need("loss", str, "a string")
    if need("dtype", str, "a string") not in _DTYPES:
        raise ModelFileError(f"{name}: header field 'dtype' must be one of {_DTYPES}, "
                             f"got {header['dtype']!r}")
    if need("seed", int, "an integer") < 0:
        raise ModelFileError(f"{name}: header field 'seed' must be >= 0")
    n_params = need("n_params", int, "an integer")
    expected = sum(l["n_in"] * l["n_out"] + l["n_out"] for l in layers if "n_in" in l)
    if n_params != expected:
        raise ModelFileError(f"{name}: header says n_params={n_params} but the layers have "
                             f"{expected} parameters")
    digest = need("params_sha256", str, "a hex string")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ModelFileError(f"{name}: header field 'params_sha256' must be 64 lowercase hex "
                             "digits")
    opt = header.get("optimizer")
    if opt is not None:
        if not (isinstance(opt, dict) and _is_a(opt.get("name"), str)
                and isinstance(opt.get("config"), dict)
                and (opt.get("t") is None or (_is_a(opt["t"], int) and opt["t"] >= 0))):
            raise ModelFileError(f"{name}: header field 'optimizer' must be null or "
                                 f"{{'name': str, 'config': dict, 't': int >= 0 or null}}, "
                                 f"got {opt!r}")
    return header


def _matches(entry, fields):
    """Whether a layer entry has exactly ``fields`` (name -> check) and each passes."""
    return (isinstance(entry, dict) and set(entry) == set(fields)
            and all(check(entry[key]) for key, check in fields.items()))


def _is_a(value, kind):
    """Strict JSON typing: bool is not an int."""
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _check_keys(name, header, arrays):
    opt = header["optimizer"]
    wanted = {"header", "params"}
    if opt is not None and opt["t"] is not None:
        wanted.update(_STATE_KEYS)
    missing = sorted(wanted - set(arrays))
    if missing:
        raise ModelFileError(f"{name}: missing array(s) {', '.join(missing)}")
    extra = sorted(set(arrays) - wanted)
    if extra:
        raise ModelFileError(f"{name}: unexpected array(s) {', '.join(extra)}")


def _check_array(name, arrays, key, header):
    """``arrays[key]`` as a native-order vector of shape (n_params,) in the header's dtype."""
    value = arrays[key]
    dtype = np.dtype(header["dtype"])
    shape = (header["n_params"],)
    if not isinstance(value, np.ndarray):
        raise ModelFileError(f"{name}: '{key}' is not a numpy array")
    if value.dtype.kind != "f" or value.dtype.itemsize != dtype.itemsize:
        raise ModelFileError(f"{name}: '{key}' has dtype {value.dtype}, expected {dtype}")
    if value.shape != shape:
        raise ModelFileError(f"{name}: '{key}' has shape {value.shape}, expected {shape}")
    return np.ascontiguousarray(value, dtype=dtype)


def _build(name, header, params, arrays, backend, threads):
    try:
        layers = [next(t.from_config for t in _LAYER_TYPES.values()
                       if _matches(entry, t.fields))(entry) for entry in header["layers"]]
        net = Network(layers, loss=header["loss"], dtype=header["dtype"], seed=header["seed"],
                      backend=backend, threads=threads)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{name}: invalid network description: {exc}") from None
    net.set_params(params)
    opt = header["optimizer"]
    if opt is not None:
        try:
            optimizer = get_optimizer(opt["name"], **opt["config"])
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{name}: invalid optimizer description: {exc}") from None
        if opt["t"] is not None:
            s1, s2 = (_check_array(name, arrays, key, header) for key in _STATE_KEYS)
            optimizer.load_state_dict({"t": opt["t"], "s1": s1, "s2": s2})
        net.optimizer = optimizer
        if "shuffle_rng" in header:
            try:
                net._shuffle_rng.bit_generator.state = header["shuffle_rng"]
            except (ValueError, TypeError, KeyError) as exc:
                raise ModelFileError(f"{name}: invalid 'shuffle_rng' state ({exc})") from None
    return net
