"""The activation registry: a name maps to its kernel code and reference math."""

from typing import Callable, NamedTuple

from . import reference
from .kernels import activations as _k


class Activation(NamedTuple):
    """An element-wise activation.

    ``code`` selects it inside the kernels; ``forward`` and ``derivative`` are
    the numpy reference (``derivative`` takes the forward output ``h``).
    """

    name: str
    code: int
    forward: Callable
    derivative: Callable


ACTIVATIONS = {
    name: Activation(name, code, reference.FORWARD[name], reference.DERIVATIVE[name])
    for name, code in [("identity", _k.IDENTITY), ("relu", _k.RELU),
                       ("leaky_relu", _k.LEAKY_RELU), ("sigmoid", _k.SIGMOID),
                       ("tanh", _k.TANH)]
}

# Output-only names: they mean the loss's own fused activation.
OUTPUT_ONLY = ("softmax",)


def check_activation_name(name):
    """Return ``name`` if it is a known activation, else raise ``ValueError``."""
    if name in ACTIVATIONS or name in OUTPUT_ONLY:
        return name
    valid = ", ".join(sorted([*ACTIVATIONS, *OUTPUT_ONLY]))
    raise ValueError(f"unknown activation {name!r}; valid names: {valid}")
