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

import os

import numpy as np

from .fileformat import (LAYER_CONFIG_FORMS, ModelFileError, decode_header, encode_header,
                         is_a, layer_configs, layer_from_config, params_sha256, read_arrays,
                         valid_layer_config, write_atomic)
from .network import Network
from .optimizers import OPTIMIZERS, get_optimizer

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ModelFileError", "layer_configs", "load",
           "read_header", "save"]

FORMAT_NAME = "fastnn"
FORMAT_VERSION = 1

_STATE_KEYS = ("opt_s1", "opt_s2")
_DTYPES = ("float32", "float64")


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

    Notes
    -----
    After ``fit(..., distributed=...)``, only rank 0 writes; on the other
    ranks ``save`` does nothing.
    """
    from . import __version__  # not at the top: fastnn/__init__ imports this module first

    if not isinstance(net, Network):
        raise TypeError(f"save expects a fastnn.Network, got {type(net).__name__}")
    if not getattr(net, "_writer", True):
        return                    # a rank other than 0 of a distributed run: rank 0 writes

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
        "params_sha256": params_sha256(params),
        "optimizer": None,
        "input_range": None if net.input_range is None else [float(v) for v in net.input_range],
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
    arrays["header"] = encode_header(header, indent=1, allow_nan=False)
    write_atomic(path, arrays)


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
    arrays = read_arrays(name)
    header = _parse_header(name, arrays)
    _check_keys(name, header, arrays)
    params = _check_array(name, arrays, "params", header)
    if params_sha256(params) != header["params_sha256"]:
        raise ModelFileError(f"{name}: parameter checksum mismatch: the parameters are "
                             "corrupted or were edited")
    net = _build(name, header, params, arrays, backend, threads)
    return header, net


def _parse_header(name, arrays):
    header = decode_header(name, arrays)
    if header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{name}: not a fastnn model file (format "
                             f"{header.get('format')!r}, expected {FORMAT_NAME!r})")
    version = header.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ModelFileError(f"{name}: format version {version!r} is not supported; this "
                             f"fastnn reads format version {FORMAT_VERSION}")

    def need(key, kind, what):
        value = header.get(key)
        if not is_a(value, kind):
            raise ModelFileError(f"{name}: header field {key!r} must be {what}, got {value!r}")
        return value

    need("fastnn_version", str, "a string")
    layers = need("layers", list, "a non-empty list")
    if not layers:
        raise ModelFileError(f"{name}: header field 'layers' must be a non-empty list")
    for i, layer in enumerate(layers):
        if not valid_layer_config(layer):
            raise ModelFileError(f"{name}: layer {i} must be {LAYER_CONFIG_FORMS}, "
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
        if not (isinstance(opt, dict) and is_a(opt.get("name"), str)
                and isinstance(opt.get("config"), dict)
                and (opt.get("t") is None or (is_a(opt["t"], int) and opt["t"] >= 0))):
            raise ModelFileError(f"{name}: header field 'optimizer' must be null or "
                                 f"{{'name': str, 'config': dict, 't': int >= 0 or null}}, "
                                 f"got {opt!r}")
    value_range = header.get("input_range")
    if value_range is not None and not (
            isinstance(value_range, list) and len(value_range) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
            and value_range[0] <= value_range[1]):
        raise ModelFileError(f"{name}: header field 'input_range' must be null or "
                             f"[min, max], got {value_range!r}")
    return header


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
        layers = [layer_from_config(entry) for entry in header["layers"]]
        net = Network(layers, loss=header["loss"], dtype=header["dtype"], seed=header["seed"],
                      backend=backend, threads=threads)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{name}: invalid network description: {exc}") from None
    net.set_params(params)
    if header.get("input_range") is not None:
        net.input_range = tuple(float(v) for v in header["input_range"])
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
