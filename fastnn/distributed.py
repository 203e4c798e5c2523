"""Data-parallel training over MPI: ``Network.fit(..., distributed="mpi")``.

Launch one process per rank, each running the same script on the same data::

    mpiexec -n 4 python -m mpi4py train.py

Every rank calls ``fit`` with the same arguments and the same ``X, y`` (in
memory, or memory maps of one file). The run then behaves as one process
would:

* rank 0's parameters, optimizer state and shuffling state are broadcast at
  the start, and every epoch uses the permutation one process would draw;
* every global batch (``batch_size``, the last partial one included) is split
  into near-equal shares, one per rank, with no padding and no dropped
  samples; a rank reads only its share's rows;
* each step's gradient is summed across ranks by one ``MPI_Allreduce`` over
  the flat parameter vector, called from inside the compiled step (see
  ``fastnn.kernels.mpi``), and every rank applies the same update;
* dropout masks are those one process draws for the same rows;
* losses, accuracies and validation metrics are global and identical on
  every rank, so schedules and early stopping decide identically;
* only rank 0 prints progress and writes checkpoints and ``fastnn.save``
  files; ``resume=`` works on every rank;
* the ranks' parameters are compared (a checksum) after every epoch;
* an error on any rank (bad input, divergence, a failing callback) ends
  ``fit`` on every rank with that rank's message.

This module imports mpi4py; ``import fastnn`` does not.
"""

import ctypes
import hashlib
import pickle

import numpy as np

__all__ = ["MPIStrategy", "DistributedError"]


class DistributedError(RuntimeError):
    """The ranks of a distributed run disagree (parameters, or an error on one rank)."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError('distributed="mpi" needs mpi4py and an MPI library: '
                          'pip install "fastnn-numba[mpi]"') from None
    return MPI


_ALLREDUCE_ADDRESS = None


def _allreduce_address(MPI):
    """The address of ``MPI_Allreduce`` in the MPI library mpi4py loaded.

    ``dlsym`` on mpi4py's extension module searches the libraries it was
    linked with, so this is the very library mpi4py's own calls use.
    """
    global _ALLREDUCE_ADDRESS
    if _ALLREDUCE_ADDRESS is None:
        library = ctypes.CDLL(MPI.__file__)
        _ALLREDUCE_ADDRESS = ctypes.cast(library.MPI_Allreduce, ctypes.c_void_p).value
    return _ALLREDUCE_ADDRESS


def _signed64(handle):
    """An MPI handle as the int64 the kernel passes (mpi4py gives C ints as unsigned 64-bit)."""
    return handle - (1 << 64) if handle >= 1 << 63 else handle


class MPIStrategy:
    """The strategy of ``fit`` over the ranks of an mpi4py communicator.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
    """

    def __init__(self, comm):
        self.MPI = _mpi()
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.writer = self.rank == 0

    @classmethod
    def from_argument(cls, distributed):
        """The strategy for ``distributed="mpi"`` (``COMM_WORLD``) or an mpi4py communicator."""
        if isinstance(distributed, str):
            if distributed != "mpi":
                raise ValueError(f"distributed must be None, 'mpi' or an mpi4py communicator, "
                                 f"got {distributed!r}")
            return cls(_mpi().COMM_WORLD)
        MPI = _mpi()
        if isinstance(distributed, MPIStrategy):
            return distributed
        if not isinstance(distributed, MPI.Intracomm):
            raise TypeError(f"distributed must be None, 'mpi' or an mpi4py communicator "
                            f"(MPI.Intracomm), got {type(distributed).__name__}")
        return cls(distributed)

    def kernel_args(self, dtype):
        MPI = self.MPI
        datatype = MPI.FLOAT if np.dtype(dtype) == np.float32 else MPI.DOUBLE
        handles = [MPI._handleof(h) for h in (self.comm, datatype, MPI.SUM)]
        return (self.rank, self.size, _allreduce_address(MPI), *map(_signed64, handles))

    def broadcast(self, arrays):
        for array in arrays:
            self.comm.Bcast(array, root=0)

    def agree(self, value):
        return self.comm.bcast(value, root=0)

    def sum(self, array):
        if array.size:
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array

    def shard(self, n):
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def collective(self):
        return _Collective(self)

    def check_replicas(self, theta, epoch):
        digest = hashlib.sha256(np.ascontiguousarray(theta).tobytes()).hexdigest()[:16]
        digests = self.comm.allgather(digest)
        if len(set(digests)) > 1:
            groups = {}
            for rank, d in enumerate(digests):
                groups.setdefault(d, []).append(rank)
            described = "; ".join(f"ranks {', '.join(map(str, ranks))}: {d}"
                                  for d, ranks in groups.items())
            raise DistributedError(f"the ranks' parameters differ after epoch {epoch} "
                                   f"(checksums {described}); every rank must run the same "
                                   f"fastnn on the same kind of CPU with the same data")


class _Collective:
    """``with strategy.collective():`` raise on every rank if the block raised on any.

    The failing rank raises its own exception; the others raise one of the
    same type (else :class:`DistributedError`) whose message starts with
    ``rank k:``. Either way the exception's ``fastnn_rank`` attribute is
    ``k``. Every rank must enter and leave the block (it ends with an
    allgather).
    """

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is not None and not isinstance(error, Exception):
            return False                     # KeyboardInterrupt, SystemExit: not agreed on
        report = None
        if error is not None:
            report = (type(error), str(error))
            try:
                pickle.dumps(report)
            except Exception:                # a class that does not pickle by reference
                report = (DistributedError, f"{type(error).__name__}: {error}")
        reports = self.strategy.comm.allgather(report)
        if error is not None:
            error.fastnn_rank = self.strategy.rank
            return False                     # re-raise our own
        for rank, failed in enumerate(reports):
            if failed is not None:
                kind, message = failed
                try:
                    agreed = kind(f"rank {rank}: {message}")
                except Exception:
                    agreed = DistributedError(f"rank {rank}: {kind.__name__}: {message}")
                agreed.fastnn_rank = rank
                raise agreed
        return False
