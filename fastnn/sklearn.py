"""scikit-learn estimators trained by fastnn: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in replacements for :mod:`sklearn.neural_network`'s estimators of the same
names: the same parameters with the same defaults and meaning, the same
fitted attributes, the same stopping rule and the same random stream, so that
for float64 ``X`` and ``alpha=0`` an sgd fit follows scikit-learn's to
rounding. With ``"sgd"`` and ``"adam"`` each epoch is one call of
:meth:`fastnn.Network.fit`; the network keeps the optimizer and its state
between calls. ``"lbfgs"`` runs SciPy's L-BFGS-B exactly as scikit-learn
calls it (options, ``max_fun``, ``n_iter_``, ``loss_``, the
ConvergenceWarning) over fastnn's full-batch loss and gradient plus
scikit-learn's L2 term; after 30 iterations its ``coefs_`` match
scikit-learn's to 1e-8 relative or better (the tests ask 1e-6).

This module imports scikit-learn; ``import fastnn`` does not import it::

    from fastnn.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=0).fit(X, y)

Differences from scikit-learn
-----------------------------
* Sparse ``X`` (CSR, CSC, or any scipy.sparse format, which is converted to
  CSR as scikit-learn does) trains and predicts without being densified: the
  first layer runs over the stored entries (see ``fastnn.kernels.sparse``).
  With shuffling, each epoch's rows are copied in their shuffled order
  (O(nnz)).
* ``sample_weight`` works as in scikit-learn (each batch's loss is
  ``sum w_i l_i / sum w_i``; lbfgs adds ``alpha/2 ||W||^2 / sum w``; the
  early-stopping split carries the weights and scores with them), with three
  differences: negative weights are refused; a mini-batch whose weights sum
  to 0 raises a ``ValueError`` (scikit-learn divides by zero); and with sgd
  and adam the weight decay is ``alpha / (batch_size * mean(w))``, exactly
  scikit-learn's ``alpha / sum(w over the batch)`` when every batch has the
  same total weight (``loss_`` adds scikit-learn's penalty of each batch).
* L2 penalty with sgd and adam (lbfgs has scikit-learn's exactly).
  scikit-learn adds ``alpha/2 ||W||^2 / n_batch`` to each batch's loss, so
  each weight gradient gains ``alpha W / n_batch``; biases are not
  penalized. fastnn's optimizers take one ``weight_decay`` for every
  parameter, set here to ``alpha / batch_size``. So (1) biases are decayed
  too, by that same factor, and (2) a last, smaller batch of an epoch is
  decayed as if it were full. Otherwise the updates are scikit-learn's
  exactly. ``loss_`` adds the penalty at the mean of the squared weight
  norms at the start and the end of each epoch (scikit-learn: at each
  batch's weights).
* Adam: fastnn adds ``epsilon`` to the bias-corrected ``sqrt(v_hat)``
  (PyTorch), scikit-learn to the uncorrected ``sqrt(v)``.
* ``learning_rate="invscaling"``/``"adaptive"`` (sgd) change the learning
  rate between epochs as scikit-learn does (fastnn's momentum buffer is
  rescaled so that past steps keep their size, as in scikit-learn).
* Two extra parameters. ``dtype=None`` (the default) follows ``X`` as
  scikit-learn does: float32 ``X`` trains in float32, anything else in
  float64, and ``coefs_``, ``intercepts_`` and the outputs have that dtype.
  ``dtype="float32"`` trains in float32 whatever ``X`` (float32 arithmetic,
  half the memory); outputs then come in the wider of the network's dtype
  and ``X``'s, as ``X @ coefs_`` would. ``threads`` caps the BLAS threads.
* Momentum must be below 1 (scikit-learn accepts 1).
* ``partial_fit`` is unavailable (``hasattr`` is False) with
  ``solver="lbfgs"`` in both estimators; scikit-learn's regressor keeps it
  (its ``available_if`` check is never called) and runs a whole L-BFGS fit.
* lbfgs on float32 ``X`` keeps float32 ``coefs_`` (scikit-learn hands back
  float64 ones). Log-losses are computed from the logits, not from
  probabilities clipped to ``[eps, 1 - eps]``: they differ only where a
  probability is within machine epsilon of 0 or 1.
* A forward pass that overflows makes ``predict`` raise ``FloatingPointError``
  (scikit-learn returns inf or NaN); the validation scores of early stopping
  are NaN then, as scikit-learn's.
* Initialization is scikit-learn's (Glorot uniform for weights and biases,
  drawn from ``random_state`` in the same order), not fastnn's He/Glorot.
"""

import math
import numbers
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils import shuffle as _shuffle
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from .layers import Dense
from .network import Network
from .optimizers import SGD, Adam
from .reference import layer_views

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6
    def validate_data(estimator, X="no_validation", y="no_validation", reset=True, **kwargs):
        return estimator._validate_data(X, y, reset=reset, **kwargs)

try:
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:  # scikit-learn < 1.6: its scipy still takes iprint
    def _get_additional_lbfgs_options_dict(key, value):
        return {key: value}

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's hidden activation name -> fastnn's.
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
# scikit-learn's out_activation_ -> the fastnn loss that applies it.
OUTPUT_LOSSES = {"softmax": "cross_entropy", "logistic": "binary_cross_entropy",
                 "identity": "mse", "exp": "poisson"}
DTYPES = {"float32": np.float32, "float64": np.float64}
LEARNING_RATES = ("constant", "invscaling", "adaptive")


def _make_sgd(est, weight_decay):
    nesterov = est.nesterovs_momentum and est.momentum > 0
    return SGD(lr=est.learning_rate_init, momentum=est.momentum, nesterov=nesterov,
               weight_decay=weight_decay)


def _make_adam(est, weight_decay):
    return Adam(lr=est.learning_rate_init, betas=(est.beta_1, est.beta_2), eps=est.epsilon,
                weight_decay=weight_decay)


SOLVERS = {"sgd": _make_sgd, "adam": _make_adam}
STOCHASTIC_SOLVERS = tuple(SOLVERS)
# Sparse X as scikit-learn's MLP takes it (others are converted to CSR by validate_data).
SPARSE_FORMATS = ("csr", "csc")
NONFINITE = ("Solver produced non-finite parameter weights. The input data may contain large "
             "values and need to be preprocessed.")


class _OptimizerView:
    """The estimator's ``_optimizer``: the fastnn optimizer, seen as scikit-learn's.

    ``learning_rate`` is what scikit-learn's SGDOptimizer/AdamOptimizer hold
    there: the sgd rate, or Adam's bias-corrected ``lr sqrt(1 - beta_2^t) /
    (1 - beta_1^t)`` after ``t`` steps.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer

    @property
    def learning_rate(self):
        opt = self.optimizer
        t = 0 if opt.state is None else opt.state["t"]
        if isinstance(opt, Adam) and t > 0:
            beta_1, beta_2 = opt.betas
            return opt.lr * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        return opt.lr

    def set_lr(self, lr):
        """Change the sgd learning rate as scikit-learn does.

        scikit-learn's velocity holds past steps (``lr`` times gradients);
        fastnn's momentum buffer holds gradients and is scaled by the current
        ``lr``. Rescaling the buffer by ``old / new`` keeps the past steps.
        """
        opt = self.optimizer
        if opt.momentum > 0 and opt.state is not None:
            opt.state["s1"] *= opt.lr / lr
        opt.lr = lr


# ---- parameter validation ----------------------------------------------------

def _interval(low, high, closed):
    """A check that a real number lies in ``low..high`` (``closed`` as in sklearn)."""
    left = closed in ("left", "both")
    right = closed in ("right", "both")

    def check(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            return False
        above = low is None or (value >= low if left else value > low)
        below = high is None or (value <= high if right else value < high)
        return above and below

    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    return check, f"a real number in {'[' if left else '('}{lo}, {hi}{']' if right else ')'}"


def _integer(low):
    def check(value):
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                and value >= low)
    return check, f"an integer >= {low}"


def _options(*names):
    return (lambda value: isinstance(value, str) and value in names), \
        "one of " + ", ".join(repr(n) for n in names)


def _boolean():
    return (lambda value: isinstance(value, (bool, np.bool_))), "a bool"


def _any_of(*rules):
    return (lambda value: any(check(value) for check, _ in rules)), \
        " or ".join(text for _, text in rules)


def _hidden_sizes():
    def check(value):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return value >= 1
        try:
            sizes = list(value)
        except TypeError:
            return False
        return all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
                   for s in sizes)
    return check, "a positive integer or a sequence of positive integers"


def _threads():
    return (lambda value: value is None or _integer(1)[0](value)), "None or an integer >= 1"


PARAMETER_RULES = {
    "hidden_layer_sizes": _hidden_sizes(),
    "activation": _options(*ACTIVATIONS),
    "solver": _options("lbfgs", *SOLVERS),
    "alpha": _interval(0, None, "left"),
    "batch_size": _any_of(_options("auto"), _integer(1)),
    "learning_rate": _options(*LEARNING_RATES),
    "learning_rate_init": _interval(0, None, "neither"),
    "power_t": _interval(0, None, "left"),
    "max_iter": _integer(1),
    "shuffle": _boolean(),
    "tol": _interval(0, None, "left"),
    "warm_start": _boolean(),
    # fastnn's momentum must be < 1 (scikit-learn allows 1).
    "momentum": _interval(0, 1, "left"),
    "nesterovs_momentum": _boolean(),
    "early_stopping": _boolean(),
    "validation_fraction": _interval(0, 1, "left"),
    "beta_1": _interval(0, 1, "left"),
    "beta_2": _interval(0, 1, "left"),
    "epsilon": _interval(0, None, "neither"),
    "n_iter_no_change": _any_of(_integer(1), ((lambda v: v == np.inf), "np.inf")),
    "max_fun": _integer(1),
    "dtype": ((lambda value: value is None or _dtype_name(value) in DTYPES),
              "None, 'float32' or 'float64'"),
    "threads": _threads(),
}


# ---- the shared estimator ------------------------------------------------------

class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: fit, partial_fit, the network.

    Subclasses define ``_validate_input``, ``_targets``, ``_score``,
    ``_out_activation`` and ``_loss_scale``.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.threads = threads

    # ---- checks -------------------------------------------------------------

    _parameter_rules = PARAMETER_RULES

    def _check_params(self):
        for name, (check, wanted) in self._parameter_rules.items():
            value = getattr(self, name)
            if not check(value):
                raise ValueError(f"The '{name}' parameter of {type(self).__name__} must be "
                                 f"{wanted}; got {value!r}.")

    def _hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        return [int(sizes)] if isinstance(sizes, numbers.Integral) else [int(s) for s in sizes]

    def _input_dtype(self):
        """What ``validate_data`` converts ``X`` to: ``dtype``, else float32 or float64 as X."""
        return (np.float64, np.float32) if self.dtype is None else DTYPES[_dtype_name(self.dtype)]

    # ---- the network ----------------------------------------------------------

    def _build_network(self, layer_units, dtype):
        act = ACTIVATIONS[self.activation]
        layers = [Dense(n_in, n_out, act)
                  for n_in, n_out in zip(layer_units[:-2], layer_units[1:-1])]
        layers.append(Dense(layer_units[-2], layer_units[-1], "identity"))
        return Network(layers, loss=OUTPUT_LOSSES[self.out_activation_],
                       dtype=dtype, seed=0, threads=self.threads)

    def _bind_coefs(self):
        """Point ``coefs_``/``intercepts_`` at the network's layer arrays (views)."""
        self.coefs_ = [layer.W for layer in self._net.layers]
        self.intercepts_ = [layer.b for layer in self._net.layers]

    def _network(self):
        """The network, first taking in ``coefs_``/``intercepts_`` a user replaced."""
        net = self._net
        if any(W is not layer.W or b is not layer.b
               for W, b, layer in zip(self.coefs_, self.intercepts_, net.layers)):
            net.set_params(_pack(self.coefs_, self.intercepts_))
            self._bind_coefs()
        return net

    def _initialize(self, Y, layer_units, dtype):
        """First fit: attributes, network and scikit-learn's initialization."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self._net = self._build_network(layer_units, dtype)
        # scikit-learn's Glorot-uniform draws, in its order, from its random state.
        factor = 2.0 if self.activation == "logistic" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)))
            intercepts.append(self._random_state.uniform(-bound, bound, fan_out))
        self._net.set_params(_pack(coefs, intercepts))
        self._bind_coefs()
        self._best_params = self._net.get_params()
        self._optimizer = None
        if self.solver in STOCHASTIC_SOLVERS:       # scikit-learn sets these for them only
            for name, value in self._stochastic_defaults().items():
                setattr(self, name, value)

    def _stochastic_defaults(self):
        """The attributes a first sgd/adam fit starts with."""
        return {"loss_curve_": [], "_no_improvement_count": 0,
                "best_loss_": None if self.early_stopping else np.inf,
                "validation_scores_": [] if self.early_stopping else None,
                "best_validation_score_": -np.inf if self.early_stopping else None}

    def _adopt_coefs(self, dtype):
        """A network for ``coefs_``/``intercepts_`` set by hand, never fitted.

        scikit-learn's ``partial_fit`` (and a warm start) trains from such
        arrays; attributes a first fit sets and the user did not are set as
        that fit would.
        """
        layer_units = [self.coefs_[0].shape[0]] + [np.shape(W)[1] for W in self.coefs_]
        if not hasattr(self, "out_activation_"):
            self.out_activation_ = self._out_activation()
        self.n_outputs_ = layer_units[-1]
        self.n_layers_ = len(layer_units)
        self._net = self._build_network(layer_units, dtype)
        self._net.set_params(_pack(self.coefs_, self.intercepts_))
        self._bind_coefs()
        self._best_params = self._net.get_params()
        self._optimizer = None
        for name in ("n_iter_", "t_"):
            if not hasattr(self, name):
                setattr(self, name, 0)

    # ---- fitting -------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and ``y`` (one network epoch per iteration).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classifier; 2-D 0/1 for multi-label) or targets.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights: each batch's loss is ``sum w_i l_i / sum w_i``
            (see the module docstring).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y, y_true = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
            if (sample_weight < 0).any():
                raise ValueError(f"sample_weight must be non-negative for fastnn.sklearn; found "
                                 f"{sample_weight[sample_weight < 0][0]:g} at index "
                                 f"{int(np.argmax(sample_weight < 0))}")
        layer_units = [X.shape[1], *self._hidden_layer_sizes(), Y.shape[1]]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, layer_units, X.dtype)
        else:
            if not hasattr(self, "_net"):
                self._adopt_coefs(X.dtype)
            fitted = [l.n_in for l in self._net.layers] + [self._net.n_outputs]
            if fitted != layer_units:
                raise ValueError(f"warm_start/partial_fit needs the fitted layer sizes "
                                 f"{fitted}; got {layer_units}")
        X = _network_input(X, self._net.dtype)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sample_weight)
        else:
            self._fit_stochastic(X, Y, y_true, incremental, sample_weight)
        if not np.isfinite(self._net.get_params()).all():
            raise ValueError(NONFINITE)
        return self

    # ---- L-BFGS ---------------------------------------------------------------------

    def _lbfgs_objective(self, X, Y, sample_weight=None):
        """scikit-learn's L-BFGS objective over fastnn's flat parameter vector.

        Returns ``f(theta) -> (loss, gradient)`` (float64) for ``theta`` laid
        out like ``Network.get_params()``: fastnn's full-batch loss and
        gradient (weighted, ``sum w_i l_i / sum w_i``, with ``sample_weight``)
        plus scikit-learn's L2 term ``alpha/2 ||W||^2 / n`` (gradient ``alpha W
        / n``, weights only; ``n`` is ``sum w`` with weights). As in
        scikit-learn the squared-error value is averaged over the outputs
        while its gradient is that of their sum (``_loss_scale``). ``f``
        leaves ``theta`` in the network.
        """
        net = self._network()
        net.threads = self.threads
        arrays = net._batch_arrays(net._check_data(X, self._targets(Y), sample_weight))
        n = arrays[0].shape[0] if sample_weight is None else float(np.sum(sample_weight))
        is_weight = np.zeros(net.n_params, bool)
        for W in layer_views(is_weight, net._spec.sizes)[0]:
            W[...] = True
        alpha, scale = float(self.alpha), self._loss_scale()

        def loss_and_gradient(theta):
            net.set_params(theta)
            loss, grad = net._loss_and_flat_gradient(*arrays)
            grad = grad.astype(np.float64)
            W = theta[is_weight]
            grad[is_weight] += alpha / n * W
            return loss / scale + 0.5 * alpha * float(W @ W) / n, grad

        return loss_and_gradient

    def _fit_lbfgs(self, X, Y, sample_weight=None):
        """SciPy's L-BFGS-B with scikit-learn's options, over fastnn's loss and gradient."""
        objective = self._lbfgs_objective(X, Y, sample_weight)
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        result = scipy.optimize.minimize(
            objective, self._net.get_params().astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = result.fun
        self._net.set_params(result.x)

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight=None, activations=None,
                         deltas=None, coef_grads=None, intercept_grads=None):
        """The L-BFGS loss and gradient in scikit-learn's own layout (its private API).

        Parameters
        ----------
        packed_coef_inter : ndarray of shape (n_params,)
            Every ``coefs_`` raveled, then every ``intercepts_`` (scikit-learn's
            packing); loaded into the model, as scikit-learn does.
        X : array-like of shape (n_samples, n_features)
        y : ndarray of shape (n_samples, n_outputs)
            Targets as scikit-learn's fit holds them (the LabelBinarizer's
            indicator matrix for a classifier).
        sample_weight : array-like of shape (n_samples,), optional
        activations, deltas : ignored
            scikit-learn's work buffers.
        coef_grads, intercept_grads : list, optional
            Filled with the per-layer gradients, as scikit-learn does.

        Returns
        -------
        loss : float
        grad : ndarray of shape (n_params,), packed like ``packed_coef_inter``
        """
        check_is_fitted(self)
        net = self._network()
        order = _sklearn_order(net)
        theta = np.empty(net.n_params)
        theta[order] = packed_coef_inter
        Y = np.asarray(y)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        X = _network_input(X if scipy.sparse.issparse(X) else np.asarray(X), net.dtype)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, np.float64)
        loss, grad = self._lbfgs_objective(X, Y, sample_weight)(theta)
        Ws, bs = layer_views(grad, net._spec.sizes)
        for buffer, arrays in ((coef_grads, Ws), (intercept_grads, bs)):
            if buffer is not None:
                buffer[:] = [a.copy() for a in arrays]
        return loss, grad[order]

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

    # ---- sgd and adam ---------------------------------------------------------------

    def _fit_stochastic(self, X, Y, y_true, incremental, sample_weight=None):
        net = self._network()
        net.threads = self.threads
        for name, value in self._stochastic_defaults().items():
            if not hasattr(self, name):     # coefs_ set by hand, or a warm start after lbfgs
                setattr(self, name, value)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        targets = self._targets(Y)
        if self.early_stopping:
            # scikit-learn stratifies only single-output classification, on its
            # bool-encoded labels (its errors name them: ['True']).
            stratify = Y.astype(bool) if (self._is_classifier and self.n_outputs_ == 1) \
                else None
            train, val = train_test_split(np.arange(X.shape[0]), random_state=self._random_state,
                                          test_size=self.validation_fraction,
                                          stratify=stratify)
            if val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            X_val, y_val = X[val], y_true[val]
            X_train, y_train = X[train], targets[train]
            w_train, w_val = (None, None) if sample_weight is None else \
                (sample_weight[train], sample_weight[val])
        else:
            X_train, y_train, X_val, y_val = X, targets, None, None
            w_train, w_val = sample_weight, None

        n_samples = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        # scikit-learn's penalty gradient is alpha W / (the batch's total weight).
        mean_weight = 1.0 if w_train is None else float(w_train.mean())
        weight_decay = self.alpha / (batch_size * mean_weight) if mean_weight > 0 else 0.0
        if not incremental or self._optimizer is None:
            self._optimizer = _OptimizerView(SOLVERS[self.solver](self, weight_decay))
        optimizer = self._optimizer.optimizer
        optimizer.weight_decay = weight_decay
        n_batches = -(-n_samples // batch_size)

        sample_idx = np.arange(n_samples)
        # Each epoch's samples in their shuffled order, in reused buffers
        # (np.take with mode="clip" copies without buffering; indices are valid).
        sparse = scipy.sparse.issparse(X_train)
        X_epoch, y_epoch = (X_train if sparse else np.empty_like(X_train),
                            np.empty_like(y_train)) if self.shuffle else (X_train, y_train)
        w_epoch = w_train
        squares_start = self._squared_weights() if self.alpha else 0.0
        diverged = False
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    # scikit-learn's own shuffle call, so the sample order matches its.
                    sample_idx = _shuffle(sample_idx, random_state=self._random_state)
                    if not diverged:
                        if sparse:              # the shuffled rows, O(nnz)
                            X_epoch = X_train[sample_idx]
                        else:
                            np.take(X_train, sample_idx, axis=0, out=X_epoch, mode="clip")
                        np.take(y_train, sample_idx, axis=0, out=y_epoch, mode="clip")
                        if w_train is not None:
                            w_epoch = w_train[sample_idx]
                if not diverged:
                    try:
                        history = net.fit(X_epoch, y_epoch, epochs=1, batch_size=batch_size,
                                          optimizer=optimizer, verbose=0, shuffle=False,
                                          sample_weight=w_epoch)
                    except FloatingPointError as exc:
                        if not self.early_stopping:
                            raise ValueError(NONFINITE) from exc
                        # scikit-learn trains on with non-finite weights until
                        # max_iter (NaN scores never count as "no improvement")
                        # and then restores the best ones: so do we, without
                        # the pointless arithmetic.
                        diverged = True
                self.n_iter_ += 1
                if diverged:
                    self.loss_ = np.nan
                else:
                    penalty = 0.0
                    if self.alpha:
                        # scikit-learn adds each batch's alpha/2 ||W||^2 / (its total
                        # weight) at the weights of that batch, averaged with the batch
                        # sizes; the trapezoid of the epoch's two ends for ||W||^2.
                        squares_end = self._squared_weights()
                        penalty = (0.25 * self.alpha * (squares_start + squares_end)
                                   * _batch_factor(w_epoch, batch_size, n_batches)
                                   / n_samples)
                        squares_start = squares_end
                    self.loss_ = history.history["loss"][0] / self._loss_scale() + penalty
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                self._update_no_improvement_count(X_val, y_val, diverged, w_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._optimizer.set_lr(float(self.learning_rate_init)
                                           / (self.t_ + 1) ** self.power_t)

                if self._no_improvement_count > self.n_iter_no_change:
                    if self.early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if self._trigger_stopping(msg):
                        break
                    self._no_improvement_count = 0

                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and "
                                  "the optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")

        if self.early_stopping:
            net.set_params(self._best_params)

    def _squared_weights(self):
        return sum(float(np.dot(W.ravel(), W.ravel())) for W in self.coefs_)

    def _trigger_stopping(self, msg):
        """scikit-learn's optimizers' rule: stop, or (sgd, adaptive) divide lr by 5."""
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._optimizer.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._optimizer.set_lr(self._optimizer.learning_rate / 5.0)
        if self.verbose:
            print(msg + " Setting learning rate to %f" % self._optimizer.learning_rate)
        return False

    def _update_no_improvement_count(self, X_val, y_val, diverged=False, w_val=None):
        if self.early_stopping:
            score = np.nan if diverged else self._score(X_val, y_val, w_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._net.get_params()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # ---- prediction ---------------------------------------------------------------

    def _forward(self, X, check_input=True):
        """Output-layer values after the output activation, shape (n_samples, n_outputs).

        Computed in the network's dtype; returned in the wider of it and X's
        (scikit-learn's ``X @ coefs_`` promotes the same way).
        """
        if check_input:
            X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                              accept_sparse=SPARSE_FORMATS)
        net = self._network()
        out = net.predict_proba(_network_input(X, net.dtype))
        return out.astype(np.result_type(X.dtype, net.dtype), copy=False)

    def _score_with(self, X, y, score_function, sample_weight=None):
        try:
            y_pred = self._predict(X, check_input=False)
        except FloatingPointError:      # the forward pass overflowed
            return np.nan
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    # ---- pickling --------------------------------------------------------------------

    def __getstate__(self):
        # The Network is rebuilt from coefs_/intercepts_ on load, into fresh
        # writable arrays: joblib may unpickle arrays as read-only memmaps
        # (scikit-learn's check_estimators_pickle(readonly_memmap=True)).
        state = dict(super().__getstate__())
        net = state.pop("_net", None)
        if net is not None:
            state["_net_spec"] = ([(l.n_in, l.n_out, l.activation) for l in net.layers],
                                  net.loss.name, net.dtype.name, net.threads)
        return state

    def __setstate__(self, state):
        state = dict(state)
        spec = state.pop("_net_spec", None)
        super().__setstate__(state)
        if spec is not None:
            layers, loss, dtype, threads = spec
            self._net = Network([Dense(*layer) for layer in layers], loss=loss, dtype=dtype,
                                seed=0, threads=threads)
            self._net.set_params(_pack(self.coefs_, self.intercepts_))
            self._bind_coefs()


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastnn.

    scikit-learn's :class:`sklearn.neural_network.MLPClassifier`; see the
    module docstring for the few differences. Multiclass ``y`` trains a
    softmax output with cross-entropy, binary ``y`` one logistic output, and a
    2-D 0/1 ``y`` (multi-label) one logistic output per label with binary
    cross-entropy.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Width of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default "relu"
        Hidden activation.
    solver : {"adam", "sgd", "lbfgs"}, default "adam"
        "lbfgs" is SciPy's L-BFGS-B over the whole data set (``max_iter``
        iterations, ``max_fun`` loss evaluations, gradient tolerance ``tol``).
    alpha : float, default 0.0001
        L2 penalty ``alpha/2 ||W||^2 / n_batch`` per batch (weight decay
        ``alpha / batch_size``).
    batch_size : int or "auto", default "auto"
        ``min(200, n_samples)`` for "auto".
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        Schedule of the sgd solver's learning rate, updated between epochs.
    learning_rate_init : float, default 0.001
    power_t : float, default 0.5
        Exponent of "invscaling".
    max_iter : int, default 200
        Epochs.
    shuffle : bool, default True
    random_state : int, RandomState or None
        Initialization, shuffles and the early-stopping split, drawn as
        scikit-learn draws them.
    tol : float, default 1e-4
    verbose : bool, default False
    warm_start : bool, default False
    momentum : float in [0, 1), default 0.9
    nesterovs_momentum : bool, default True
    early_stopping : bool, default False
    validation_fraction : float, default 0.1
    beta_1, beta_2, epsilon : float
        Adam's.
    n_iter_no_change : int or np.inf, default 10
    max_fun : int, default 15000
        lbfgs: at most this many loss and gradient evaluations.
    dtype : {None, "float32", "float64"}, default None
        Precision of training and of the fitted arrays; None follows ``X``
        (float32 for float32 ``X``, else float64), as scikit-learn does.
    threads : int or None, default None
        BLAS threads while fitting and predicting; None keeps the default.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coefs_ : list of ndarray of shape (n_in, n_out)
        Views of the network's weights.
    intercepts_ : list of ndarray of shape (n_out,)
    loss_ : float
        Loss (with the L2 penalty) of the last epoch, or of the lbfgs solution.
    loss_curve_ : list of float
        sgd/adam only, like ``best_loss_`` and the validation attributes.
    best_loss_ : float or None
    validation_scores_ : list of float or None
        Validation accuracy per epoch with ``early_stopping``.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs, or L-BFGS iterations.
    t_ : int
        Training samples seen (sgd/adam; 0 for lbfgs).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` had string column names.
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : {"softmax", "logistic"}
    """

    _is_classifier = True

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _loss_scale(self):
        return 1.0

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, dtype=self._input_dtype(),
                             reset=reset, accept_sparse=SPARSE_FORMATS)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        Y = self._label_binarizer.transform(y)
        return X, Y, y

    def _targets(self, Y):
        if Y.shape[1] > 1 and self._label_binarizer.y_type_ == "multiclass":
            return Y.argmax(axis=1).astype(np.int64)
        return Y.astype(self._net.dtype)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``, continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), optional
            As for :meth:`fit`.
        classes : array of shape (n_classes,), optional
            Every class of all the calls; required on the first call (except
            for multi-label ``y``).

        Returns
        -------
        self
        """
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            if getattr(self, "classes_", None) is not None:
                if not np.array_equal(self.classes_, unique_labels(classes)):
                    raise ValueError(f"`classes={classes!r}` is not the same as on last call "
                                     f"to partial_fit, was: {self.classes_!r}")
            else:
                self.classes_ = unique_labels(classes)
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predicted classes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)
            Labels from ``classes_``; the 0/1 matrix for multi-label.
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with(X, y, accuracy_score, sample_weight)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; for multi-label, each
            label's own probability.
        """
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            p = y_pred.ravel()
            return np.vstack([1 - p, p]).T
        return y_pred

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``, shape (n_samples, n_classes)."""
        y_prob = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastnn.

    scikit-learn's :class:`sklearn.neural_network.MLPRegressor`: squared
    error with an identity output, or the half Poisson deviance with a log
    link (``exp`` output); see the module docstring for the few differences.
    ``y`` may be 1-D or 2-D.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default "squared_error"
        Half squared error, or half Poisson deviance of the means
        ``exp(output)`` (``y >= 0``). First, as in scikit-learn's signature.
    hidden_layer_sizes, activation, ...
        Those of :class:`MLPClassifier`.

    Attributes
    ----------
    coefs_, intercepts_, loss_, loss_curve_, best_loss_, n_iter_, t_,
    n_features_in_, feature_names_in_, n_layers_, n_outputs_
        As for :class:`MLPClassifier`; ``loss_`` is, plus the L2 penalty,
        half the mean squared error averaged over the outputs, or the half
        Poisson deviance ``mean(y log(y / mu) - y + mu)`` summed over them (as
        scikit-learn reports each).
    validation_scores_, best_validation_score_ : R^2 on the validation set.
    out_activation_ : {"identity", "exp"}
    """

    _is_classifier = False
    _parameter_rules = {**PARAMETER_RULES, "loss": _options("squared_error", "poisson")}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dtype=dtype, threads=threads)
        self.loss = loss

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _loss_scale(self):
        # fastnn's losses sum over outputs; scikit-learn's squared-error value
        # averages them (its gradient, like fastnn's, is that of the sum). Its
        # Poisson value sums them.
        return 1.0 if self.loss == "poisson" else float(self.n_outputs_)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=self._input_dtype(), reset=reset, accept_sparse=SPARSE_FORMATS)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError(f"loss='poisson' needs y >= 0 (counts or rates); y has "
                             f"{int((y < 0).sum())} negative value(s), the smallest "
                             f"{y.min():.6g}")
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, Y, y

    def _targets(self, Y):
        return np.ascontiguousarray(Y, dtype=self._net.dtype)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            As for :meth:`fit`.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            In the wider of the network's dtype and ``X``'s.
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input=check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with(X, y, r2_score, sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = True
        return tags


# ---- helpers -----------------------------------------------------------------

def _sklearn_order(net):
    """Index into fastnn's flat parameters of each entry of scikit-learn's packing.

    scikit-learn packs every ``coefs_`` (row-major), then every ``intercepts_``;
    fastnn interleaves W and b per layer.
    """
    Ws, bs = layer_views(np.arange(net.n_params), net._spec.sizes)
    return np.concatenate([W.ravel() for W in Ws] + bs)


def _batch_factor(weights, batch_size, n_batches):
    """``sum_b r_b / w_b`` over an epoch's batches (``r_b`` rows, total weight ``w_b``).

    scikit-learn's epoch loss averages each batch's ``alpha/2 ||W||^2 / w_b``
    with the batch sizes ``r_b``; without weights the sum is ``n_batches``.
    """
    if weights is None:
        return n_batches
    n = weights.shape[0]
    sums = np.add.reduceat(weights, np.arange(0, n, batch_size))
    rows = np.minimum(batch_size, n - np.arange(0, n, batch_size))
    return float(np.sum(rows / sums))


def _pack(coefs, intercepts):
    """fastnn's flat parameter layout: per layer W (row-major), then b."""
    return np.concatenate([np.ravel(a) for W, b in zip(coefs, intercepts) for a in (W, b)])


def _dtype_name(dtype):
    """``"float32"`` for "float32", ``np.float32`` or ``np.dtype("float32")``; else None."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        return None


def _network_input(X, dtype):
    """``X`` as a writeable C-contiguous array of the network's ``dtype``.

    Read-only arrays are copied: numba compiles them separately. Sparse
    ``X`` is passed on as it is (``Network`` converts it to CSR once).
    """
    if scipy.sparse.issparse(X):
        return X
    X = np.ascontiguousarray(X, dtype=dtype)
    return X if X.flags.writeable else X.copy()
