"""Optimizers: hyperparameters plus state arrays, updated by fused kernels.

The update formulas are PyTorch's (``torch.optim`` documentation). State is
two plain flat arrays laid out like the network's parameter vector
(``state["s1"]``, ``state["s2"]``) and the step count ``state["t"]``; :meth:`Optimizer.state_dict` and
:meth:`Optimizer.load_state_dict` save and restore it.

Every optimizer clips the loss gradient on request, before weight decay and
the update, as ``torch.nn.utils`` does before ``optimizer.step()``:
``clip_norm=c`` scales the whole gradient (every parameter of the network,
one global L2 norm) by ``c / (norm + 1e-6)`` when that is below 1
(``clip_grad_norm_``); ``clip_value=v`` clamps each entry to ``[-v, v]``
(``clip_grad_value_``). Under distributed training the summed gradient of
the step is clipped. One of the two at a time (as Keras allows).
"""

import numpy as np

from . import _checks
from .kernels import optimizers as _k


class Optimizer:
    """Base class: subclasses set ``name``, ``code`` and their hyperparameters."""

    name = ""
    code = -1

    def __init__(self, lr, clip_norm=None, clip_value=None):
        self.lr = _checks.real("lr", lr)  # >= 0: schedules may anneal to 0
        self.clip_norm = _checks.optional_positive("clip_norm", clip_norm)
        self.clip_value = _checks.optional_positive("clip_value", clip_value)
        if self.clip_norm is not None and self.clip_value is not None:
            raise ValueError("give clip_norm or clip_value, not both (clipping by value and "
                             "then by norm, or the reverse, are different rules)")
        self.state = None

    def _clipping(self):
        """The clipping hyperparameters (None for off), for ``hyperparameters``/``get_config``."""
        return dict(clip_norm=self.clip_norm, clip_value=self.clip_value)

    def hyperparameters(self):
        """Plain-float hyperparameters in the reference's naming."""
        raise NotImplementedError

    def hyper_array(self):
        """The hyperparameters as the kernels' float64 array."""
        hp = self.hyperparameters()
        a = np.zeros(_k.N_HYPER)
        a[_k.LR] = hp["lr"]
        a[_k.MOMENTUM] = hp.get("momentum", 0.0)
        a[_k.DAMPENING] = hp.get("dampening", 0.0)
        a[_k.WEIGHT_DECAY] = hp.get("weight_decay", 0.0)
        a[_k.NESTEROV] = float(hp.get("nesterov", False))
        a[_k.BETA1] = hp.get("beta1", 0.0)
        a[_k.BETA2] = hp.get("beta2", 0.0)
        a[_k.EPS] = hp.get("eps", 0.0)
        a[_k.ALPHA] = hp.get("alpha", 0.0)
        a[_k.CLIP_NORM] = hp.get("clip_norm") or 0.0       # 0: off (both must be > 0)
        a[_k.CLIP_VALUE] = hp.get("clip_value") or 0.0
        return a

    def init_state(self, n_params, dtype):
        """Zero state for ``n_params`` parameters unless the current state fits."""
        s = self.state
        if s is not None and s["s1"].shape == (n_params,) and s["s1"].dtype == dtype:
            return
        self.state = {"t": 0, "s1": np.zeros(n_params, dtype), "s2": np.zeros(n_params, dtype)}

    def state_dict(self):
        """A copy of the state: ``{"t": int, "s1": array, "s2": array}``.

        ``s1``/``s2`` are flat, laid out like ``Network.get_params()``.
        """
        if self.state is None:
            return None
        return {"t": self.state["t"], "s1": self.state["s1"].copy(),
                "s2": self.state["s2"].copy()}

    def load_state_dict(self, state):
        """Restore a state returned by :meth:`state_dict`."""
        self.state = None if state is None else {
            "t": int(state["t"]), "s1": np.array(state["s1"]), "s2": np.array(state["s2"])}

    def get_config(self):
        """Constructor arguments, for saving."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    PyTorch's formulas: ``g <- g + weight_decay w``; with momentum
    ``b <- momentum b + (1 - dampening) g`` (``b = g`` on the first step) and
    ``g <- g + momentum b`` (Nesterov) or ``g <- b``; ``w <- w - lr g``.
    Plain SGD (no momentum, no clipping, one process) is fused into the
    weight-gradient product. ``clip_norm``/``clip_value``: see the module.
    """

    name = "sgd"
    code = _k.SGD

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0,
                 clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm, clip_value)
        self.momentum = _checks.fraction("momentum", momentum)
        self.nesterov = _checks.flag("nesterov", nesterov)
        self.weight_decay = _checks.real("weight_decay", weight_decay)
        self.dampening = _checks.fraction("dampening", dampening)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")

    def hyperparameters(self):
        return dict(lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                    nesterov=self.nesterov, weight_decay=self.weight_decay, **self._clipping())

    def get_config(self):
        return dict(lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay, dampening=self.dampening,
                    **self._clipping())


class Adam(Optimizer):
    """Adam with L2 regularization added to the gradient (PyTorch's ``Adam``).

    ``clip_norm``/``clip_value``: see the module.
    """

    name = "adam"
    code = _k.ADAM

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm, clip_value)
        try:
            pair = None if isinstance(betas, (str, bytes)) else tuple(betas)
        except TypeError:
            pair = None
        if pair is None or len(pair) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(_checks.fraction(f"betas[{i}]", beta) for i, beta in enumerate(pair))
        self.eps = _checks.real("eps", eps, positive=True)
        self.weight_decay = _checks.real("weight_decay", weight_decay)

    def hyperparameters(self):
        return dict(lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                    weight_decay=self.weight_decay, **self._clipping())

    def get_config(self):
        return dict(lr=self.lr, betas=list(self.betas), eps=self.eps,
                    weight_decay=self.weight_decay, **self._clipping())


class AdamW(Adam):
    """Adam with decoupled weight decay ``w <- w (1 - lr weight_decay)`` (``AdamW``)."""

    name = "adamw"
    code = _k.ADAMW

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 clip_norm=None, clip_value=None):
        super().__init__(lr, betas, eps, weight_decay, clip_norm, clip_value)


class RMSprop(Optimizer):
    """RMSprop, not centered (PyTorch's ``RMSprop``). ``clip_norm``/``clip_value``: see the module."""

    name = "rmsprop"
    code = _k.RMSPROP

    def __init__(self, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm, clip_value)
        self.alpha = _checks.fraction("alpha", alpha)
        self.eps = _checks.real("eps", eps, positive=True)
        self.weight_decay = _checks.real("weight_decay", weight_decay)
        self.momentum = _checks.fraction("momentum", momentum)

    def hyperparameters(self):
        return dict(lr=self.lr, alpha=self.alpha, eps=self.eps,
                    weight_decay=self.weight_decay, momentum=self.momentum, **self._clipping())

    def get_config(self):
        return dict(lr=self.lr, alpha=self.alpha, eps=self.eps,
                    weight_decay=self.weight_decay, momentum=self.momentum, **self._clipping())


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop)}


def get_optimizer(name, **kwargs):
    """Build an optimizer by name (``sgd``, ``adam``, ``adamw``, ``rmsprop``)."""
    try:
        cls = OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}") from None
    return cls(**kwargs)
