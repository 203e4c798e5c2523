"""Callbacks for :meth:`fastnn.Network.fit`: learning-rate schedules and early stopping.

``fit`` calls, on every callback, ``on_train_begin(network)`` before the first
epoch, ``on_epoch_end(network, logs)`` after every epoch and
``on_train_end(network)`` after the last one. ``logs`` maps names to this
epoch's values (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``,
...); ``logs["lr"]`` is the learning rate used *during* the epoch, recorded
before the callbacks run, so a schedule's change shows from the next epoch on.

The schedules follow PyTorch's ``torch.optim.lr_scheduler`` (closed forms for
:class:`StepLR`, :class:`ExponentialLR` and :class:`CosineAnnealingLR`; the
plateau rule of :class:`ReduceLROnPlateau`); :class:`EarlyStopping` follows
Keras. Every one of them steps once per epoch and sets
``network.optimizer.lr``.

>>> import fastnn
>>> from fastnn.callbacks import EarlyStopping, StepLR
>>> callbacks = [StepLR(step_size=10, gamma=0.5), EarlyStopping(patience=3)]
"""

import math

from ._checks import flag, integer, real

MODES = ("min", "max", "auto")
THRESHOLD_MODES = ("rel", "abs")


class Callback:
    """Base class: every hook is a no-op; subclasses override the ones they need."""

    def on_train_begin(self, network):
        """Called by ``fit`` before the first epoch."""

    def on_epoch_end(self, network, logs):
        """Called by ``fit`` after every epoch with that epoch's ``logs`` (a dict)."""

    def on_train_end(self, network):
        """Called by ``fit`` after the last epoch (also after an early stop)."""


class LambdaCallback(Callback):
    """A callback made of plain functions, for one-off hooks.

    Parameters
    ----------
    on_epoch_end : callable(network, logs), optional
    on_train_begin : callable(network), optional
    on_train_end : callable(network), optional

    Examples
    --------
    >>> snapshots = []
    >>> record = LambdaCallback(on_epoch_end=lambda net, logs: snapshots.append(net.get_params()))
    """

    def __init__(self, on_epoch_end=None, on_train_begin=None, on_train_end=None):
        for name, fn in (("on_epoch_end", on_epoch_end), ("on_train_begin", on_train_begin),
                         ("on_train_end", on_train_end)):
            if fn is not None and not callable(fn):
                raise ValueError(f"{name} must be callable or None, got {fn!r}")
        self._epoch_end = on_epoch_end
        self._train_begin = on_train_begin
        self._train_end = on_train_end

    def on_train_begin(self, network):
        if self._train_begin is not None:
            self._train_begin(network)

    def on_epoch_end(self, network, logs):
        if self._epoch_end is not None:
            self._epoch_end(network, logs)

    def on_train_end(self, network):
        if self._train_end is not None:
            self._train_end(network)


# ---- learning-rate schedules ------------------------------------------------

class LRSchedule(Callback):
    """Base of the epoch-indexed schedules ``lr_e = lr_at(e)``.

    The base learning rate is the optimizer's ``lr`` at the first
    ``on_train_begin`` (or the first ``on_epoch_end``, when driven by hand).
    ``last_epoch`` counts the epochs stepped so far and carries over to later
    calls of ``fit``, which continue the schedule; at every train begin the
    optimizer's ``lr`` is set to ``lr_at(last_epoch)``, so a schedule restored
    with :meth:`load_state_dict` resumes where it was saved.

    Subclasses implement :meth:`lr_at`.

    Attributes
    ----------
    base_lr : float or None
    last_epoch : int
    """

    def __init__(self):
        self.base_lr = None
        self.last_epoch = 0

    def lr_at(self, epoch):
        """The learning rate for epoch ``epoch`` (0-based) from ``base_lr``."""
        raise NotImplementedError

    def _capture(self, network):
        optimizer = _optimizer_of(network, type(self).__name__)
        if self.base_lr is None:
            self.base_lr = float(optimizer.lr)
        return optimizer

    def on_train_begin(self, network):
        optimizer = self._capture(network)
        optimizer.lr = self.lr_at(self.last_epoch)

    def on_epoch_end(self, network, logs):
        optimizer = self._capture(network)
        self.last_epoch += 1
        optimizer.lr = self.lr_at(self.last_epoch)

    def state_dict(self):
        """The schedule's progress: ``{"base_lr": float or None, "last_epoch": int}``."""
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        """Restore a state returned by :meth:`state_dict`."""
        self.base_lr = None if state["base_lr"] is None else float(state["base_lr"])
        self.last_epoch = int(state["last_epoch"])


class StepLR(LRSchedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr_e = base_lr * gamma ** (e // step_size)``.

    Parameters
    ----------
    step_size : int >= 1
    gamma : float > 0, default 0.1
    """

    def __init__(self, step_size, gamma=0.1):
        super().__init__()
        self.step_size = integer("step_size", step_size, 1)
        self.gamma = real("gamma", gamma, positive=True)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRSchedule):
    """Multiply the learning rate by ``gamma`` every epoch: ``lr_e = base_lr * gamma ** e``.

    Parameters
    ----------
    gamma : float > 0
    """

    def __init__(self, gamma):
        super().__init__()
        self.gamma = real("gamma", gamma, positive=True)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** epoch


class CosineAnnealingLR(LRSchedule):
    """Cosine annealing from ``base_lr`` down to ``eta_min`` over ``T_max`` epochs.

    ``lr_e = eta_min + (base_lr - eta_min) (1 + cos(pi e / T_max)) / 2``; past
    ``T_max`` the cosine goes on (back up), as PyTorch's closed form does.

    Parameters
    ----------
    T_max : int >= 1
        Epochs of a half period.
    eta_min : float >= 0, default 0
    """

    def __init__(self, T_max, eta_min=0.0):
        super().__init__()
        self.T_max = integer("T_max", T_max, 1)
        self.eta_min = real("eta_min", eta_min)

    def lr_at(self, epoch):
        cos = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cos


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when a metric stops improving.

    PyTorch's rule: a value improves on the best so far when (mode ``min``,
    ``threshold_mode="rel"``) ``value < best * (1 - min_delta)``, or with
    ``threshold_mode="abs"`` ``value < best - min_delta`` (mirrored for
    ``max``). After every epoch without improvement ``num_bad_epochs`` grows;
    when it exceeds ``patience`` the rate becomes
    ``max(lr * factor, min_lr)`` (skipped if that changes it by less than
    ``eps``), ``num_bad_epochs`` restarts at 0 and for ``cooldown`` epochs bad
    epochs are not counted. With ``patience=2`` the first reduction comes after
    the third epoch in a row without improvement.

    Parameters
    ----------
    monitor : str, default "val_loss"
        Key of ``logs`` to watch.
    factor : float in (0, 1), default 0.1
    patience : int >= 0, default 10
    min_delta : float >= 0, default 1e-4
        PyTorch's ``threshold``.
    threshold_mode : {"rel", "abs"}, default "rel"
    cooldown : int >= 0, default 0
    min_lr : float >= 0, default 0
    mode : {"min", "max", "auto"}, default "auto"
        ``auto`` maximizes a metric whose name contains ``acc`` and minimizes
        anything else.
    eps : float >= 0, default 1e-8

    Attributes
    ----------
    best : float
    num_bad_epochs, cooldown_counter, last_epoch : int
    reductions : list of int
        The epochs (counted from 0, across ``fit`` calls) after which the rate
        was reduced.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, mode="auto", eps=1e-8):
        self.monitor = _check_monitor(monitor)
        self.factor = real("factor", factor, positive=True)
        if self.factor >= 1:
            raise ValueError(f"factor must be < 1 to reduce the learning rate, got {factor!r}")
        self.patience = integer("patience", patience, 0)
        self.min_delta = real("min_delta", min_delta)
        if threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES}, "
                             f"got {threshold_mode!r}")
        self.threshold_mode = threshold_mode
        self.cooldown = integer("cooldown", cooldown, 0)
        self.min_lr = real("min_lr", min_lr)
        self.mode = _resolve_mode(mode, self.monitor)
        self.eps = real("eps", eps)
        self.best = _worst(self.mode)
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self.reductions = []

    def is_better(self, value, best):
        """Whether ``value`` improves on ``best`` by more than the threshold."""
        if self.threshold_mode == "rel":
            if self.mode == "min":
                return value < best * (1 - self.min_delta)
            return value > best * (1 + self.min_delta)
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def on_epoch_end(self, network, logs):
        optimizer = _optimizer_of(network, "ReduceLROnPlateau")
        value = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        epoch = self.last_epoch
        self.last_epoch += 1
        if self.is_better(value, self.best):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(optimizer.lr * self.factor, self.min_lr)
            if optimizer.lr - new_lr > self.eps:
                optimizer.lr = new_lr
                self.reductions.append(epoch)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def state_dict(self):
        """The plateau tracker's state (best value, counters, reduction epochs)."""
        return {"best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter, "last_epoch": self.last_epoch,
                "reductions": list(self.reductions)}

    def load_state_dict(self, state):
        """Restore a state returned by :meth:`state_dict`."""
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.last_epoch = int(state["last_epoch"])
        self.reductions = [int(e) for e in state["reductions"]]


# ---- early stopping ---------------------------------------------------------

class EarlyStopping(Callback):
    """Stop training when a metric has not improved for ``patience`` epochs.

    An epoch improves when (mode ``min``) ``value < best - min_delta`` (mode
    ``max``: ``value > best + min_delta``). After ``patience`` epochs in a row
    without improvement it sets ``network.stop_training = True``: with
    ``patience=2`` and a best value at epoch 3, training stops after epoch 5.
    Every ``fit`` starts afresh (the state is reset in ``on_train_begin``).

    Parameters
    ----------
    monitor : str, default "val_loss"
        Key of ``logs`` to watch.
    patience : int >= 0, default 5
    min_delta : float >= 0, default 0
    mode : {"min", "max", "auto"}, default "auto"
        ``auto`` maximizes a metric whose name contains ``acc`` and minimizes
        anything else.
    restore_best_weights : bool, default True
        Keep a copy of the parameters of the best epoch and load them back
        into the network in ``on_train_end``, whether or not training stopped
        early.

    Attributes
    ----------
    best : float
        Best monitored value of the current ``fit``.
    best_epoch : int or None
        Its epoch, counted from 0 in the current ``fit``.
    stopped_epoch : int or None
        The epoch after which training was stopped, or None.
    best_weights : ndarray of shape (n_params,) or None
        Copy of ``network.get_params()`` at ``best_epoch`` (with
        ``restore_best_weights``).
    wait : int
        Epochs since the last improvement.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto",
                 restore_best_weights=True):
        self.monitor = _check_monitor(monitor)
        self.patience = integer("patience", patience, 0)
        self.min_delta = real("min_delta", min_delta)
        self.mode = _resolve_mode(mode, self.monitor)
        self.restore_best_weights = flag("restore_best_weights", restore_best_weights)
        self._reset()

    def _reset(self):
        self.best = _worst(self.mode)
        self.best_epoch = None
        self.stopped_epoch = None
        self.best_weights = None
        self.wait = 0
        self._epoch = 0

    def is_better(self, value, best):
        """Whether ``value`` improves on ``best`` by more than ``min_delta``."""
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def on_train_begin(self, network):
        self._reset()

    def on_epoch_end(self, network, logs):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        epoch = self._epoch
        self._epoch += 1
        if self.is_better(value, self.best):
            self.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = network.get_params()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            network.stop_training = True

    def on_train_end(self, network):
        """Load the best epoch's parameters back (idempotent: safe to call twice)."""
        if self.restore_best_weights and self.best_weights is not None:
            network.set_params(self.best_weights)


# ---- helpers ----------------------------------------------------------------

def _optimizer_of(network, who):
    optimizer = getattr(network, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "lr"):
        raise ValueError(f"{who} needs a network with an optimizer; use it as a callback "
                         f"of Network.fit")
    return optimizer


def _monitored(logs, key, who):
    """``logs[key]`` as a float, or a ValueError naming the keys there are."""
    if key not in logs:
        available = ", ".join(sorted(k for k in logs if k != "epoch")) or "none"
        hint = " (pass validation_data to fit for val_* keys)" if key.startswith("val_") else ""
        raise ValueError(f"{who} monitors {key!r}, which is not in the epoch logs; "
                         f"available keys: {available}{hint}")
    return float(logs[key])


def _check_monitor(monitor):
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"monitor must be a non-empty string (a logs key), got {monitor!r}")
    return monitor


def _resolve_mode(mode, monitor):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _worst(mode):
    return math.inf if mode == "min" else -math.inf
