"""The ``fastnn`` command line: train, evaluate, predict and inspect models.

``fastnn train`` with no arguments trains a 64-128-64-10 relu network on the
bundled digits with Adam (lr 1e-3, batch 32, 10 epochs) and prints the test
accuracy. Run ``fastnn COMMAND --help`` for the options of each command.

Exit codes: 0 success, 1 runtime error (one line ``fastnn: error: ...`` on
stderr), 2 usage error, 130 interrupted (Ctrl-C).
"""

import argparse
import json
import math
import os
import sys
import time
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from . import __version__
from .activations import ACTIVATIONS
from .checkpoint import FORMAT_NAME as CHECKPOINT_FORMAT
from .checkpoint import read_checkpoint
from .data import is_mapped
from .datasets import _is_number, load_csv, load_digits, load_mnist, load_npy, train_test_split
from .io import layer_configs, load, read_header, save
from .layers import Dense, Rescaling
from .losses import get_loss
from .network import DTYPES, Network
from .optimizers import SGD, Adam
from .training import get_strategy
from .warmup import warmup

# Expected failures: reported as one line and exit code 1, never a traceback.
# (FileNotFoundError and ConnectionError are OSErrors; ModelFileError and
# DatasetError are ValueErrors.)
EXPECTED_ERRORS = (OSError, ValueError, TypeError, ImportError, FloatingPointError)

TEST_FRACTION = 0.2   # digits and csv: the fixed split train_test_split(..., 0.2, seed=0)
SPLIT_SEED = 0


# ----------------------------------------------------------------------------
# registries


class OptimizerChoice(NamedTuple):
    build: object       # lr -> Optimizer
    default_lr: float
    description: str


#: ``--optimizer`` name -> how to build it and its default ``--lr``.
OPTIMIZERS = {
    "adam": OptimizerChoice(lambda lr: Adam(lr), 1e-3, "Adam"),
    "momentum": OptimizerChoice(lambda lr: SGD(lr, momentum=0.9), 0.01, "SGD, momentum 0.9"),
    "sgd": OptimizerChoice(lambda lr: SGD(lr), 0.05, "plain SGD"),
}


class Split(NamedTuple):
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    rescaling: object = None     # a Rescaling first layer for raw (integer) features


def _fixed_split(X, y):
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=TEST_FRACTION,
                                                        seed=SPLIT_SEED)
    return Split(X_train, y_train, X_test, y_test)


def _digits(arg, dtype, download):
    return _fixed_split(*load_digits(dtype=dtype))


def _mnist(arg, dtype, download):
    try:
        (X_train, y_train), (X_test, y_test) = load_mnist(arg, download=download, dtype=dtype)
    except FileNotFoundError as exc:
        if download:
            raise
        raise FileNotFoundError(str(exc).replace("download=True", "--download")) from None
    return Split(X_train, y_train, X_test, y_test)


def _csv(arg, dtype, download):
    return _fixed_split(*load_csv(arg, dtype=dtype))


def _npy(arg, dtype, download):
    """A folder of .npy files, memory-mapped; integer pixels get a Rescaling(1 / max) layer."""
    (X, y), test = load_npy(arg)
    if test is None:                   # the last 20 % (views of the maps: nothing is copied)
        cut = X.shape[0] - math.ceil(TEST_FRACTION * X.shape[0])
        X, y, test = X[:cut], y[:cut], (X[cut:], y[cut:])
    rescaling = None
    if X.dtype.kind in "iu":
        rescaling = Rescaling(1.0 / np.iinfo(X.dtype).max)
    return Split(X, y, *test, rescaling)


class DataSource(NamedTuple):
    load: object        # (arg, dtype, download) -> Split
    arg: str            # "none", "optional" or "required"
    description: str


#: ``--data NAME[:ARG]`` -> loader.
DATA_SOURCES = {
    "digits": DataSource(_digits, "none", "the bundled 8x8 UCI digits, fixed 80/20 split"),
    "mnist": DataSource(_mnist, "optional",
                        "mnist[:DIR], the four IDX files in DIR (default: the cache "
                        "folder); official 60000/10000 split"),
    "csv": DataSource(_csv, "required",
                      "csv:FILE, rows 'label,feature,...' (features divided by 255), "
                      "fixed 80/20 split"),
    "npy": DataSource(_npy, "required",
                      "npy:DIR, X.npy and y.npy (and X_test.npy, y_test.npy) memory-mapped; "
                      "integer features get a Rescaling(1/max) first layer; without a test "
                      "split the last 20 %% of the rows"),
}


class DataSpec(NamedTuple):
    name: str
    arg: object         # str or None

    def __str__(self):
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    def load(self, dtype, download):
        return DATA_SOURCES[self.name].load(self.arg, dtype, download)


# ----------------------------------------------------------------------------
# argument types (ArgumentTypeError -> argparse's usage error, exit code 2)


def _data_spec(text):
    name, sep, arg = text.partition(":")
    source = DATA_SOURCES.get(name)
    if source is None:
        raise argparse.ArgumentTypeError(
            f"unknown data source {name!r}; choose from digits, mnist[:DIR], csv:FILE, npy:DIR")
    if source.arg == "none" and sep:
        raise argparse.ArgumentTypeError(f"{name} takes no ':' argument")
    if source.arg == "required" and not arg:
        raise argparse.ArgumentTypeError(f"{name} needs a path: {name}:PATH")
    return DataSpec(name, arg or None)


def _layer_sizes(text):
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 128,64, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _number(kind, low, high=None, low_inclusive=False):
    what = {int: "an integer", float: "a number"}[kind]

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        ok = (value >= low if low_inclusive else value > low) and math.isfinite(value)
        if high is not None:
            ok = ok and value < high
        if not ok:
            bound = f"{'>=' if low_inclusive else '>'} {low}"
            if high is not None:
                bound += f" and < {high}"
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text!r}")
        return value

    return parse


# ----------------------------------------------------------------------------
# parser


def build_parser():
    """The ``fastnn`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="fastnn", description="Train, evaluate and use dense neural networks (numba).",
        epilog="Exit codes: 0 success, 1 runtime error, 2 usage error, 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_help = ("data set: digits (default), mnist[:DIR], csv:FILE or npy:DIR")

    train = commands.add_parser(
        "train", help="train a network and report its test accuracy",
        description="Train a multilayer perceptron with softmax cross-entropy. With no "
                    "arguments: digits, 128,64 relu, Adam lr 1e-3, batch 32, 10 epochs.")
    train.add_argument("--data", type=_data_spec, default=DataSpec("digits", None),
                       metavar="SOURCE", help=data_help)
    train.add_argument("--download", action="store_true",
                       help="fetch missing MNIST files (into DIR, else $FASTNN_CACHE_DIR/mnist "
                            "or ~/.cache/fastnn/mnist)")
    train.add_argument("--layers", type=_layer_sizes, default=[128, 64], metavar="N,N,...",
                       help="hidden layer widths (default: 128,64)")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                       help="hidden activation (default: relu)")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam",
                       help="adam (default), momentum (SGD with momentum 0.9) or sgd")
    train.add_argument("--lr", type=_number(float, 0), default=None,
                       help="learning rate (default: " + ", ".join(
                           f"{k} {v.default_lr:g}" for k, v in OPTIMIZERS.items()) + ")")
    train.add_argument("--batch-size", type=_number(int, 1, low_inclusive=True), default=32,
                       help="samples per step (default: 32)")
    train.add_argument("--epochs", type=_number(int, 1, low_inclusive=True), default=10,
                       help="passes over the training set (default: 10)")
    train.add_argument("--seed", type=_number(int, 0, low_inclusive=True), default=0,
                       help="initialization, shuffling and validation split seed (default: 0)")
    train.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                       help="float32 (default) or float64")
    train.add_argument("--threads", type=_number(int, 1, low_inclusive=True), default=None,
                       help="threads of the training step (default: the fastest for the "
                            "load, measured as it trains)")
    train.add_argument("--shuffle", choices=("true", "block", "false"), default="true",
                       help="each epoch's order: a full permutation (default), permuted "
                            "blocks of contiguous rows with a 16 MiB shuffle buffer (for "
                            "memory-mapped data larger than the page cache), or file order")
    train.add_argument("--validation-split", type=_number(float, 0, 1, low_inclusive=True),
                       default=0.0, metavar="F",
                       help="hold out the last fraction F of the shuffled training set for "
                            "per-epoch validation (default: 0)")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel training over MPI ranks: launch with "
                            "`mpiexec -n N fastnn train --distributed ...`; rank 0 prints and "
                            "writes the files")
    train.add_argument("--save", metavar="MODEL.npz", help="save the trained model here")
    train.add_argument("--plot", metavar="CURVES.png",
                       help="save loss/accuracy curves here (.png, .pdf or .svg)")
    train.add_argument("--history", metavar="HISTORY.json",
                       help="save the per-epoch history as JSON here")
    train.add_argument("--quiet", action="store_true",
                       help="print only the test result (and errors)")
    train.set_defaults(run=_train, parser=train)

    evaluate = commands.add_parser("evaluate", help="loss and accuracy of a saved model",
                                   description="Print the loss and accuracy of a saved model "
                                               "on the test split of a data set.")
    evaluate.add_argument("model", metavar="MODEL.npz")
    evaluate.add_argument("--data", type=_data_spec, default=DataSpec("digits", None),
                          metavar="SOURCE", help=data_help)
    evaluate.add_argument("--download", action="store_true", help="fetch missing MNIST files")
    evaluate.set_defaults(run=_evaluate, parser=evaluate)

    predict = commands.add_parser("predict", help="predict with a saved model",
                                  description="Predict one line per input row.")
    predict.add_argument("model", metavar="MODEL.npz")
    predict.add_argument("--input", required=True, metavar="FILE",
                         help=".npy array of shape (n, n_features), or .csv rows of feature "
                              "values (an optional header line)")
    predict.add_argument("--output", metavar="FILE",
                         help="write the predictions here (default: print them)")
    predict.add_argument("--scale", type=_number(float, 0), default=1.0, metavar="S",
                         help="divide the inputs by S first, e.g. 255 for raw MNIST pixels or "
                              "16 for raw digits (default: 1, use them as given)")
    predict.set_defaults(run=_predict, parser=predict)

    info = commands.add_parser("info", help="describe a saved model or a checkpoint",
                               description="Print a saved model's architecture and metadata, "
                                           "or a training checkpoint's (with its epoch, "
                                           "optimizer state and history).")
    info.add_argument("model", metavar="FILE.npz", help="a model file (fastnn.save, --save) "
                                                        "or a checkpoint (fit(checkpoint=...))")
    info.set_defaults(run=_info, parser=info)

    export = commands.add_parser("export", help="write a saved model as an ONNX graph",
                                 description="Write a saved model as an ONNX graph whose output "
                                             "is predict_proba (needs the onnx package).")
    export.add_argument("model", metavar="MODEL.npz")
    export.add_argument("output", metavar="MODEL.onnx")
    export.set_defaults(run=_export, parser=export)
    return parser


# ----------------------------------------------------------------------------
# commands


def _train(args, parser):
    if args.download and args.data.name != "mnist":
        parser.error("--download only applies to --data mnist")
    strategy = get_strategy("mpi" if args.distributed else None)
    say = _printer(args.quiet or not strategy.writer)
    with strategy.collective():          # distributed: every rank gets past here, or none
        for path in (args.save, args.plot, args.history):
            _check_writable(path)
        if args.plot:
            from .plotting import plot_format

            plot_format(args.plot)     # the extension is checked before training, not after
            _require_matplotlib()
        data = args.data.load(args.dtype, args.download)
        _check_classes(args.data, data.y_train)
        n_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
        X_train, y_train, validation_data = _validation_split(data.X_train, data.y_train,
                                                              args.validation_split, args.seed)
        sizes = [data.X_train.shape[1], *args.layers, n_classes]
        layers = [Dense(n_in, n_out, args.activation)
                  for n_in, n_out in zip(sizes[:-2], sizes[1:-1])]
        layers.append(Dense(sizes[-2], sizes[-1]))
        if data.rescaling is not None:
            layers.insert(0, data.rescaling)
        net = Network(layers, loss="cross_entropy", dtype=args.dtype, seed=args.seed,
                      threads=args.threads)
        choice = OPTIMIZERS[args.optimizer]
        optimizer = choice.build(args.lr if args.lr is not None else choice.default_lr)

    val = f", {len(validation_data[0])} validation" if validation_data else ""
    say(f"data: {args.data} ({len(X_train)} train{val}, "
        f"{_plural(len(data.X_test), 'test sample')}; {_plural(sizes[0], 'feature')}, "
        f"{_plural(n_classes, 'class')})")
    say(f"network: {_architecture(layer_configs(net), net.loss.name)} "
        f"({net.n_params:,} parameters, {args.dtype})")
    say(f"optimizer: {optimizer!r}, batch size {args.batch_size}, "
        f"{_plural(args.epochs, 'epoch')}")
    # Compile what this run uses: its optimizer's step (the generic one for momentum).
    lean = args.optimizer if args.optimizer in ("adam", "sgd") else None
    seconds = warmup(dtypes=(args.dtype,), optimizers=(lean,) if lean else (),
                     generic=lean is None)
    say(f"compiled kernels in {seconds:.2f} s")

    start = time.perf_counter()
    shuffle = {"true": True, "block": "block", "false": False}[args.shuffle]
    history = net.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                      optimizer=optimizer, shuffle=shuffle, verbose=0 if args.quiet else 1,
                      validation_data=validation_data,
                      distributed=strategy.comm if args.distributed else None)
    say(f"trained {_plural(len(history.epoch), 'epoch')} in "
        f"{time.perf_counter() - start:.2f} s")
    metrics = net.evaluate(data.X_test, data.y_test)
    if not strategy.writer:
        return 0
    print(_metrics_line(metrics, len(data.X_test)), flush=True)

    if args.save:
        save(net, args.save, include_optimizer=True)
        say(f"saved model to {args.save}")
    if args.history:
        _write_json(args.history, history.history)
        say(f"saved history to {args.history}")
    if args.plot:
        from .plotting import plot_history

        plot_history(history, args.plot)
        say(f"saved plot to {args.plot}")
    return 0


def _evaluate(args, parser):
    if args.download and args.data.name != "mnist":
        parser.error("--download only applies to --data mnist")
    net = load(args.model)
    data = args.data.load(net.dtype.name, args.download)
    print(_metrics_line(net.evaluate(data.X_test, data.y_test), len(data.X_test)))
    return 0


def _predict(args, parser):
    net = load(args.model)
    X = _read_inputs(args.input, net.n_features)
    if args.scale != 1:
        X = X / args.scale
    _warn_outside_training_range(net, X)
    lines = _format_predictions(net.predict(X), net.dtype)
    text = "".join(line + "\n" for line in lines)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
        print(f"saved {_plural(len(lines), 'prediction')} to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _info(args, parser):
    if _file_format(args.model) == CHECKPOINT_FORMAT:
        return _info_checkpoint(args.model)
    header = read_header(args.model)
    layers = header["layers"]
    rows = [
        ("file", args.model),
        ("format", f"{header['format']} {header['format_version']}, written by fastnn "
                   f"{header['fastnn_version']}"),
        *_network_rows(layers, header["loss"], header["dtype"], header["n_params"],
                       header["seed"]),
        ("optimizer", _optimizer_line(header["optimizer"])),
    ]
    if header.get("input_range") is not None:
        lo, hi = header["input_range"]
        rows.append(("input range", f"[{lo:.6g}, {hi:.6g}] (as the first Dense layer saw it "
                                    f"in training)"))
    _print_info(rows, layers)
    return 0


def _info_checkpoint(path):
    """What a checkpoint of ``Network.fit(checkpoint=...)`` holds, and how far training got."""
    header, arrays = read_checkpoint(path)
    net = header["architecture"]
    history = header["history"]["history"]
    losses = history.get("loss", [])
    last = f", last loss {losses[-1]:.4g}" if losses else ""
    rows = [
        ("file", path),
        ("format", f"{header['format']} {header['format_version']}, a training checkpoint "
                   "(Network.fit(..., resume=FILE) continues it)"),
        *_network_rows(net["layers"], net["loss"], net["dtype"], arrays["params"].size,
                       net["seed"]),
        ("epoch", f"{header['epoch']} finished (batch size {header['batch_size']}, "
                  f"{_plural(header['n_samples'], 'training sample')})"),
        ("optimizer", _optimizer_line(header["optimizer"])),
        ("history", f"{_plural(len(header['history']['epoch']), 'epoch')}{last}"),
        ("callbacks", _callback_states(header["callbacks"])),
    ]
    _print_info(rows, net["layers"])
    return 0


def _callback_states(saved):
    names = [c["class"] for c in saved if c]
    return f"state of {', '.join(names)} saved" if names else "no state saved"


def _file_format(path):
    """The ``format`` named in a file's header, or None if there is no readable header.

    Only picks which reader checks the file: read_header / read_checkpoint then
    validate it fully and say what is wrong.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(archive["header"].tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError,
            zipfile.BadZipFile, zlib.error):
        return None
    return header.get("format") if isinstance(header, dict) else None


def _network_rows(layers, loss, dtype, n_params, seed):
    return [("architecture", _architecture(layers, loss)), ("loss", loss), ("dtype", dtype),
            ("parameters", f"{n_params:,}"), ("seed", str(seed))]


def _optimizer_line(opt):
    """``adam(lr=0.001, ...), after 225 steps`` from a header's ``{"name", "config", "t"}``."""
    if opt is None:
        return "not saved"
    # Off-by-default options (clip_norm=None, ...) are left out.
    config = ", ".join(f"{k}={v!r}" for k, v in opt["config"].items() if v is not None)
    if opt["t"] is None:
        return f"{opt['name']}({config}), no state"
    return f"{opt['name']}({config}), after {opt['t']:,} step{'' if opt['t'] == 1 else 's'}"


def _print_info(rows, layers):
    width = max(len(key) for key, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")
    for i, layer in enumerate(layers):
        print(f"  layer {i}: {_layer_line(layer)}")


def _export(args, parser):
    from .export import OPSET, export_onnx

    net = load(args.model)
    export_onnx(net, args.output)
    print(f"saved ONNX model to {args.output} (opset {OPSET}, {net.dtype.name}, "
          f"input X: (N, {net.n_features}), output: (N, {net.n_outputs}))")
    return 0


# ----------------------------------------------------------------------------
# helpers


def _rank(args):
    """This process's MPI rank under ``--distributed`` (0 otherwise)."""
    if not getattr(args, "distributed", False):
        return 0
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank()


def _printer(quiet):
    def say(message):
        if not quiet:
            print(message, flush=True)
    return say


def _check_writable(path):
    """Fail before training, not after, when an output cannot be written."""
    if path is None:
        return
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: directory {folder} does not exist")


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install fastnn-numba[plot]") from None


def _warn_outside_training_range(net, X):
    """A warning on stderr when the inputs lie far outside what the model was trained on.

    "Far" is beyond the training range by more than its own width (raw 0..255
    pixels for a model trained on 0..1, say); within that, nothing is said.
    """
    if net.input_range is None or X.size == 0:
        return
    lo, hi = net.input_range
    values = np.asarray(X, np.float64)
    if net.rescaling is not None:
        values = values * net.rescaling.scale + net.rescaling.offset
    seen_lo, seen_hi = float(np.nanmin(values)), float(np.nanmax(values))
    width = max(hi - lo, 1e-12)
    if seen_lo < lo - width or seen_hi > hi + width:
        print(f"fastnn: warning: the inputs span [{seen_lo:.4g}, {seen_hi:.4g}] but the model "
              f"was trained on [{lo:.4g}, {hi:.4g}]; scale them the way the model saw them in "
              f"training (--scale S divides them by S)", file=sys.stderr)


def _check_classes(source, y_train):
    """A classifier needs two classes; one means the labels are not what was meant."""
    present = np.unique(y_train)
    if len(present) >= 2:
        return
    who = ("the one training sample has" if len(y_train) == 1
           else f"all {len(y_train)} training samples have")
    hint = (" csv:FILE reads the first column as the label: does the file start with a label "
            "column?" if source.name == "csv" else "")
    raise ValueError(f"{source}: {who} label {present[0]}, so there is only 1 class; a "
                     f"classifier needs at least 2.{hint}")


def _plural(n, word):
    """``1 class``, ``2 classes``, ``360 test samples``."""
    plural = word + ("es" if word.endswith("s") else "s")   # class, classes
    return f"{n} {word if n == 1 else plural}"


def _validation_split(X, y, fraction, seed):
    """Shuffle with ``seed`` and hold out the last ``fraction`` as validation data.

    A memory map is not shuffled (that would copy it): its last rows are held out.
    """
    if not fraction:
        return X, y, None
    n_val = int(round(len(X) * fraction))
    if not 1 <= n_val < len(X):
        raise ValueError(f"--validation-split {fraction} leaves no training or no validation "
                         f"samples out of {len(X)}")
    if not is_mapped(X):
        order = np.random.default_rng(seed).permutation(len(X))
        X, y = X[order], y[order]
    cut = len(X) - n_val
    return X[:cut], y[:cut], (X[cut:], y[cut:])


def _architecture(layers, loss):
    """``64 -> 128 relu -> dropout 0.2 -> 10 softmax`` (the output names what is applied)."""
    dense = [l for l in layers if "n_out" in l]
    parts = [str(dense[0]["n_in"])]
    for layer in layers[:-1]:
        if "scale" in layer:
            parts.append(f"rescale x*{layer['scale']:g}+{layer['offset']:g}")
        elif "dropout" in layer:
            parts.append(f"dropout {layer['dropout']:g}")
        else:
            parts.append(f"{layer['n_out']} {layer['activation']}")
    out = get_loss(loss).output_activation or layers[-1]["activation"]
    parts.append(f"{layers[-1]['n_out']} {out}")
    return " -> ".join(parts)


def _layer_line(layer):
    if "scale" in layer:
        return f"Rescaling({layer['scale']!r}, offset={layer['offset']!r})"
    if "dropout" in layer:
        return f"Dropout({layer['dropout']!r})"
    count = layer["n_in"] * layer["n_out"] + layer["n_out"]
    return (f"Dense({layer['n_in']}, {layer['n_out']}, activation={layer['activation']!r}), "
            f"{count:,} parameters")


def _metrics_line(metrics, n):
    line = f"test loss {_decimals(metrics['loss'])}"
    if "accuracy" in metrics:
        line += f" - test accuracy {_decimals(metrics['accuracy'])}"
    return f"{line} ({_plural(n, 'sample')})"


def _decimals(value, digits=4):
    """``value`` with ``digits`` decimals, never ``-0.0000`` (a loss a rounding below zero)."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _write_json(path, history):
    def clean(value):
        return value if not isinstance(value, float) or math.isfinite(value) else None

    records = {key: [clean(v) for v in values] for key, values in history.items()}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(records, handle, indent=1, allow_nan=False)
        handle.write("\n")


def _read_inputs(path, n_features):
    """Features from a ``.npy`` array or a ``.csv`` of numbers (optional header line)."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        X = _read_npy(path)
    elif ext == ".csv":
        X = _read_csv_features(path)
    else:
        raise ValueError(f"{path}: unsupported input type {ext or '(none)'!r}; use .npy or .csv")
    if X.ndim == 1 and X.size == n_features:
        X = X.reshape(1, -1)
    return X


def _read_npy(path):
    """A numeric ``.npy`` array, never unpickled; errors name the file."""
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            raise ValueError(f"{path}: not an .npy file (no numpy header); save the inputs "
                             "with np.save")
    try:
        X = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(f"{path}: holds an object array (pickled Python objects); "
                             "refusing to unpickle it: save a numeric array, e.g. "
                             "np.save(path, X.astype(float))") from None
        raise ValueError(f"{path}: not a valid .npy file ({exc})") from None
    except EOFError:
        raise ValueError(f"{path}: truncated .npy file") from None
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{path}: holds a {X.dtype} array; the inputs must be numbers")
    return X


def _read_csv_features(path):
    with open(path, encoding="utf-8-sig") as handle:
        rows = [(i, line) for i, line in enumerate(handle, start=1) if line.strip()]
    if rows and not all(_is_number(cell) for cell in rows[0][1].split(",")):
        rows = rows[1:]
    if not rows:
        raise ValueError(f"{path}: no data rows")
    width = len(rows[0][1].split(","))
    for line, text in rows:
        cells = text.split(",")
        if len(cells) != width:
            raise ValueError(f"{path}: line {line} has {len(cells)} values, expected {width}")
        for column, cell in enumerate(cells, start=1):
            if not _is_number(cell):
                raise ValueError(f"{path}: line {line}, column {column}: {cell.strip()!r} is "
                                 "not a number")
    return np.loadtxt([text for _, text in rows], delimiter=",", dtype=np.float64, ndmin=2)


def _format_predictions(pred, dtype):
    """One line per sample: a label, or comma-separated values (round-trippable floats)."""
    if pred.dtype.kind == "f":
        digits = 9 if dtype == np.float32 else 17
        fmt = lambda v: f"{v:.{digits}g}"  # noqa: E731
    else:
        fmt = str
    if pred.ndim == 1:
        return [fmt(v) for v in pred.tolist()]
    return [",".join(fmt(v) for v in row) for row in pred.tolist()]


def _one_line(exc):
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        message = f"{exc.strerror}: {exc.filename}"
    else:
        message = str(exc) or type(exc).__name__
    return " ".join(message.split())


# ----------------------------------------------------------------------------
# entry point


def main(argv=None):
    """Run the command line; return the exit code (the console script exits with it).

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 success, 1 runtime error, 2 usage error, 130 interrupted.
    """
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        return args.run(args, args.parser)
    except SystemExit as exc:          # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:            # e.g. `fastnn predict ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except EXPECTED_ERRORS as exc:
        sys.stdout.flush()
        # In a distributed run the ranks raise the errors they agreed on together (these
        # carry ``fastnn_rank``); rank 0 prints those.
        if getattr(exc, "fastnn_rank", None) is None or _rank(args) == 0:
            print(f"fastnn: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
