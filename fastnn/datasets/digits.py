"""The bundled UCI optical-recognition digits (1,797 images of 8x8 pixels)."""

import gzip
import importlib.resources

import numpy as np

from ._base import _finish

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
    raw = importlib.resources.files("fastnn.datasets").joinpath("data/digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode("ascii").splitlines(), delimiter=",", dtype=np.int64)
    return _finish(
        table[:, :-1], table[:, -1],
        max_value=16, scale=scale, one_hot=one_hot, dtype=dtype, n_classes=10,
    )
