"""Inputs as the kernels read them: sources, training data, shuffling and input errors.

A :class:`Source` is a checked 2-D array as the kernels read it, in its
own dtype (or a sparse CSR matrix in the network's dtype, see
:func:`sparse_source`): they convert rows to the network's dtype while they copy a batch
(``fastnn.kernels.gather``). Arrays of float32, float64, uint8,
int8, uint16 and int16 (and, for labels, int32 and int64) that are
C-contiguous are read in place, memory maps included, so a data set never
needs a float copy in memory; anything else is converted once, as numpy
would.

Checks that need a full pass (NaN/inf, label range) run up front for arrays
in memory. A memory map is not read whole: the kernels check each row when
they first read it, and an error there undoes the call (``fit`` restores the
state it started from).
"""

import ctypes
import math
import mmap
from typing import NamedTuple

import numpy as np


#: The element types the kernels read in place.
KINDS = tuple(np.dtype(t) for t in (np.float32, np.float64, np.uint8, np.int8, np.uint16,
                                     np.int16, np.int32, np.int64))
#: Of those, the kinds an ``X`` (features) may have without a copy.
FEATURE_KINDS = (np.float32, np.float64, np.uint8, np.int8, np.uint16, np.int16)

NO_WEIGHTS = np.zeros(0, np.float64)


class DataError(ValueError):
    """Bad input found while training (NaN, a label out of range, a zero-weight batch)."""


def is_mapped(array):
    """Whether ``array`` (or an array it views) is a memory map of a file."""
    while isinstance(array, np.ndarray):
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return isinstance(array, mmap.mmap)


def _mapping(array):
    """The ``mmap.mmap`` behind a memory-mapped array, or None."""
    while isinstance(array, np.ndarray):
        if isinstance(array, np.memmap) and isinstance(getattr(array, "_mmap", None), mmap.mmap):
            return array._mmap
        array = array.base
    return array if isinstance(array, mmap.mmap) else None


def advise(array, pattern):
    """Tell the OS how a memory-mapped ``array`` will be read ("random" or "sequential").

    For random rows the default read-around (the kernel reads up to 128 KiB
    around each faulting page) multiplies the bytes read by the row size's
    inverse and thrashes a small page cache; ``MADV_RANDOM`` reads only the
    faulting page. Nothing happens for arrays in memory or where the OS
    has no ``madvise``.
    """
    mapping = _mapping(array)
    flag = {"random": getattr(mmap, "MADV_RANDOM", None),
            "sequential": getattr(mmap, "MADV_SEQUENTIAL", None),
            "normal": getattr(mmap, "MADV_NORMAL", None)}[pattern]
    if mapping is None or flag is None or not hasattr(mapping, "madvise"):
        return
    try:
        mapping.madvise(flag)
    except (OSError, ValueError):
        pass


def _advise_rows(array, row_ranges, flags):
    """``madvise`` the pages of rows ``[(start, stop), ...]`` with the first of ``flags`` the
    OS accepts; False when none is (or ``array`` is not a memory map)."""
    mapping = _mapping(array)
    flags = [f for f in flags if f is not None]
    if mapping is None or not flags or not hasattr(mapping, "madvise"):
        return False
    base = np.frombuffer(mapping, np.uint8, count=1).ctypes.data
    row_bytes = array.strides[0]
    start_of_rows = array.ctypes.data - base
    page = mmap.PAGESIZE
    for flag in flags:
        try:
            for start, stop in row_ranges:
                first = start_of_rows + start * row_bytes
                last = min(len(mapping), start_of_rows + stop * row_bytes)
                aligned = first - first % page
                if last > aligned:
                    mapping.madvise(flag, aligned, last - aligned)
            return True
        except (OSError, ValueError):
            continue
    return False


def will_need(array, row_ranges):
    """Start reading the rows ``[(start, stop), ...]`` of a memory-mapped ``array`` now.

    ``MADV_WILLNEED`` on their pages: the OS reads them in the background
    while the steps before them compute, in large requests, instead of one
    page fault at a time when a step reaches them. Nothing happens for arrays
    in memory.
    """
    _advise_rows(array, row_ranges, [getattr(mmap, "MADV_WILLNEED", None)])


# Linux's MADV_PAGEOUT (5.4+; Python's mmap module does not name it) and MADV_COLD.
_MADV_PAGEOUT, _MADV_COLD = 21, 20


def done_with(array, row_ranges):
    """Let the OS reclaim the pages of rows that this epoch will not read again.

    Without it, pages read a few times (several rows share a page) sit on the
    page cache's active list, and under a tight memory limit the OS reclaims
    the blocks read ahead for the next steps instead: every step then faults
    them in again. ``MADV_PAGEOUT`` frees the used blocks' pages now (the
    file is unchanged; another process's mapping keeps its pages); where the
    OS lacks it, ``MADV_COLD``, else nothing.
    """
    if not hasattr(mmap, "MADV_WILLNEED") or not row_ranges:
        return
    _advise_rows(array, row_ranges, [_MADV_PAGEOUT, _MADV_COLD])


def _writable(array):
    """``array`` as a writable-flagged 2-D array over its memory (no copy).

    numba compiles a read-only array as a type of its own; the kernels never
    write a source, so a read-only map is handed to them as a plain array
    over the same pages (the mapping stays read-only: a write would fault).
    """
    values = array if array.ndim == 2 else array.reshape(array.shape[0], 1)
    if values.flags.writeable:
        return values
    if values.nbytes == 0:
        return np.zeros(values.shape, values.dtype)
    buffer = (ctypes.c_uint8 * values.nbytes).from_address(values.ctypes.data)
    return np.frombuffer(buffer, dtype=values.dtype).reshape(values.shape)


class Source(NamedTuple):
    """A checked input array as the kernels read it.

    Attributes
    ----------
    values : ndarray of shape (n, width)
        The array in its own dtype, C-contiguous, writable-flagged (see
        :func:`_writable`; never written).
    width : int
        Values per row (1 for labels).
    array : ndarray
        The array itself (a memory map stays open while this exists).
    mapped : bool
        Whether it is a memory map (checked by the kernels, not up front).
    original : ndarray
        The caller's array, when ``array`` is a converted copy of it (for
        error messages), else ``array``.
    csr : tuple
        Sparse input: ``(indptr, indices, data)`` of ``array`` (a
        ``scipy.sparse.csr_matrix``), int64, int64 and the network's dtype;
        ``values`` is then empty (shape (0, width)). Empty for dense input.
    """

    values: np.ndarray
    width: int
    array: np.ndarray
    mapped: bool
    original: np.ndarray
    csr: tuple = ()

    @property
    def n(self):
        return self.array.shape[0]

    @property
    def sparse(self):
        return bool(self.csr)

    def csr_arrays(self, dtype):
        """``(indptr, indices, data)`` for the kernels: the CSR, or empty arrays of its types."""
        if self.csr:
            return self.csr
        return NO_INDEX, NO_INDEX, np.zeros(0, dtype)

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def row_bytes(self):
        return self.values.shape[1] * self.values.itemsize

    def max_batch_nnz(self, batch_size):
        """At most how many stored entries a batch of ``batch_size`` rows has (sparse input)."""
        lengths = np.diff(self.csr[0])
        if batch_size < lengths.shape[0]:
            lengths = np.partition(lengths, lengths.shape[0] - batch_size)[-batch_size:]
        return int(lengths.sum())

    def rows(self, start, stop):
        """Rows ``start:stop`` (views; a copy of the rows for sparse input)."""
        if self.csr:
            return sparse_source(self.array[start:stop])
        return Source(self.values[start:stop], self.width, self.array[start:stop], self.mapped,
                      self.original[start:stop])

    def take(self, rows, dtype, rescaling=None):
        """Rows ``rows`` (indices or a slice) converted to ``dtype``, rescaled (the reference).

        ``x * scale + offset`` in ``dtype`` without a fused multiply-add:
        what the kernels compute.
        """
        values = self.array[rows]
        values = values.toarray() if self.csr else np.asarray(values)
        with np.errstate(over="ignore", invalid="ignore"):
            values = values.astype(dtype, copy=False)
            if rescaling is not None:
                dt = np.dtype(dtype).type
                values = values * dt(rescaling.scale) + dt(rescaling.offset)
        return values.reshape(len(values), -1) if values.ndim == 1 else values


def source(array, mapped=None, original=None):
    """A :class:`Source` over a C-contiguous 1-D or 2-D array of a dtype in :data:`KINDS`.

    ``original`` is the caller's array when ``array`` is a converted copy of it.
    """
    width = array.shape[1] if array.ndim == 2 else 1
    mapped = is_mapped(array) if mapped is None else mapped
    return Source(_writable(array), width, array, mapped,
                  array if original is None else original)


NO_INDEX = np.zeros(0, np.int64)


def sparse_source(csr):
    """A :class:`Source` over a ``scipy.sparse.csr_matrix`` in canonical form.

    Its indices must be sorted within each row with no duplicates and its
    data in the network's dtype (``fastnn.network`` converts any sparse
    input so, once). The kernels get int64 copies of ``indptr`` and
    ``indices`` when scipy holds them as int32 (O(nnz) memory; the matrix is
    never densified).
    """
    indptr = np.ascontiguousarray(csr.indptr, np.int64)
    indices = np.ascontiguousarray(csr.indices, np.int64)
    data = csr.data if csr.data.flags.writeable else csr.data.copy()
    data = np.ascontiguousarray(data)
    width = csr.shape[1]
    return Source(np.zeros((0, width), data.dtype), width, csr, False, csr,
                  (indptr, indices, data))


def sparse_nonfinite(src):
    """The ``(row, column)`` of the first non-finite stored value of a sparse source, or None."""
    indptr, indices, data = src.csr
    bad = ~np.isfinite(data)
    if not bad.any():
        return None
    k = int(np.argmax(bad))
    return int(np.searchsorted(indptr, k, side="right")) - 1, int(indices[k])


class TrainingData(NamedTuple):
    """Checked training inputs, as the backends take them.

    ``y`` holds int64-kind labels for cross-entropy with integer labels
    (``code == CE_LABELS``), else float targets of shape (n, n_outputs).
    ``code`` is the loss kernel's code; ``weights`` (float64, shape (n,))
    the sample weights, empty for none.
    """

    X: Source
    y: Source
    code: int
    weights: np.ndarray = NO_WEIGHTS

    @property
    def n(self):
        return self.X.n

    @property
    def mapped(self):
        return self.X.mapped or self.y.mapped

    def rows(self, start, stop):
        """The rows ``start:stop`` (views)."""
        weights = self.weights[start:stop] if self.weights.shape[0] else NO_WEIGHTS
        return TrainingData(self.X.rows(start, stop), self.y.rows(start, stop), self.code,
                            weights)


# ---- input errors found while reading ----------------------------------------------------

def bad_value_error(src, flat, dtype, name="X"):
    """The error for the non-finite value at flat index ``flat`` of ``src`` (as in memory)."""
    row, col = divmod(int(flat), src.width)
    where = f"({row}, {col})" if src.array.ndim == 2 else f"({row},)"
    original = np.asarray(src.original[row]).reshape(-1)[col]
    if np.isfinite(np.float64(original)):
        return DataError(f"{name} has a value too large for {np.dtype(dtype)} at index {where}")
    return DataError(f"{name} contains NaN or inf (first at index {where})")


def bad_label_error(src, row, n_classes):
    label = np.asarray(src.array[int(row)]).reshape(-1)[0]
    return DataError(f"labels must be in 0..{n_classes - 1} for {n_classes} outputs; found "
                     f"{label} (at index {int(row)})")


# ---- shuffling --------------------------------------------------------------------------

#: ``shuffle="block"``: rows per block are chosen so a block is about this many bytes.
BLOCK_BYTES = 1 << 20
#: ... of at most this many rows (784-byte rows: 1,337 a block) ...
BLOCK_MAX_ROWS = 4096
#: ... and this many consecutive blocks (in the epoch's block order) are shuffled together.
BLOCKS_PER_BUFFER = 16
#: ``shuffle=True`` over at most this many rows draws numpy's permutation and
#: holds it (8 bytes a row, 512 KiB at most); over more, a keyed permutation
#: is computed a block of steps at a time, so the memory a fit needs does not
#: grow with the rows (:class:`KeyedOrder`).
PERMUTATION_ROWS = 1 << 16

SHUFFLE_MODES = (True, False, "block")


class HeldOrder:
    """An epoch's sample order held as one array (``rows`` slices it)."""

    def __init__(self, perm):
        self.perm = np.ascontiguousarray(perm, np.int64)
        self.n = self.perm.shape[0]

    def rows(self, start, stop):
        """Positions ``start:stop`` of the order: the rows read there (int64)."""
        return self.perm[start:stop]


class InOrder:
    """``0 .. n-1`` (``shuffle=False``), computed by the slice."""

    def __init__(self, n):
        self.n = n

    def rows(self, start, stop):
        return np.arange(start, min(stop, self.n), dtype=np.int64)


class KeyedOrder:
    """A seeded uniform-looking permutation of ``0 .. n-1``, computed where asked.

    Position ``i`` maps to row ``f(i)``, where ``f`` is a Feistel network of
    ``ROUNDS`` rounds over ``Z_a x Z_b`` (``a = ceil(sqrt(n))``, ``b =
    ceil(n / a)``; each round adds a splitmix64 hash of one half, keyed per
    round and per epoch, to the other modulo its size: a bijection) walked
    until it lands below ``n`` (cycle walking, a bijection of ``0 .. n-1``;
    ``a b - n < a``, so almost every position needs one pass;
    ``kernels.order``). Every row comes once an epoch, in an order that
    depends on the keys only, and any stretch of it costs time and memory in
    its length, not in ``n``.
    """

    ROUNDS = 6

    def __init__(self, rng, n):
        self.n = n
        self.keys = rng.integers(0, 2 ** 63, size=self.ROUNDS, dtype=np.uint64)
        self.a = max(1, math.isqrt(max(n - 1, 0)) + 1)
        self.b = -(-n // self.a)

    def rows(self, start, stop):
        from .kernels.order import keyed_rows

        out = np.empty(max(0, min(stop, self.n) - start), np.int64)
        keyed_rows(start, self.n, self.a, self.b, self.keys, out)
        return out


class BlockOrder:
    """``shuffle="block"``: a permutation that reads a file in blocks.

    The rows are cut into blocks of contiguous rows (``BLOCK_BYTES`` each, at
    least one batch), the blocks are permuted, and every window of
    ``BLOCKS_PER_BUFFER`` consecutive blocks in that order is shuffled as one
    buffer (each window by its own seed). Every row comes once an epoch; a
    window's rows sit in a few MiB of the file, which the page cache holds
    while the window is read. Only the block order and one seed a window are
    held (a few bytes per MiB of data); a window's rows are drawn when its
    positions are first asked for.
    """

    def __init__(self, rng, n, row_bytes, batch_size):
        self.n = n
        self.block = block_rows(row_bytes, batch_size)
        n_blocks = -(-n // self.block)
        self.starts = rng.permutation(n_blocks).astype(np.int64) * self.block
        self.lengths = np.minimum(self.block, n - self.starts)
        n_windows = -(-n_blocks // BLOCKS_PER_BUFFER)
        self.seeds = rng.integers(0, 2 ** 63, size=n_windows)
        # Where each window's positions begin in the epoch.
        ends = np.cumsum(self.lengths)
        self.window_starts = np.concatenate([[0], ends[BLOCKS_PER_BUFFER - 1::BLOCKS_PER_BUFFER]])
        self._windows = {}

    #: Windows kept drawn: a block of steps asks for the one it trains on, the read-ahead
    #: for the next and the page hand-back for the one before.
    KEPT_WINDOWS = 3

    def _window_rows(self, w):
        rows = self._windows.get(w)
        if rows is None:
            blocks = slice(w * BLOCKS_PER_BUFFER, (w + 1) * BLOCKS_PER_BUFFER)
            rows = np.concatenate([np.arange(s, s + k, dtype=np.int64) for s, k in
                                   zip(self.starts[blocks], self.lengths[blocks])])
            rows = rows[np.random.default_rng(self.seeds[w]).permutation(rows.shape[0])]
            self._windows[w] = rows
            if len(self._windows) > self.KEPT_WINDOWS:
                del self._windows[next(iter(self._windows))]      # the oldest drawn
        return rows

    def rows(self, start, stop):
        stop = min(stop, self.n)
        pieces = []
        w = int(np.searchsorted(self.window_starts, start, side="right")) - 1
        while start < stop:
            first = int(self.window_starts[w])
            last = int(self.window_starts[w + 1]) if w + 1 < self.window_starts.shape[0] \
                else self.n
            take = min(stop, last)
            pieces.append(self._window_rows(w)[start - first:take - first])
            start, w = take, w + 1
        return np.concatenate(pieces) if len(pieces) != 1 else pieces[0]


def block_permutation(rng, n, row_bytes, batch_size):
    """The whole of one epoch's ``"block"`` order (:class:`BlockOrder`) as an array."""
    return BlockOrder(rng, n, row_bytes, batch_size).rows(0, n)


#: Rows of ``perm`` that :func:`read_order` sorts at a time.
READ_ORDER_ROWS = 1 << 16


def read_order(perm, batch_size, rank=0, size=1):
    """For each position of ``perm`` in process ``rank``'s share of its batch, the slot to read.

    The rows of a share, read in this order, come in file order (their
    source indices ascending) while each still lands in its own slot, so the
    batch is unchanged. The kernels use it for memory maps
    (``kernels.step.train_steps``'s ``order``).

    Returns
    -------
    ndarray of shape (n,), int64
        ``order[lo + k]`` is the slot (0-based within the share starting at
        ``lo``) of the share's ``k``-th smallest source row; positions outside
        this process's shares are 0.
    """
    n = perm.shape[0]
    order = np.zeros(n, np.int64)
    steps = -(-n // batch_size)
    # In pieces of steps, so the temporaries stay small whatever the number of rows.
    piece = max(1, READ_ORDER_ROWS // batch_size)
    for first in range(0, steps, piece):
        starts = np.arange(first, min(steps, first + piece)) * batch_size
        r = np.minimum(batch_size, n - starts)
        lo = starts + r * rank // size
        lengths = starts + r * (rank + 1) // size - lo
        share = np.repeat(np.arange(starts.shape[0]), lengths)
        positions = (np.repeat(lo - np.cumsum(lengths) + lengths, lengths)
                     + np.arange(share.shape[0]))
        by_row = np.lexsort((perm[positions], share))
        order[positions] = positions[by_row] - lo[share]
    return order


def block_rows(row_bytes, batch_size):
    """Rows per block of ``shuffle="block"``: ``BLOCK_BYTES`` of them, at most
    ``BLOCK_MAX_ROWS`` (narrow rows: a window of blocks stays a bounded number of
    rows, held as int64 while it is read), at least a batch."""
    return max(batch_size, min(BLOCK_BYTES // max(row_bytes, 1), BLOCK_MAX_ROWS), 1)


def blocks_of(rows, block):
    """The ``(start, stop)`` row ranges of the blocks that hold ``rows``."""
    starts = np.unique(np.asarray(rows) // block) * block
    return [(int(s), int(s) + block) for s in starts]


def epoch_order(rng, n, shuffle, row_bytes, batch_size):
    """The sample order of one epoch, an object whose ``rows(start, stop)`` gives positions
    ``start:stop`` of it: a permutation (``True``: numpy's up to
    :data:`PERMUTATION_ROWS` rows, else :class:`KeyedOrder`), blocks
    (``"block"``, :class:`BlockOrder`) or ``0 .. n-1``.

    Every draw comes from ``rng``, so a seed (or a checkpoint's generator
    state) gives the same orders, and memory-mapped and in-memory data of
    the same length the same batches.
    """
    if shuffle is True:
        if n <= PERMUTATION_ROWS:
            return HeldOrder(rng.permutation(n))
        return KeyedOrder(rng, n)
    if shuffle == "block":
        return BlockOrder(rng, n, row_bytes, batch_size)
    return InOrder(n)
