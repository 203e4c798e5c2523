"""Training checkpoints: everything ``fit`` needs to continue bit-identically.

A checkpoint is one ``.npz`` (written atomically, read with
``allow_pickle=False``, like a model file) holding the parameters, the
optimizer state, the shuffling RNG state, the callbacks' states, the history
and the number of finished epochs. ``Network.fit(checkpoint=...)`` writes it;
``Network.fit(resume=...)`` continues from it.
"""

import os

import numpy as np

from .fileformat import (ModelFileError, decode_header, encode_header, layer_configs,
                         params_sha256, read_arrays, write_atomic)

FORMAT_NAME = "fastnn-checkpoint"
FORMAT_VERSION = 1


def _architecture(net):
    return {"layers": layer_configs(net), "loss": net.loss.name, "dtype": net.dtype.name,
            "seed": net.seed}


def save_checkpoint(path, net, optimizer, callbacks, history, *, epoch, batch_size, n_samples,
                    shuffle=True):
    """Write the training state after ``epoch`` finished epochs to ``path`` atomically."""
    params = net.get_params()
    state = optimizer.state_dict()
    arrays = {"params": params, "opt_s1": state["s1"], "opt_s2": state["s2"]}
    callback_states = []
    for i, callback in enumerate(callbacks):
        if not hasattr(callback, "state_dict"):
            callback_states.append(None)
            continue
        plain = {}
        for key, value in callback.state_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"callback{i}.{key}"] = value
                plain[key] = {"__array__": f"callback{i}.{key}"}
            else:
                plain[key] = value
        callback_states.append({"class": type(callback).__name__, "state": plain})
    header = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "architecture": _architecture(net),
        "epoch": int(epoch), "batch_size": int(batch_size), "n_samples": int(n_samples),
        "shuffle": shuffle if shuffle == "block" else bool(shuffle),
        "optimizer": {"name": optimizer.name, "config": optimizer.get_config(),
                      "t": int(state["t"])},
        "shuffle_rng": net._shuffle_rng.bit_generator.state,
        "history": {"epoch": list(history.epoch), "history": history.history},
        "callbacks": callback_states,
        "params_sha256": params_sha256(params),
    }
    arrays["header"] = encode_header(header)
    write_atomic(path, arrays)


def read_checkpoint(path):
    """Read and check a checkpoint; return ``(header, arrays)``."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"checkpoint not found: {name}")
    arrays = read_arrays(name)
    header = decode_header(name, arrays)
    try:
        if header["format"] != FORMAT_NAME:
            raise ModelFileError(f"{name}: not a fastnn checkpoint (format {header['format']!r})")
        if header["format_version"] != FORMAT_VERSION:
            raise ModelFileError(f"{name}: checkpoint format version {header['format_version']!r}"
                                 f" is not supported; this fastnn reads version {FORMAT_VERSION}")
        params = arrays["params"]
        if params_sha256(params) != header["params_sha256"]:
            raise ModelFileError(f"{name}: parameter checksum mismatch (corrupted checkpoint)")
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{name}: not a valid fastnn checkpoint ({exc!r})") from None
    return header, arrays


def restore_checkpoint(path, net, optimizer, callbacks, history, *, batch_size, n_samples,
                       shuffle=True):
    """Load a checkpoint into a network about to train; return the finished epochs."""
    name = os.fspath(path)
    header, arrays = read_checkpoint(name)
    if header["architecture"] != _architecture(net):
        raise ValueError(f"{name}: the checkpoint was written by a different network "
                         f"({header['architecture']} vs {_architecture(net)})")
    shuffle = shuffle if shuffle == "block" else bool(shuffle)
    for key, value in (("batch_size", batch_size), ("n_samples", n_samples),
                       ("shuffle", shuffle)):
        if header.get(key, value) != value:
            raise ValueError(f"{name}: the checkpoint was trained with {key}={header[key]}, "
                             f"this call has {value}; resume with the same data and settings")
    saved = header["optimizer"]
    if saved["name"] != optimizer.name:
        raise ValueError(f"{name}: the checkpoint used optimizer {saved['name']!r}, this call "
                         f"has {optimizer.name!r}")
    params = arrays["params"]
    if params.shape != (net.n_params,) or params.dtype != net.dtype:
        raise ModelFileError(f"{name}: parameters have shape {params.shape} and dtype "
                             f"{params.dtype}, expected ({net.n_params},) {net.dtype}")
    net.set_params(params)
    for key, value in saved["config"].items():
        setattr(optimizer, key, tuple(value) if isinstance(value, list) else value)
    optimizer.load_state_dict({"t": saved["t"], "s1": arrays["opt_s1"], "s2": arrays["opt_s2"]})
    net._shuffle_rng.bit_generator.state = header["shuffle_rng"]
    history.epoch = list(header["history"]["epoch"])
    history.history = {k: list(v) for k, v in header["history"]["history"].items()}
    for callback, saved_state in zip(callbacks, header["callbacks"]):
        if saved_state is None or not hasattr(callback, "load_state_dict"):
            continue
        state = {key: arrays[value["__array__"]] if isinstance(value, dict) and "__array__" in value
                 else value for key, value in saved_state["state"].items()}
        callback.load_state_dict(state)
    return int(header["epoch"])
