"""The Network: a thin Python layer that checks inputs and calls kernels."""

import copy
import math
import time
import warnings
from typing import NamedTuple

import numpy as np

from ._threads import blas_threads, check_threads
from . import reference
from .activations import ACTIVATIONS
from .backends import get_backend
from .kernels import losses as _kl
from .kernels import training as _kt
from .layers import Dense, Dropout, Rescaling
from .losses import get_loss
from .optimizers import SGD, Optimizer
from .progress import Progress

DTYPES = {"float32": np.float32, "float64": np.float64}
HE_INIT = ("relu", "leaky_relu")


class NetSpec(NamedTuple):
    """What the kernels need to know about the architecture."""

    sizes: np.ndarray                # int64 widths m_0 .. m_L
    codes: np.ndarray                # int64 activation code per layer, as applied
    rates: np.ndarray                # float64 dropout rate after each layer; empty if none
    seed: int
    kernel_activations: tuple        # the same as names (fused output -> identity)
    loss: object                     # fastnn.losses.Loss
    dtype: np.dtype


class History:
    """Per-epoch training records: ``history`` maps a name to a list, one value per epoch."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            if key != "epoch":
                self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class Network:
    """A multilayer perceptron trained by mini-batch gradient descent.

    Parameters
    ----------
    layers : list of Dense, Dropout and Rescaling
        Consecutive Dense layers (each ``n_in`` equal to the previous
        ``n_out``), optionally with a Dropout after any hidden Dense layer
        and a Rescaling (``x * scale + offset``) first.
    loss : {"cross_entropy", "binary_cross_entropy", "mse", "poisson"}
        The loss owns the output activation: cross-entropy fuses softmax and
        binary cross-entropy fuses sigmoid, so their last layer must be
        ``identity`` (logits) or name that same activation; ``poisson`` (half
        Poisson deviance, log link) fuses exp, its last layer is ``identity``
        and emits log-means. With ``mse`` the last layer's own activation is
        applied.
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initialization (He for relu/leaky_relu, Glorot otherwise,
        zero biases) and the per-epoch shuffles.
    backend : {"numba", "numpy"}
        The numba kernels, or the pure-numpy reference of the same math.
    threads : int or None
        BLAS threads during fit/predict; None keeps the BLAS default.

    Attributes
    ----------
    layers : list of Dense and Dropout
        The Dense layers' ``W`` and ``b`` are views into one flat parameter vector.
    """

    def __init__(self, layers, loss="cross_entropy", dtype="float32", seed=0,
                 backend="numba", threads=None):
        all_layers = list(layers) if not isinstance(layers, Dense) else [layers]
        rates = []
        self.rescaling = None
        for i, layer in enumerate(all_layers):
            if isinstance(layer, Rescaling):
                if i != 0:
                    raise ValueError(f"Rescaling (layer {i}) must be the first layer")
                self.rescaling = layer
            elif isinstance(layer, Dropout):
                if i == 0 or not isinstance(all_layers[i - 1], Dense):
                    raise ValueError(f"Dropout (layer {i}) must follow a Dense layer")
                if i == len(all_layers) - 1:
                    raise ValueError("Dropout cannot be the last layer: the output layer "
                                     "must be Dense")
                rates[-1] = layer.rate
            elif isinstance(layer, Dense):
                rates.append(0.0)
            else:
                raise TypeError(f"layer {i} is {type(layer).__name__}, expected Dense, Dropout "
                                f"or Rescaling")
        layers = [layer for layer in all_layers if isinstance(layer, Dense)]
        if not layers:
            raise ValueError("a Network needs at least one Dense layer")
        for i in range(1, len(layers)):
            if layers[i].n_in != layers[i - 1].n_out:
                raise ValueError(f"layer {i} has n_in={layers[i].n_in} but layer {i - 1} "
                                 f"has n_out={layers[i - 1].n_out}")
        for i, layer in enumerate(layers[:-1]):
            if layer.activation not in ACTIVATIONS:
                raise ValueError(f"activation {layer.activation!r} of layer {i} is only "
                                 f"allowed on the output layer")
        self.loss = get_loss(loss)
        out_act = layers[-1].activation
        if self.loss.output_activation is not None:
            if out_act not in ("identity", self.loss.output_activation):
                raise ValueError(
                    f"loss {self.loss.name!r} applies {self.loss.output_activation} itself; the "
                    f"last layer's activation must be 'identity' or "
                    f"'{self.loss.output_activation}', got {out_act!r}")
        elif out_act not in ACTIVATIONS:
            raise ValueError(f"output activation {out_act!r} needs loss 'cross_entropy'")
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            self.dtype = None
        if self.dtype is None or self.dtype.name not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.backend = get_backend(backend)
        self.threads = check_threads(threads)
        self.layers = all_layers
        self._dense = layers
        self.optimizer = None
        self.stop_training = False
        self.history = None

        applied = [l.activation for l in layers[:-1]]
        applied.append("identity" if self.loss.output_activation else out_act)
        self._spec = NetSpec(
            sizes=np.array([layers[0].n_in] + [l.n_out for l in layers], np.int64),
            codes=np.array([ACTIVATIONS[a].code for a in applied], np.int64),
            rates=np.array(rates if any(rates) else [], np.float64), seed=self.seed,
            kernel_activations=tuple(applied), loss=self.loss, dtype=self.dtype)
        init_seq, shuffle_seq = np.random.SeedSequence(self.seed).spawn(2)
        self._shuffle_rng = np.random.default_rng(shuffle_seq)
        self._theta = np.empty(self.n_params, self.dtype)
        self._bind_views()
        rng = np.random.default_rng(init_seq)
        for layer in self._dense:
            if layer.activation in HE_INIT:
                W = rng.standard_normal((layer.n_in, layer.n_out)) * math.sqrt(2.0 / layer.n_in)
            else:
                a = math.sqrt(6.0 / (layer.n_in + layer.n_out))
                W = rng.uniform(-a, a, (layer.n_in, layer.n_out))
            layer.W[...] = W
            layer.b[...] = 0

    # ---- structure -------------------------------------------------------

    @property
    def dense_layers(self):
        """The Dense layers, in order (``layers`` without the Dropouts)."""
        return list(self._dense)

    @property
    def n_features(self):
        return self._dense[0].n_in

    @property
    def n_outputs(self):
        return self._dense[-1].n_out

    @property
    def n_params(self):
        return int(sum(l.n_in * l.n_out + l.n_out for l in self._dense))

    def __getstate__(self):
        # Pickle keeps each view as a separate array: store the flat vector
        # only, and point the layers at it again on load.
        self._sync_params()
        state = self.__dict__.copy()
        del state["_views"]
        state["backend"] = self.backend.name
        layers = []
        for layer in state["layers"]:
            layer = copy.copy(layer)
            if isinstance(layer, Dense):
                layer.W = layer.b = None
            layers.append(layer)
        state["layers"] = layers
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.backend = get_backend(state["backend"])
        self._dense = [layer for layer in self.layers if isinstance(layer, Dense)]
        self._bind_views()

    def _bind_views(self):
        """Point every layer's W and b at its slice of ``_theta``."""
        self._views = list(zip(*reference.layer_views(self._theta, self._spec.sizes)))
        for layer, (W, b) in zip(self._dense, self._views):
            layer.W, layer.b = W, b

    def _sync_params(self):
        """Take in W/b arrays a user assigned since, checking shapes; return theta."""
        for i, (layer, (W, b)) in enumerate(zip(self._dense, self._views)):
            for name, new, view, shape in (("W", layer.W, W, (layer.n_in, layer.n_out)),
                                           ("b", layer.b, b, (layer.n_out,))):
                if new is view:
                    continue
                arr = np.asarray(new)
                if arr.shape != shape:
                    raise ValueError(f"layer {i} {name} has shape {arr.shape}, expected {shape}")
                if arr.dtype.kind not in "biuf":
                    raise TypeError(f"layer {i} {name} must be numeric, got dtype {arr.dtype}")
                view[...] = arr
                setattr(layer, name, view)
        return self._theta

    def get_params(self):
        """A copy of every parameter as one flat vector (layer by layer, W then b)."""
        return self._sync_params().copy()

    def set_params(self, theta):
        """Load a flat parameter vector as returned by :meth:`get_params`."""
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"expected {self.n_params} parameters, got shape {theta.shape}")
        self._sync_params()
        self._theta[...] = theta

    # ---- input checking --------------------------------------------------

    def _check_X(self, X, name="X", check_finite=True):
        if hasattr(X, "toarray") or hasattr(X, "tocsr"):
            raise TypeError(f"{name}: sparse matrices are not supported; pass a dense array")
        arr = np.asarray(X)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric (bool, int or float), got dtype {arr.dtype}")
        if arr.ndim == 1 and self.n_features == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, {self.n_features}), "
                             f"got shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        if arr.shape[1] != self.n_features:
            raise ValueError(f"{name} has {arr.shape[1]} features but the network expects "
                             f"{self.n_features}")
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.ascontiguousarray(arr, dtype=self.dtype)
        if check_finite:
            _check_finite(out, arr, name)
        if self.rescaling is not None:
            dt = self.dtype.type
            with np.errstate(over="ignore", invalid="ignore"):
                out = out * dt(self.rescaling.scale) + dt(self.rescaling.offset)
        return out

    def _check_y(self, y, n):
        """Return ``(labels, targets, loss_code)``: int64 labels or float targets."""
        if hasattr(y, "toarray"):
            raise TypeError("y: sparse matrices are not supported; pass a dense array")
        arr = np.asarray(y)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"y must be numeric, got dtype {arr.dtype}")
        if arr.ndim == 0 or arr.shape[0] != n:
            got = "a scalar" if arr.ndim == 0 else f"{arr.shape[0]} samples"
            raise ValueError(f"X and y have different lengths: X has {n} samples, y has {got}")
        C = self.n_outputs
        empty_labels = np.empty(0, np.int64)
        if self.loss.name == "cross_entropy" and arr.ndim == 1:
            if arr.dtype.kind == "f":
                if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
                    raise ValueError("class labels must be integers (got non-integer or NaN values)")
            labels = arr.astype(np.int64)
            bad = (labels < 0) | (labels >= C)
            if bad.any():
                raise ValueError(f"labels must be in 0..{C - 1} for {C} outputs; found "
                                 f"{labels[bad][0]} (at index {int(np.argmax(bad))})")
            return labels, np.empty((0, C), self.dtype), _kl.CE_LABELS
        if arr.ndim == 1 and C == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != C:
            want = f"(n_samples,) labels or (n_samples, {C})" if self.loss.name == "cross_entropy" \
                else f"(n_samples, {C})"
            raise ValueError(f"y must have shape {want} for a network with {C} outputs, "
                             f"got {arr.shape}")
        targets = np.ascontiguousarray(arr, dtype=self.dtype)
        _check_finite(targets, arr, "y")
        if self.loss.classification and ((targets < 0) | (targets > 1)).any():
            raise ValueError(f"{self.loss.name} targets must lie in [0, 1]")
        if self.loss.name == "poisson" and (targets < 0).any():
            bad = np.argwhere(targets < 0)[0]
            raise ValueError(f"poisson targets must be >= 0; found {targets[tuple(bad)]:.6g} at "
                             f"index ({', '.join(map(str, bad))})")
        code = _kl.CE_TARGETS if self.loss.name == "cross_entropy" else self.loss.kernel_code
        return empty_labels, targets, code

    # ---- inference -------------------------------------------------------

    def _output(self, X, original=None):
        """Last layer output (logits for the fused losses) for checked ``X``.

        ``original`` is the caller's array before conversion, for the error
        message when a value does not fit the network's dtype.
        """
        theta = self._sync_params()
        with blas_threads(self.threads):
            out, ok = self.backend.predict_raw(self._spec, theta, X)
        if not ok:
            if not np.isfinite(theta).all():
                raise FloatingPointError("the network's parameters are not finite (NaN or inf)")
            _check_finite(X, X if original is None else np.asarray(original), "X")
            raise FloatingPointError("the forward pass overflowed: X values are too large for "
                                     f"{self.dtype.name} (max |X| = {np.abs(X).max():.3g})")
        return out

    def predict_proba(self, X):
        """Class probabilities (cross-entropy, binary cross-entropy), means (Poisson) or outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
        """
        out = self._output(self._check_X(X, check_finite=False), X)
        if self.loss.output_activation == "softmax":
            return reference.softmax(out)
        if self.loss.output_activation == "sigmoid":
            return reference.sigmoid(out)
        if self.loss.output_activation == "exp":
            return np.exp(out)
        return out

    def predict(self, X):
        """Class labels (cross-entropy), 0/1 label matrix (binary CE), means (Poisson), or outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) int64, (n_samples, n_outputs) int64, or
        (n_samples, n_outputs) float.
        """
        out = self._output(self._check_X(X, check_finite=False), X)
        if self.loss.output_activation == "softmax":
            return out.argmax(axis=1)
        if self.loss.output_activation == "sigmoid":
            return (out > 0).astype(np.int64)
        if self.loss.output_activation == "exp":
            return np.exp(out)
        return out

    def evaluate(self, X, y):
        """Mean loss over ``(X, y)`` and, for classification, the accuracy.

        Returns
        -------
        dict
            ``{"loss": float}`` plus ``"accuracy"`` for cross-entropy (fraction
            of correct labels) and binary cross-entropy (fraction of correct
            label entries).
        """
        X = self._check_X(X)
        labels, targets, code = self._check_y(y, X.shape[0])
        out = self._output(X)
        return self._metrics(out, labels, targets, code)

    def _metrics(self, out, labels, targets, code):
        result = {"loss": float(_loss_value(code, out, labels, targets, self._spec))}
        if self.loss.name == "cross_entropy":
            truth = labels if code == _kl.CE_LABELS else targets.argmax(axis=1)
            result["accuracy"] = float(np.mean(out.argmax(axis=1) == truth))
        elif self.loss.name == "binary_cross_entropy":
            result["accuracy"] = float(np.mean((out > 0) == (targets > 0.5)))
        return result

    def loss_and_gradients(self, X, y, dropout_step=None):
        """The loss of ``(X, y)`` as one batch and the gradients the trainer uses.

        Parameters
        ----------
        X, y : as for :meth:`fit`
        dropout_step : int, optional
            Apply the Dropout layers with the masks of this optimizer step
            (a fixed mask, for gradient checks); by default no dropout.

        Returns
        -------
        loss : float
        grads : list of (dW, db)
            ``dW`` of shape (n_in, n_out) and ``db`` of shape (n_out,) per layer.
        """
        X = self._check_X(X)
        labels, targets, code = self._check_y(y, X.shape[0])
        if dropout_step is not None:
            dropout_step = _check_int("dropout_step", dropout_step, minimum=0)
        loss, grad = self._loss_and_flat_gradient(X, labels, targets, code, dropout_step)
        return loss, list(zip(*reference.layer_views(grad, self._spec.sizes)))

    def _loss_and_flat_gradient(self, X, labels, targets, code, dropout_step=None):
        """:meth:`loss_and_gradients` of checked arrays (from ``_check_X``/``_check_y``).

        Returns the loss and the gradient as one flat vector laid out like
        :meth:`get_params` (for full-batch optimizers such as L-BFGS).
        """
        theta = self._sync_params()
        spec = self._spec
        if dropout_step is None:
            spec = spec._replace(rates=np.zeros(0))
        with blas_threads(self.threads):
            loss, grad = self.backend.loss_and_gradients(spec, theta, X, labels, targets, code,
                                                         dropout_step or 0)
        return float(loss), grad

    # ---- training --------------------------------------------------------

    def fit(self, X, y, epochs=1, batch_size=32, optimizer=None, shuffle=True, verbose=1,
            validation_data=None, validation_split=0.0, callbacks=(), on_nonfinite="raise",
            checkpoint=None, checkpoint_every=1, resume=None):
        """Train with mini-batches; each epoch is ceil(n / batch_size) steps.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like
            Integer labels of shape (n_samples,) or one-hot targets of shape
            (n_samples, n_outputs) for cross-entropy; 0/1 targets of shape
            (n_samples, n_outputs) for binary cross-entropy; targets of shape
            (n_samples, n_outputs) (or (n_samples,) for one output) for mse,
            the same but ``>= 0`` for poisson.
        epochs : int
        batch_size : int
            The last batch of an epoch may be smaller; it counts as a step.
        optimizer : Optimizer, default SGD(lr=0.01)
            Kept (with its state) for later calls to ``fit``.
        shuffle : bool
            A fresh permutation every epoch (seeded by the network's seed).
        verbose : {0, 1}
            1 prints per-epoch progress (a bar on a terminal, one line per
            epoch otherwise); 0 is silent.
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch into ``val_loss`` (and ``val_accuracy``).
        validation_split : float in [0, 1)
            Hold out the last fraction of ``(X, y)`` (as given, before any
            shuffling) as validation data; ignored with ``validation_data``.
        callbacks : sequence
            Objects with an ``on_epoch_end(network, logs)`` method and,
            optionally, ``on_train_begin(network)`` / ``on_train_end(network)``.
            Setting ``network.stop_training = True`` ends training after the
            current epoch.
        on_nonfinite : {"raise", "stop"}
            What a non-finite loss, activation or weight does: the network is
            rolled back to the last finite weights (those before the failing
            step) and ``FloatingPointError`` is raised ("raise", the error has a
            ``history``), or training stops with a ``RuntimeWarning`` ("stop").
            Either way ``history.nonfinite`` records ``{"epoch", "step"}``
            (0-based).
        checkpoint : str or path, optional
            Save weights, optimizer state, RNG state, callback states and
            history here (atomically) every ``checkpoint_every`` epochs and at
            the end.
        checkpoint_every : int
        resume : str or path, optional
            Continue from a checkpoint written by ``checkpoint=``: ``epochs``
            is the total, so a resumed run ends exactly where an uninterrupted
            one would, with bit-identical weights (same seed and threads).

        Returns
        -------
        History
            ``.history["loss"]`` holds one mean training loss per epoch.
        """
        X = self._check_X(X)
        labels, targets, code = self._check_y(y, X.shape[0])
        if not (isinstance(validation_split, (int, float)) and 0 <= validation_split < 1):
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
        if validation_split and validation_data is None:
            n_val = int(round(X.shape[0] * validation_split))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves no training or "
                                 f"no validation samples out of {X.shape[0]}")
            cut = X.shape[0] - n_val
            y_all = labels if code == _kl.CE_LABELS else targets
            validation_data = (X[cut:], y_all[cut:])
            X, labels, targets = X[:cut], labels[:cut], targets[:cut]
        n = X.shape[0]
        epochs = _check_int("epochs", epochs, minimum=0)
        batch_size = _check_int("batch_size", batch_size, minimum=1)
        batch_size = min(batch_size, n)
        if optimizer is None:
            optimizer = self.optimizer if self.optimizer is not None else SGD(lr=0.01)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn optimizer, got {type(optimizer).__name__}")
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            Xv = self._check_X(validation_data[0], name="validation X")
            val = (Xv, *self._check_y(validation_data[1], Xv.shape[0]))
        else:
            val = None
        if on_nonfinite not in ("raise", "stop"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'stop', got {on_nonfinite!r}")
        checkpoint_every = _check_int("checkpoint_every", checkpoint_every, minimum=1)
        self.optimizer = optimizer
        theta = self._sync_params()
        optimizer.init_state(theta.size, self.dtype)
        callbacks = list(callbacks)
        history = History()
        for callback in callbacks:
            if hasattr(callback, "on_train_begin"):
                callback.on_train_begin(self)
        first_epoch = 0
        if resume is not None:
            from .checkpoint import restore_checkpoint

            first_epoch = restore_checkpoint(resume, self, optimizer, callbacks, history,
                                             batch_size=batch_size, n_samples=n)
        steps = -(-n // batch_size)
        run = _EpochRunner(self, X, labels, targets, code, batch_size, steps, optimizer)
        progress = Progress(verbose, epochs)
        self.stop_training = False
        self.history = history
        with blas_threads(self.threads):
            for epoch in range(first_epoch, epochs):
                start = time.perf_counter()
                perm = self._shuffle_rng.permutation(n) if shuffle else np.arange(n)
                progress.start_epoch(epoch, steps)
                failed_step = run.epoch(perm, progress, start)
                if failed_step is not None:
                    progress.close()
                    history.nonfinite = {"epoch": epoch, "step": failed_step}
                    message = (f"training diverged: non-finite loss, activations or weights at "
                               f"epoch {epoch + 1}, step {failed_step + 1}; the network keeps "
                               f"the last finite weights (from before that step)")
                    big = float(np.abs(X).max())
                    if big > 1e15:
                        message += f"; note max |X| = {big:.3g}, too large: scale the inputs"
                    if on_nonfinite == "raise":
                        error = FloatingPointError(message)
                        error.history = history
                        raise error
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
                    break
                seconds = time.perf_counter() - start
                logs = {"epoch": epoch, "loss": run.mean_loss()}
                if self.loss.classification:
                    logs["accuracy"] = run.accuracy()
                if val is not None:
                    logs.update(_prefixed("val_", self._metrics_on(*val)))
                logs["lr"] = optimizer.lr
                logs["seconds"] = seconds
                logs["samples_per_second"] = n / seconds if seconds > 0 else float("inf")
                history.append(epoch, logs)
                progress.end_epoch(logs)
                for callback in callbacks:
                    callback.on_epoch_end(self, logs)
                if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0
                                               or epoch + 1 == epochs or self.stop_training):
                    from .checkpoint import save_checkpoint

                    save_checkpoint(checkpoint, self, optimizer, callbacks, history,
                                    epoch=epoch + 1, batch_size=batch_size, n_samples=n)
                if self.stop_training:
                    break
        progress.close()
        for callback in callbacks:
            if hasattr(callback, "on_train_end"):
                callback.on_train_end(self)
        return history

    def _metrics_on(self, X, labels, targets, code):
        out, _ = self.backend.predict_raw(self._spec, self._theta, X)
        return self._metrics(out, labels, targets, code)

    def __repr__(self):
        layers = ", ".join(map(repr, self.layers))
        return (f"Network([{layers}], loss={self.loss.name!r}, dtype={self.dtype.name!r}, "
                f"backend={self.backend.name!r})")


class _EpochRunner:
    """Runs one epoch's steps through the backend, with progress and rollback.

    The backend runs many steps per call. Before each call the parameters and
    optimizer state are copied; if the call stops on a non-finite forward
    pass or leaves non-finite weights, the copy is restored and the steps are
    replayed one at a time (the kernels are deterministic) to find the failing
    step, whose update is then undone: the network ends on the last finite
    weights.
    """

    def __init__(self, net, X, labels, targets, code, batch_size, steps, optimizer):
        self.net, self.X, self.labels, self.targets, self.code = net, X, labels, targets, code
        self.batch_size, self.steps, self.optimizer = batch_size, steps, optimizer
        self.theta = net._theta
        self.step_losses = np.empty(steps, np.float64)
        self.step_correct = np.zeros(steps, np.int64)
        self.weights = np.full(steps, batch_size, np.float64)
        self.weights[-1] = X.shape[0] - (steps - 1) * batch_size

    def _call(self, perm, begin, end):
        completed = self.net.backend.train_steps(
            self.net._spec, self.theta, self.X, self.labels, self.targets, self.code, perm,
            self.batch_size, begin, end, self.optimizer, self.step_losses[begin:],
            self.step_correct[begin:])
        self.optimizer.state["t"] += completed
        return completed

    def _snapshot(self):
        state = self.optimizer.state
        return self.theta.copy(), state["s1"].copy(), state["s2"].copy(), state["t"]

    def _restore(self, snap):
        state = self.optimizer.state
        self.theta[...], state["s1"][...], state["s2"][...] = snap[:3]
        state["t"] = snap[3]

    def _finite(self):
        state = self.optimizer.state
        return (_kt.all_finite(self.theta) and _kt.all_finite(state["s1"])
                and _kt.all_finite(state["s2"]))

    def epoch(self, perm, progress, start):
        """Run every step; return None, or the index of the step that failed."""
        done = 0
        per_call = 1 if progress.wants_updates else self.steps
        while done < self.steps:
            stop = min(self.steps, done + per_call)
            snap = self._snapshot()
            if self._call(perm, done, stop) < stop - done or not self._finite():
                self._restore(snap)
                for step in range(done, stop):
                    snap = self._snapshot()
                    if self._call(perm, step, step + 1) < 1 or not self._finite():
                        self._restore(snap)
                        return step
            elapsed = time.perf_counter() - start
            seen = float(self.weights[:stop].sum())
            progress.update(stop, float(self.step_losses[:stop] @ self.weights[:stop] / seen),
                            seen / max(elapsed, 1e-9))
            # About ten bar updates a second, whatever a step costs.
            per_call = max(1, int(0.1 * stop / max(elapsed, 1e-9)))
            done = stop
        return None

    def mean_loss(self):
        return float(self.step_losses @ self.weights / self.weights.sum())

    def accuracy(self):
        """Running accuracy over the epoch's batches, each before its update."""
        net = self.net
        per_sample = net.n_outputs if net.loss.name == "binary_cross_entropy" else 1
        return float(self.step_correct.sum() / (self.weights.sum() * per_sample))


# ---- helpers ---------------------------------------------------------------

def _prefixed(prefix, metrics):
    return {prefix + key: value for key, value in metrics.items()}


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_finite(converted, original, name):
    if _kt.all_finite(converted.reshape(-1)):
        return
    bad = np.argwhere(~np.isfinite(converted))[0]
    where = ", ".join(map(str, bad))
    if np.isfinite(np.asarray(original, dtype=np.float64)[tuple(bad)]):
        raise ValueError(f"{name} has a value too large for {converted.dtype} at index "
                         f"({where})")
    raise ValueError(f"{name} contains NaN or inf (first at index ({where}))")


def _loss_value(code, out, labels, targets, spec):
    """The mean loss of logits/outputs ``out`` (numpy; used once per epoch)."""
    y = labels if code == _kl.CE_LABELS else targets.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return reference.loss_and_delta(spec.loss.name, out.astype(np.float64), y,
                                        spec.kernel_activations[-1])[0]
