"""The systems ``benchmarks/compare.py`` measures, one worker function each.

A system's module is imported only inside its own worker process, so no two
systems' thread pools (OpenBLAS, OpenMP, XLA) ever share a process.
"""

import importlib
import importlib.util
from typing import NamedTuple


class System(NamedTuple):
    """A measured system: its label, where its worker lives, what it needs."""

    name: str
    label: str
    module: str          # in this package
    function: str
    requires: str        # top-level modules that must be importable, comma-separated
    kind: str            # "train" (trains and predicts), "bound" (GEMM products only), "peak"


SYSTEMS = {s.name: s for s in (
    System("fastnn", "fastnn (numba)", "fastnn_peer", "run_numba", "fastnn", "train"),
    System("fastnn-1", "fastnn (numba), threads=1", "fastnn_peer", "run_numba_one_thread",
           "fastnn", "train"),
    System("numpy", "fastnn numpy reference", "fastnn_peer", "run_numpy", "fastnn", "train"),
    System("torch", "PyTorch CPU", "torch_peer", "run", "torch", "train"),
    System("jax", "JAX jit", "jax_peer", "run", "jax", "train"),
    System("keras", "Keras 3 / TensorFlow CPU (XLA)", "keras_peer", "run", "tensorflow,keras",
           "train"),
    System("sklearn", "scikit-learn MLP", "sklearn_peer", "run", "sklearn", "train"),
    System("gemm", "GEMM bound (fastnn gemm)", "gemm_bound", "run_scipy", "numba", "bound"),
    System("gemm-numpy", "GEMM bound (np.matmul)", "gemm_bound", "run_numpy", "numpy", "bound"),
)}

# Not a system a configuration runs on: measured once a round, for the fractions of peak.
PEAK = System("peak", "machine peak (sgemm, fastnn's BLAS, all cores)", "gemm_bound",
              "run_peak", "numba", "peak")


def available(name):
    """Whether the system's library is installed (checked without importing it)."""
    return all(importlib.util.find_spec(module) is not None
               for module in SYSTEMS[name].requires.split(","))


def run_worker(name, config, data, opts):
    """Run one system on one configuration in this process; return its result dict.

    ``name == "peak"`` measures the machine's peak (no configuration, no data).
    """
    system = PEAK if name == "peak" else SYSTEMS[name]
    function = getattr(importlib.import_module(f"{__name__}.{system.module}"), system.function)
    return function(opts) if system.kind == "peak" else function(config, data, opts)
