"""Layers: plain objects holding learned numpy arrays."""

import math
import numbers

from .activations import check_activation_name


class Dense:
    """A fully connected layer ``h = phi(x @ W + b)``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths.
    activation : str, default "identity"
        ``identity``, ``relu``, ``leaky_relu``, ``sigmoid``, ``tanh``; on the
        last layer also the loss's own ``softmax`` / ``sigmoid``.

    Attributes
    ----------
    W : ndarray of shape (n_in, n_out)
    b : ndarray of shape (n_out,)
        Set by the :class:`~fastnn.Network` that holds the layer (He or Glorot
        initialization from its seed); plain arrays you may read or assign.
    """

    def __init__(self, n_in, n_out, activation="identity"):
        for name, value in (("n_in", n_in), ("n_out", n_out)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"Dense {name} must be a positive integer, got {value!r}")
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.activation = check_activation_name(activation)
        self.W = None
        self.b = None

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r})"


class Dropout:
    """Inverted dropout on the output of the preceding Dense layer.

    During ``fit`` each unit is zeroed with probability ``rate`` and the kept
    ones are scaled by ``1 / (1 - rate)``; ``predict``/``evaluate`` use no
    dropout. Masks are drawn from the network's seed and the optimizer step,
    so training stays reproducible.

    Parameters
    ----------
    rate : float in [0, 1)
    """

    def __init__(self, rate):
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"Dropout rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def __repr__(self):
        return f"Dropout({self.rate!r})"


class Rescaling:
    """A fixed input transform ``x * scale + offset`` (Keras's ``Rescaling``).

    Only allowed as the first layer of a :class:`~fastnn.Network`. It has no
    learned parameters and is saved with the model, so a network trained on
    raw pixels with ``Rescaling(1 / 255)`` predicts from raw pixels too.

    The value is computed in the network's dtype without a fused
    multiply-add: ``x`` is converted to the dtype (exact for 8- and 16-bit
    integers), multiplied by ``scale`` rounded to the dtype, and ``offset``
    rounded to the dtype is added. So ``Rescaling(s, o)`` on uint8 ``X`` gives
    bit-identically what ``X.astype(dtype) * dtype(s) + dtype(o)`` gives in numpy.

    Parameters
    ----------
    scale : float
    offset : float, default 0.0
    """

    def __init__(self, scale, offset=0.0):
        for name, value in (("scale", scale), ("offset", offset)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not math.isfinite(value):
                raise ValueError(f"Rescaling {name} must be a finite number, got {value!r}")
        self.scale = float(scale)
        self.offset = float(offset)

    def __repr__(self):
        return f"Rescaling({self.scale!r}, offset={self.offset!r})"
