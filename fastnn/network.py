"""The Network: a thin Python layer that checks inputs and calls kernels."""

import copy
import math
import numbers
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ._threads import ThreadChoice, available_cores, blas_threads, check_threads
from . import _checks
from . import data as _data
from . import reference, training
from .activations import ACTIVATIONS
from .backends import get_backend
from .kernels import losses as _kl
from .kernels import forward as _kt
from .layers import Dense, Dropout, Rescaling
from .losses import get_loss
from .optimizers import SGD, Optimizer

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
    rescaling: object                # the Rescaling first layer, or None


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
        Threads of a training step (fastnn's own, each calling single-threaded
        BLAS on its tiles; results do not depend on the number). None: the
        number that is fastest now, measured during training and re-checked
        as it goes (up to the cores this process may use). predict shares
        its chunks of rows among ``threads`` threads (None: every core), each
        taking the next chunk when it is done.

    Attributes
    ----------
    layers : list of Dense and Dropout
        The Dense layers' ``W`` and ``b`` are views into one flat parameter vector.
    input_range : (float, float) or None
        The smallest and largest input value the first Dense layer saw in
        training (after any Rescaling), over every ``fit``; saved with the
        model, so ``fastnn predict`` can warn about inputs scaled otherwise.
        From every value of inputs in memory, from up to 4,096 evenly spaced
        rows of a memory map.
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
        self.input_range = None

        applied = [l.activation for l in layers[:-1]]
        applied.append("identity" if self.loss.output_activation else out_act)
        self._spec = NetSpec(
            sizes=np.array([layers[0].n_in] + [l.n_out for l in layers], np.int64),
            codes=np.array([ACTIVATIONS[a].code for a in applied], np.int64),
            rates=np.array(rates if any(rates) else [], np.float64), seed=self.seed,
            kernel_activations=tuple(applied), loss=self.loss, dtype=self.dtype,
            rescaling=self.rescaling)
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
        """Inputs per sample: the first Dense layer's ``n_in`` (the width of ``X``)."""
        return self._dense[0].n_in

    @property
    def n_outputs(self):
        """Outputs per sample: the last Dense layer's ``n_out`` (classes, labels or targets)."""
        return self._dense[-1].n_out

    @property
    def n_params(self):
        """Learned parameters: every Dense layer's ``n_in * n_out`` weights and ``n_out`` biases."""
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

    def _value_range(self, src):
        """``(min, max)`` of the values the first Dense layer sees from the source ``src``."""
        values = src.array
        if src.sparse:
            data = src.csr[2]
            values = np.concatenate([data[:1] if data.size else np.zeros(1, data.dtype),
                                     np.zeros(1 if data.size < src.n * src.width else 0,
                                              data.dtype), data])
        if src.mapped and values.shape[0] > _RANGE_ROWS:
            values = values[np.linspace(0, values.shape[0] - 1, _RANGE_ROWS).astype(np.int64)]
        lo, hi = float(np.min(values)), float(np.max(values))
        if self.rescaling is not None:
            lo, hi = sorted((lo * self.rescaling.scale + self.rescaling.offset,
                             hi * self.rescaling.scale + self.rescaling.offset))
        return lo, hi

    def _thread_choice(self):
        """The :class:`fastnn._threads.ThreadChoice` of this network's training (kept across fits)."""
        choice = getattr(self, "_choice", None)
        if choice is None or choice.pinned != self.threads:
            choice = self._choice = ThreadChoice(pinned=self.threads)
        return choice

    # ---- input checking --------------------------------------------------

    def _check_X(self, X, name="X", check_finite=True):
        """``X`` as a :class:`fastnn.data.Source`, read in place where the kernels can.

        float32/float64 in the network's dtype and 8/16-bit integers that are
        C-contiguous are not copied (memory maps included); other arrays are
        converted once. Arrays in memory are checked for NaN/inf here; a
        memory map is checked by the kernels as they read it. A
        ``scipy.sparse`` matrix or array (any format) is converted once to
        CSR in the network's dtype (:meth:`_check_sparse_X`).
        """
        if hasattr(X, "toarray") or hasattr(X, "tocsr"):
            return self._check_sparse_X(X, name)
        arr = X if isinstance(X, np.ndarray) else np.asarray(X)
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
        mapped = _data.is_mapped(arr)
        in_place = arr.flags.c_contiguous and (
            arr.dtype == self.dtype or arr.dtype.kind in "iu" and arr.dtype in _data.KINDS
            and arr.dtype.itemsize <= 2 or mapped and arr.dtype.kind == "f"
            and arr.dtype in _data.KINDS)
        if mapped and not in_place:
            raise ValueError(f"{name} is a memory map of dtype {arr.dtype}"
                             f"{'' if arr.flags.c_contiguous else ', not C-contiguous'}: "
                             f"fastnn reads maps in place only when they are C-contiguous "
                             f"float32, float64, uint8, int8, uint16 or int16 (copying it "
                             f"would load it whole); write it in one of those")
        if in_place:
            src = _data.source(arr, mapped)
            if check_finite and not mapped and arr.dtype.kind == "f":
                _check_finite(arr, arr, name)
            return src
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.ascontiguousarray(arr, dtype=self.dtype)
        if check_finite:
            _check_finite(out, arr, name)
        return _data.source(out, False, arr)

    def _check_sparse_X(self, X, name="X"):
        """A sparse ``X`` as a :class:`fastnn.data.Source` over its canonical CSR copy.

        Any scipy.sparse format (CSC, COO, ...) becomes CSR with the data in
        the network's dtype, indices sorted and duplicates summed: O(nnz)
        memory, never densified. Explicit zeros stay (they add 0). Always
        checked for NaN/inf (the kernels read the data in place).
        """
        import scipy.sparse as sp

        if not sp.issparse(X):
            raise TypeError(f"{name} is a {type(X).__name__}; fastnn takes numpy arrays and "
                            f"scipy.sparse matrices or arrays")
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric (bool, int or float), got dtype {X.dtype}")
        if len(X.shape) != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, {self.n_features}), "
                             f"got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        if X.shape[1] != self.n_features:
            raise ValueError(f"{name} has {X.shape[1]} features but the network expects "
                             f"{self.n_features}")
        if self.rescaling is not None:
            raise ValueError(f"{name} is sparse, and a Rescaling first layer (x * scale + "
                             f"offset) is not supported on sparse input; scale the data "
                             f"before, or pass a dense array")
        with np.errstate(over="ignore", invalid="ignore"):
            csr = sp.csr_matrix(X, dtype=self.dtype, copy=True)
            csr.sum_duplicates()             # sorted indices, one entry per position
        src = _data.sparse_source(csr)
        bad = _data.sparse_nonfinite(src)
        if bad is not None:
            where = f"({bad[0]}, {bad[1]})"
            original = sp.csr_matrix(X, dtype=np.float64)[bad[0], bad[1]]
            if np.isfinite(original):
                raise ValueError(f"{name} has a value too large for {self.dtype} at index "
                                 f"{where}")
            raise ValueError(f"{name} contains NaN or inf (first at index {where})")
        return src

    def _check_y(self, y, n):
        """Return ``(y, loss_code)``: int64-kind labels or float targets as a source."""
        if hasattr(y, "toarray"):
            raise TypeError("y: sparse matrices are not supported; pass a dense array")
        arr = y if isinstance(y, np.ndarray) else np.asarray(y)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"y must be numeric, got dtype {arr.dtype}")
        if arr.ndim == 0 or arr.shape[0] != n:
            got = "a scalar" if arr.ndim == 0 else f"{arr.shape[0]} samples"
            raise ValueError(f"X and y have different lengths: X has {n} samples, y has {got}")
        C = self.n_outputs
        mapped = _data.is_mapped(arr)
        if self.loss.name == "cross_entropy" and arr.ndim == 1:
            if mapped and arr.dtype.kind in "iu" and arr.dtype in _data.KINDS \
                    and arr.flags.c_contiguous:
                return _data.source(arr, True), _kl.CE_LABELS    # checked as it is read
            if arr.dtype.kind == "f":
                if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
                    raise ValueError("class labels must be integers (got non-integer or NaN values)")
            labels = np.ascontiguousarray(arr, dtype=np.int64)
            bad = (labels < 0) | (labels >= C)
            if bad.any():
                raise ValueError(f"labels must be in 0..{C - 1} for {C} outputs; found "
                                 f"{labels[bad][0]} (at index {int(np.argmax(bad))})")
            return _data.source(labels, False), _kl.CE_LABELS
        if arr.ndim == 1 and C == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != C:
            want = f"(n_samples,) labels or (n_samples, {C})" if self.loss.name == "cross_entropy" \
                else f"(n_samples, {C})"
            raise ValueError(f"y must have shape {want} for a network with {C} outputs, "
                             f"got {arr.shape}")
        code = _kl.CE_TARGETS if self.loss.name == "cross_entropy" else self.loss.kernel_code
        if mapped and arr.dtype.kind == "f" and arr.dtype in _data.KINDS and arr.flags.c_contiguous:
            if self.loss.classification:
                _check_unit_interval_chunked(arr, self.loss.name)
            return _data.source(arr, True), code               # checked as it is read
        targets = np.ascontiguousarray(arr, dtype=self.dtype)
        _check_finite(targets, arr, "y")
        if self.loss.classification and ((targets < 0) | (targets > 1)).any():
            raise ValueError(f"{self.loss.name} targets must lie in [0, 1]")
        if self.loss.name == "poisson" and (targets < 0).any():
            bad = np.argwhere(targets < 0)[0]
            raise ValueError(f"poisson targets must be >= 0; found {targets[tuple(bad)]:.6g} at "
                             f"index ({', '.join(map(str, bad))})")
        return _data.source(targets, False), code

    # ---- inference -------------------------------------------------------

    def _output(self, src, overflow="raise"):
        """Last layer output (logits for the fused losses) for the checked source ``src``.

        A non-finite input value always raises; a forward pass that overflows
        raises with ``overflow="raise"`` and gives its inf/NaN outputs with
        ``"propagate"`` (metrics: a diverged network's loss is inf or NaN).
        """
        theta = self._sync_params()
        with blas_threads(1):                   # fastnn's own threads call BLAS
            out, ok, bad = self.backend.predict_raw(self._spec, theta, src,
                                                    self.threads or available_cores())
        if bad >= 0:
            raise _data.bad_value_error(src, bad, self.dtype)
        if not ok:
            theta_finite = bool(np.isfinite(theta).all())
            if theta_finite:
                _check_finite_chunked(src, self.dtype)     # bad input, found where it is
            if overflow == "propagate":
                return out
            if not theta_finite:
                raise FloatingPointError("the network's parameters are not finite (NaN or inf)")
            raise FloatingPointError("the forward pass overflowed: X values are too large for "
                                     f"{self.dtype.name} (max |X| = "
                                     f"{_max_abs(src):.3g})")
        return out

    def predict_proba(self, X):
        """Class probabilities (cross-entropy, binary cross-entropy), means (Poisson) or outputs.

        With the numba backend a row's result is bit-identical whatever other
        rows it is predicted with (any batch size, any order): the rows go
        through in fixed-size chunks and the output activation is applied row
        by row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
        """
        out = self._output(self._check_X(X, check_finite=False))
        if self.loss.output_activation is None:
            return out
        return self.backend.output_activation(self.loss.output_activation, out)

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
        out = self._output(self._check_X(X, check_finite=False))
        if self.loss.output_activation == "softmax":
            return out.argmax(axis=1)
        if self.loss.output_activation == "sigmoid":
            return (out > 0).astype(np.int64)
        if self.loss.output_activation == "exp":
            return np.exp(out)
        return out

    def evaluate(self, X, y, sample_weight=None):
        """Mean loss over ``(X, y)`` and, for classification, the accuracy.

        Parameters
        ----------
        X, y : as for :meth:`fit`
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the samples: the loss is ``sum w_i l_i / sum w_i`` and
            the accuracy the weighted fraction of correct predictions.

        Returns
        -------
        dict
            ``{"loss": float}`` plus ``"accuracy"`` for cross-entropy (fraction
            of correct labels) and binary cross-entropy (fraction of correct
            label entries).
        """
        return training.metrics(self, self._check_data(X, y, sample_weight),
                                training.SingleProcess())

    def _check_data(self, X, y, sample_weight=None, name="X"):
        """Checked ``(X, y, sample_weight)`` as a :class:`fastnn.data.TrainingData`."""
        X = self._check_X(X, name=name)
        y, code = self._check_y(y, X.n)
        return _data.TrainingData(X, y, code, _check_weights(sample_weight, X.n))

    def _class_weighted(self, data, class_weight):
        """``data``'s sample weights times ``class_weight`` of each sample's class, float64 (n,)."""
        if self.loss.name != "cross_entropy":
            raise ValueError(f"class_weight needs loss='cross_entropy' (class labels or one-hot "
                             f"targets); this network's loss is {self.loss.name!r}: weight "
                             f"the samples with sample_weight instead")
        C = self.n_outputs
        labels = _labels_of(data, C)
        if isinstance(class_weight, str):
            if class_weight != "balanced":
                raise ValueError(f"class_weight must be a dict {{label: weight}}, 'balanced' or "
                                 f"None, got {class_weight!r}")
            counts = np.bincount(labels, minlength=C)
            present = counts > 0
            per_class = np.zeros(C)
            per_class[present] = labels.shape[0] / (present.sum() * counts[present])
        elif isinstance(class_weight, Mapping):
            per_class = np.ones(C)
            for label, weight in class_weight.items():
                if isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral) \
                        or not 0 <= label < C:
                    raise ValueError(f"class_weight has the label {label!r}, but the labels are "
                                     f"the integers 0..{C - 1} for {C} outputs")
                per_class[int(label)] = _checks.real(f"class_weight[{label!r}]", weight)
        else:
            raise TypeError(f"class_weight must be a dict {{label: weight}}, 'balanced' or None, "
                            f"got {type(class_weight).__name__}")
        weights = per_class[labels]
        if data.weights.shape[0]:
            weights *= data.weights
        if not weights.any():
            raise ValueError("sample_weight times class_weight is zero for every sample")
        return weights

    def _targets(self, batch):
        """``(labels, targets)`` of a :class:`TrainingData` as arrays (the unused one empty)."""
        if batch.code == _kl.CE_LABELS:
            return batch.y.take(slice(None), np.int64)[:, 0], np.empty((0, self.n_outputs),
                                                                       self.dtype)
        return np.empty(0, np.int64), batch.y.take(slice(None), self.dtype)

    def _metric_sums(self, out, batch):
        """``(sum w_i l_i, sum w_i correct_i, sum w_i)`` of output ``out`` for ``batch``.

        ``correct_i`` counts the right predictions of sample i (1 for a right
        label; for binary cross-entropy, right label entries divided by the
        number of outputs), so accuracy is the middle term over the last.
        """
        labels, targets = self._targets(batch)
        y = labels if batch.code == _kl.CE_LABELS else targets.astype(np.float64)
        weights = batch.weights if batch.weights.shape[0] else None
        with np.errstate(over="ignore", invalid="ignore"):
            loss = reference.loss_and_delta(self.loss.name, out.astype(np.float64), y,
                                            self._spec.kernel_activations[-1], weights,
                                            norm=1.0)[0]
        total = float(batch.n if weights is None else weights.sum())
        if not self.loss.classification:
            return float(loss), 0.0, total
        if self.loss.name == "cross_entropy":
            truth = labels if batch.code == _kl.CE_LABELS else targets.argmax(axis=1)
            counts = (out.argmax(axis=1) == truth).astype(np.float64)
        else:
            counts = ((out > 0) == (targets > 0.5)).sum(axis=1) / self.n_outputs
        correct = counts.sum() if weights is None else weights @ counts
        return float(loss), float(correct), total

    def loss_and_gradients(self, X, y, dropout_step=None, sample_weight=None):
        """The loss of ``(X, y)`` as one batch and the gradients the trainer uses.

        Parameters
        ----------
        X, y : as for :meth:`fit`
        dropout_step : int, optional
            Apply the Dropout layers with the masks of this optimizer step
            (a fixed mask, for gradient checks); by default no dropout.
        sample_weight : array-like of shape (n_samples,), optional
            The loss is ``sum w_i l_i / sum w_i`` (see :meth:`fit`).

        Returns
        -------
        loss : float
        grads : list of (dW, db)
            ``dW`` of shape (n_in, n_out) and ``db`` of shape (n_out,) per layer.
        """
        batch = self._check_data(X, y, sample_weight)
        if dropout_step is not None:
            dropout_step = _check_int("dropout_step", dropout_step, minimum=0)
        loss, grad = self._loss_and_flat_gradient(*self._batch_arrays(batch), dropout_step)
        return loss, list(zip(*reference.layer_views(grad, self._spec.sizes)))

    def _batch_arrays(self, batch):
        """``(X, labels, targets, code, weights)`` of a checked batch, as the backends take them."""
        X = batch.X.array if batch.X.sparse else \
            batch.X.take(slice(None), self.dtype, self.rescaling)
        labels, targets = self._targets(batch)
        return X, labels, targets, batch.code, batch.weights if batch.weights.shape[0] else None

    def _loss_and_flat_gradient(self, X, labels, targets, code, weights=None, dropout_step=None):
        """:meth:`loss_and_gradients` of the arrays :meth:`_batch_arrays` gives.

        Returns the loss and the gradient as one flat vector laid out like
        :meth:`get_params` (for full-batch optimizers such as L-BFGS).
        """
        theta = self._sync_params()
        spec = self._spec
        if dropout_step is None:
            spec = spec._replace(rates=np.zeros(0))
        with blas_threads(self.threads):
            loss, grad = self.backend.loss_and_gradients(spec, theta, X, labels, targets, code,
                                                         dropout_step or 0, weights)
        return float(loss), grad

    # ---- training --------------------------------------------------------

    def fit(self, X, y, epochs=1, batch_size=32, optimizer=None, shuffle=True, verbose=1,
            validation_data=None, validation_split=0.0, callbacks=(), on_nonfinite="raise",
            checkpoint=None, checkpoint_every=1, resume=None, distributed=None,
            sample_weight=None, class_weight=None):
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
            Under ``distributed`` it is the global batch, split across ranks.
        optimizer : Optimizer, default SGD(lr=0.01)
            Kept (with its state) for later calls to ``fit``.
        shuffle : bool or "block"
            True: a fresh permutation every epoch (seeded by the network's
            seed). "block": every epoch permutes blocks of about 1 MiB of
            contiguous rows and shuffles the rows of each 16 consecutive
            blocks together (for memory maps on disks where random reads are
            slow; see :func:`fastnn.data.block_permutation`). False: in order.
        verbose : {0, 1}
            1 prints per-epoch progress (a bar on a terminal, one line per
            epoch otherwise); 0 is silent.
        validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
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
        distributed : None, "mpi" or an mpi4py communicator
            Data-parallel training over MPI ranks (see :mod:`fastnn.distributed`):
            every rank calls ``fit`` with the same arguments; each computes its
            share of every batch and the gradients are summed. None trains
            in this process alone (mpi4py is never imported).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights: a batch's loss is ``sum w_i l_i / sum w_i``
            (as scikit-learn's MLP and PyTorch's class-weighted cross-entropy
            compute it), so a weight of 2 counts a sample twice. A batch whose
            weights sum to 0 raises :class:`fastnn.data.DataError` and leaves
            the network as it was.
        class_weight : dict {label: weight} or "balanced", optional
            Cross-entropy only: each sample's weight is multiplied by the
            weight of its class (the label, or the arg-max of a one-hot
            target), as scikit-learn's ``compute_sample_weight`` does. Labels
            missing from the dict weigh 1; "balanced" gives class ``c`` the
            weight ``n_samples / (n_classes * count(c))`` over the classes
            present in the training rows. It weights the training loss only
            (as in Keras): validation metrics use ``sample_weight`` alone.

        Returns
        -------
        History
            ``.history["loss"]`` holds one mean training loss per epoch.
        """
        strategy = training.get_strategy(distributed)
        with strategy.collective():
            data = self._check_data(X, y, sample_weight)
            if not (isinstance(validation_split, (int, float)) and 0 <= validation_split < 1):
                raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
            validation = None
            if validation_data is not None:
                if not isinstance(validation_data, (tuple, list)) or \
                        len(validation_data) not in (2, 3):
                    raise ValueError("validation_data must be a pair (X_val, y_val) or a "
                                     "triple (X_val, y_val, sample_weight_val)")
                validation = self._check_data(*validation_data, name="validation X")
            elif validation_split:
                n_val = int(round(data.n * validation_split))
                if n_val < 1 or n_val >= data.n:
                    raise ValueError(f"validation_split={validation_split} leaves no training "
                                     f"or no validation samples out of {data.n}")
                cut = data.n - n_val
                data, validation = data.rows(0, cut), data.rows(cut, data.n)
            if class_weight is not None:
                data = data._replace(weights=self._class_weighted(data, class_weight))
            epochs = _check_int("epochs", epochs, minimum=0)
            batch_size = min(_check_int("batch_size", batch_size, minimum=1), data.n)
            if optimizer is None:
                optimizer = self.optimizer if self.optimizer is not None else SGD(lr=0.01)
            if not isinstance(optimizer, Optimizer):
                raise TypeError(f"optimizer must be a fastnn optimizer, got "
                                f"{type(optimizer).__name__}")
            if not (isinstance(shuffle, (bool, np.bool_)) or
                    isinstance(shuffle, str) and shuffle == "block"):
                raise ValueError(f"shuffle must be True, False or 'block', got {shuffle!r}")
            if on_nonfinite not in ("raise", "stop"):
                raise ValueError(f"on_nonfinite must be 'raise' or 'stop', got {on_nonfinite!r}")
            checkpoint_every = _check_int("checkpoint_every", checkpoint_every, minimum=1)
        previous, self.optimizer = self.optimizer, optimizer
        previous_range, self.input_range = self.input_range, _widen(self.input_range,
                                                                    self._value_range(data.X))
        try:
            with blas_threads(1):               # fastnn's own threads call BLAS (kernels.step)
                return training.fit(self, data, epochs=epochs, batch_size=batch_size,
                                    optimizer=optimizer, shuffle=shuffle, verbose=verbose,
                                    validation=validation, callbacks=list(callbacks),
                                    on_nonfinite=on_nonfinite, checkpoint=checkpoint,
                                    checkpoint_every=checkpoint_every, resume=resume,
                                    strategy=strategy)
        except _data.DataError:
            self.optimizer = previous            # bad input: the call changes nothing
            self.input_range = previous_range
            raise

    def summary(self, print_fn=print):
        """A Keras-style table of the layers, printed and returned.

        One row per layer (Rescaling, Dense, Dropout): its output shape
        (``None`` is the batch), activation and parameter count, then the
        totals and the parameter memory (bytes, KiB or MiB) in the network's
        dtype, and the optimizer's state once it has one. ``print(net)``
        stays the one-line ``repr``.

        Parameters
        ----------
        print_fn : callable or None, default print
            Called once with the table (as Keras's ``summary(print_fn=)``);
            None only returns it.

        Returns
        -------
        str
            The table (so ``text = net.summary(print_fn=None)`` keeps it quietly).
        """
        rows = []
        width = self.n_features
        dense = 0
        for layer in self.layers:
            if isinstance(layer, Dense):
                last = dense == len(self._dense) - 1
                activation = layer.activation
                if last and self.loss.output_activation is not None:
                    activation = f"{self.loss.output_activation} (in the loss)"
                params = layer.n_in * layer.n_out + layer.n_out
                rows.append((f"Dense({layer.n_in}, {layer.n_out})", layer.n_out, activation,
                             f"{params:,}"))
                width = layer.n_out
                dense += 1
            elif isinstance(layer, Dropout):
                rows.append((f"Dropout({layer.rate:g})", width, "-", "0"))
            else:
                rows.append((f"Rescaling({layer.scale:.6g}, offset={layer.offset:.6g})", width,
                             "-", "0"))
        head = ("#", "Layer", "Output shape", "Activation", "Parameters")
        table = [head] + [(str(i), name, f"(None, {out})", act, params)
                          for i, (name, out, act, params) in enumerate(rows)]
        widths = [max(len(row[c]) for row in table) for c in range(len(head))]

        def line(row):
            cells = [row[c].rjust(widths[c]) if c in (0, 4) else row[c].ljust(widths[c])
                     for c in range(len(head))]
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(head))
        n_bytes = self.n_params * self.dtype.itemsize
        lines = [f"Network: loss {self.loss.name!r}, {self.dtype.name}, backend "
                 f"{self.backend.name!r}", "=" * len(rule), line(head), rule]
        lines += [line(row) for row in table[1:]]
        lines += ["=" * len(rule), f"Total parameters: {self.n_params:,}",
                  f"Parameter memory: {_format_bytes(n_bytes)}, {self.dtype.name}"]
        opt = self.optimizer
        if opt is not None and opt.state is not None:
            state = opt.state["s1"].nbytes + opt.state["s2"].nbytes
            steps = opt.state["t"]
            lines.append(f"Optimizer: {type(opt).__name__}, state {_format_bytes(state)} "
                         f"after {steps:,} step{'' if steps == 1 else 's'}")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self):
        layers = ", ".join(map(repr, self.layers))
        return (f"Network([{layers}], loss={self.loss.name!r}, dtype={self.dtype.name!r}, "
                f"backend={self.backend.name!r})")


# ---- helpers ---------------------------------------------------------------

def _format_bytes(n):
    """``n`` bytes as "812 bytes", "397.5 KiB (407,080 bytes)" or "1.50 MiB (1,572,864 bytes)"."""
    if n < 1024:
        return f"{n:,} bytes"
    if n < 1024 ** 2:
        return f"{n / 1024:.1f} KiB ({n:,} bytes)"
    return f"{n / 1024 ** 2:.2f} MiB ({n:,} bytes)"


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


def _check_weights(sample_weight, n):
    """``sample_weight`` as float64 of shape (n,), or the empty array for None."""
    if sample_weight is None:
        return _data.NO_WEIGHTS
    if hasattr(sample_weight, "toarray"):
        raise TypeError("sample_weight: sparse matrices are not supported")
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be numeric, got dtype {w.dtype}")
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must have shape ({n},) (one weight per sample), "
                         f"got {w.shape}")
    w = np.ascontiguousarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"sample_weight contains NaN or inf (first at index "
                         f"{int(np.argmin(np.isfinite(w)))})")
    if (w < 0).any():
        raise ValueError(f"sample_weight must be non-negative; found {w[w < 0][0]:g} at index "
                         f"{int(np.argmax(w < 0))}")
    if not w.any():
        raise ValueError("sample_weight is zero for every sample")
    return w


def _labels_of(data, n_classes):
    """The class of every row of cross-entropy ``data``: its label, or its target's arg-max.

    Read in chunks (a memory map is not loaded whole); a label out of range
    (possible only in a map, which is checked as it is read) raises.
    """
    labels = np.empty(data.n, np.int64)
    for start in range(0, data.n, CHUNK_ROWS):
        stop = min(data.n, start + CHUNK_ROWS)
        if data.code == _kl.CE_LABELS:
            chunk = data.y.take(slice(start, stop), np.int64)[:, 0]
            bad = (chunk < 0) | (chunk >= n_classes)
            if bad.any():
                raise _data.bad_label_error(data.y, start + int(np.argmax(bad)), n_classes)
        else:
            chunk = data.y.take(slice(start, stop), np.float64).argmax(axis=1)
        labels[start:stop] = chunk
    return labels


CHUNK_ROWS = 65536
_RANGE_ROWS = 4096


def _widen(old, new):
    """The union of two ``(min, max)`` ranges (either may be None)."""
    if old is None:
        return new
    return min(old[0], new[0]), max(old[1], new[1])


def _check_finite_chunked(src, dtype):
    """Raise on the first value of ``src`` that is not finite in ``dtype`` (bounded memory)."""
    if src.sparse:
        return                               # checked when it was converted
    for start in range(0, src.n, CHUNK_ROWS):
        chunk = src.take(slice(start, start + CHUNK_ROWS), dtype)
        if not _kt.all_finite(chunk.reshape(-1)):
            flat = int(np.argmax(~np.isfinite(chunk).ravel()))
            raise _data.bad_value_error(src, start * src.width + flat, dtype)


def _max_abs(src):
    """The largest ``|x|`` of a source (in chunks; a sparse one from its stored values)."""
    if src.sparse:
        data = src.csr[2]
        return float(np.abs(data).max()) if data.size else 0.0
    array = src.array
    return max(float(np.abs(np.asarray(array[start:start + CHUNK_ROWS], np.float64)).max())
               for start in range(0, array.shape[0], CHUNK_ROWS))


def _check_unit_interval_chunked(targets, loss_name):
    """Targets of a classification loss lie in [0, 1] (a memory map, in chunks)."""
    for start in range(0, targets.shape[0], CHUNK_ROWS):
        chunk = np.asarray(targets[start:start + CHUNK_ROWS])
        if ((chunk < 0) | (chunk > 1)).any():
            raise ValueError(f"{loss_name} targets must lie in [0, 1]")
