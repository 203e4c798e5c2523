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
    requires: str        # top-level module that must be importable
    kind: str            # "train" (trains and predicts) or "bound" (GEMM products only)


SYSTEMS = {s.name: s for s in (
    System("fastnn", "fastnn (numba)", "fastnn_peer", "run_numba", "fastnn", "train"),
    System("numpy", "fastnn numpy reference", "fastnn_peer", "run_numpy", "fastnn", "train"),
    System("torch", "PyTorch CPU", "torch_peer", "run", "torch", "train"),
    System("jax", "JAX jit", "jax_peer", "run", "jax", "train"),
    System("sklearn", "scikit-learn MLP", "sklearn_peer", "run", "sklearn", "train"),
    System("gemm", "GEMM bound (fastnn gemm)", "gemm_bound", "run_scipy", "numba", "bound"),
    System("gemm-numpy", "GEMM bound (np.matmul)", "gemm_bound", "run_numpy", "numpy", "bound"),
)}


def available(name):
    """Whether the system's library is installed (checked without importing it)."""
    return importlib.util.find_spec(SYSTEMS[name].requires) is not None


def run_worker(name, config, data, opts):
    """Run one system on one configuration in this process; return its result dict."""
    system = SYSTEMS[name]
    module = importlib.import_module(f"{__name__}.{system.module}")
    return getattr(module, system.function)(config, data, opts)
