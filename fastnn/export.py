"""ONNX export: a trained Network as a standard inference graph.

The graph has one input ``X`` of shape (N, n_features), N dynamic, in the
network's dtype (float32 or float64), and one output ``output`` of shape
(N, n_outputs): what :meth:`fastnn.Network.predict_proba` returns. Per layer:

* ``Rescaling(scale, offset)``: ``Mul`` by ``scale``, then ``Add`` of ``offset``
  (both constants in the network's dtype).
* ``Dense(n_in, n_out, activation)``: ``Gemm`` (``h @ W + b``, W of shape
  (n_in, n_out)), then the activation's node.
* ``Dropout(rate)``: nothing (inference).

Activations: ``relu`` -> ``Relu``, ``leaky_relu`` -> ``LeakyRelu`` (alpha
0.01) in float32 and ``PRelu`` with a float64 slope tensor 0.01 in float64
(LeakyRelu's alpha attribute is a 32-bit float), ``sigmoid`` -> ``Sigmoid``,
``tanh`` -> ``Tanh``, ``identity`` -> no node. The loss decides the output:
``Softmax`` (axis -1) for cross-entropy, ``Sigmoid`` for binary cross-entropy,
``Exp`` for Poisson (the means), the last layer's own activation for mse.

The file uses the default ONNX domain at opset :data:`OPSET` (17) and IR
version :data:`IR_VERSION` (8), the pair of ONNX 1.12: onnxruntime 1.13 or
later runs it (tested with onnxruntime 1.32).

``import fastnn`` does not import onnx; :func:`export_onnx` does, when called.
"""

import os

import numpy as np

from .network import Network
from .reference import LEAKY_SLOPE

__all__ = ["IR_VERSION", "OPSET", "export_onnx"]

#: The default-domain opset the graph is written for. The ops used mean the
#: same since opset 13 (the later Relu, LeakyRelu and PRelu only add types);
#: 17 is old enough for any maintained runtime.
OPSET = 17
#: The ONNX IR version that goes with opset 17 (ONNX 1.12).
IR_VERSION = 8

INSTALL_HINT = 'pip install "fastnn-numba[onnx]"'


def _leaky_relu(graph, h, name):
    if graph.dtype == np.float64:
        # LeakyRelu's alpha is a 32-bit float attribute (0.009999999776...),
        # which would be off by 2e-9 relative in float64: PRelu takes the
        # slope as a float64 tensor, so 0.01 is exactly what fastnn uses.
        return graph.node("PRelu", [h, graph.constant(f"{name}_slope", [LEAKY_SLOPE])], name)
    return graph.node("LeakyRelu", [h], name, alpha=LEAKY_SLOPE)


def _op(op_type, **attributes):
    return lambda graph, h, name: graph.node(op_type, [h], name, **attributes)


#: An activation name -> a function adding its node(s) for input ``h``;
#: ``identity`` adds none.
ACTIVATION_NODES = {
    "identity": lambda graph, h, name: h,
    "relu": _op("Relu"),
    "leaky_relu": _leaky_relu,
    "sigmoid": _op("Sigmoid"),
    "tanh": _op("Tanh"),
    "softmax": _op("Softmax", axis=-1),
    "exp": _op("Exp"),                       # the mean of the Poisson loss's log link
}


def export_onnx(net, path):
    """Write ``net`` to ``path`` as an ONNX inference graph.

    Parameters
    ----------
    net : fastnn.Network
    path : str or os.PathLike
        The ``.onnx`` file to write (replaced if it exists); its folder must exist.

    Returns
    -------
    onnx.ModelProto
        The model that was written, already accepted by ``onnx.checker.check_model``.

    Raises
    ------
    TypeError
        ``net`` is not a Network, or ``path`` is not a path.
    FileNotFoundError
        The folder of ``path`` does not exist.
    ValueError
        The network's parameters are not finite.
    ImportError
        The onnx package is missing (``pip install "fastnn-numba[onnx]"``).

    Notes
    -----
    The graph's input ``X`` has shape (N, n_features) and the network's dtype;
    its output ``output`` has shape (N, n_outputs) and equals
    ``net.predict_proba(X)`` up to round-off (see the module docstring for the
    nodes and the opset).
    """
    if not isinstance(net, Network):
        raise TypeError(f"export_onnx expects a fastnn.Network, got {type(net).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: directory {folder} does not exist")
    theta = net.get_params()    # also takes in any W/b the user assigned, checking shapes
    if not np.isfinite(theta).all():
        raise ValueError("cannot export: the network's parameters are not finite (NaN or inf)")
    try:
        import onnx
    except ImportError:
        raise ImportError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None

    model = _build_model(net)
    onnx.checker.check_model(model, full_check=True)
    with open(path, "wb") as handle:
        handle.write(model.SerializeToString())
    return model


class _Graph:
    """The nodes and initializers of the graph being built, in the network's dtype."""

    def __init__(self, dtype):
        from onnx import helper, numpy_helper

        self.dtype = dtype
        self.nodes, self.initializers = [], []
        self._from_array, self._make_node = numpy_helper.from_array, helper.make_node

    def constant(self, name, value):
        self.initializers.append(self._from_array(np.asarray(value, self.dtype), name))
        return name

    def node(self, op_type, inputs, name, **attributes):
        self.nodes.append(self._make_node(op_type, inputs, [name], name=name, **attributes))
        return name


def _build_model(net):
    from onnx import helper

    from . import __version__   # not at the top: fastnn/__init__ imports this module first

    graph = _Graph(net.dtype)
    h = "X"
    if net.rescaling is not None:
        scale = graph.constant("rescaling_scale", net.rescaling.scale)
        offset = graph.constant("rescaling_offset", net.rescaling.offset)
        h = graph.node("Add", [graph.node("Mul", [h, scale], "rescaling_mul"), offset],
                       "rescaling_add")
    dense = net.dense_layers
    for i, layer in enumerate(dense):
        W = graph.constant(f"dense{i}_W", layer.W)
        b = graph.constant(f"dense{i}_b", layer.b)
        h = graph.node("Gemm", [h, W, b], f"dense{i}_gemm")
        activation = layer.activation
        if i == len(dense) - 1:
            activation = net.loss.output_activation or activation
        h = ACTIVATION_NODES[activation](graph, h, f"dense{i}_{activation}")
    graph.nodes[-1].output[0] = "output"    # the last node's result is the graph's output

    elem_type = helper.np_dtype_to_tensor_dtype(net.dtype)
    onnx_graph = helper.make_graph(
        graph.nodes, "fastnn",
        inputs=[helper.make_tensor_value_info("X", elem_type, ["N", net.n_features])],
        outputs=[helper.make_tensor_value_info("output", elem_type, ["N", net.n_outputs])],
        initializer=graph.initializers, doc_string=repr(net))
    model = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="fastnn", producer_version=__version__,
        doc_string=f"fastnn {net.loss.name} network ({net.dtype.name}): "
                   f"output = predict_proba(X)")
    helper.set_model_props(model, {"loss": net.loss.name, "dtype": net.dtype.name})
    return model
