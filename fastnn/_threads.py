"""BLAS thread control.

Every matrix product of the training step runs in SciPy's OpenBLAS (numba's
BLAS); numpy has its own. ``blas_threads(n)`` caps both pools for the
duration of a call, so the two never oversubscribe the cores between them.
"""

from contextlib import contextmanager

_controller = None


def _get_controller():
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  load numba's BLAS before scanning
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def check_threads(threads):
    """Validate a ``threads`` setting: ``None`` (library default) or an int >= 1."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
    return threads


@contextmanager
def blas_threads(threads):
    """Limit every loaded BLAS to ``threads`` threads inside the block."""
    if threads is None:
        yield
        return
    with _get_controller().limit(limits=threads, user_api="blas"):
        yield
