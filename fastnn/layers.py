"""Layers: plain objects holding learned numpy arrays."""

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
