"""fastnn: fast dense neural networks on the CPU, numba kernels proven against numpy.

>>> import fastnn
>>> net = fastnn.Network([fastnn.Dense(64, 32, activation="relu"), fastnn.Dense(32, 10)])
"""

from . import callbacks, datasets
from .callbacks import EarlyStopping
from .export import export_onnx
from .fileformat import ModelFileError
from .gradcheck import gradcheck
from .io import load, read_header, save
from .layers import Dense, Dropout, Rescaling
from .network import Network
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop
from .training import History
from .warmup import warmup

__version__ = "0.1.0"

__all__ = ["Dense", "Dropout", "Rescaling", "Network", "History", "Optimizer", "SGD", "Adam",
           "AdamW", "RMSprop", "callbacks", "datasets", "EarlyStopping", "warmup", "save", "load",
           "read_header", "ModelFileError", "export_onnx", "gradcheck", "__version__"]
