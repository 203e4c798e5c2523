"""The loss registry: a name maps to its fused output activation and kernel."""

from typing import NamedTuple, Optional

from .kernels import losses as _k


class Loss(NamedTuple):
    """A loss and the output activation it owns.

    ``output_activation`` is fused into the loss kernel (softmax for
    cross-entropy, sigmoid for binary cross-entropy, exp for Poisson: the
    last layer emits logits or log-means); ``None`` means the last layer's own
    activation is applied before the loss (mse).
    """

    name: str
    output_activation: Optional[str]
    classification: bool
    kernel_code: int


LOSSES = {
    "cross_entropy": Loss("cross_entropy", "softmax", True, _k.CE_LABELS),
    "binary_cross_entropy": Loss("binary_cross_entropy", "sigmoid", True, _k.BCE),
    "mse": Loss("mse", None, False, _k.MSE),
    "poisson": Loss("poisson", "exp", False, _k.POISSON),
}


def get_loss(name):
    """Return the :class:`Loss` called ``name``; unknown names raise ``ValueError``."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}") from None
