#!/usr/bin/env python
"""Does a row of ``X @ W`` through SciPy's OpenBLAS depend on how many rows share the call?

Why ``predict`` computes fixed-shape chunks (``fastnn.backends.predict_rows``)
rather than one product a layer over the whole batch: if OpenBLAS gave a
row the same bits whatever the product's row count M, one product over all
rows (padded to a multiple of 64, and past the small-matrix kernel's
M * N * K <= 10**6) would be batch-invariant at full speed. This checks that
premise on this machine, in the operand order fastnn's ``kernels.blas.gemm``
uses (column-major C' = W' X', rows of X as the columns of the call), with
one BLAS thread and with the library's own threads::

    python benchmarks/blas_rows.py

For every (K, N) layer and dtype it prints the row counts M (multiples of 64
from 64 to 4,032) at which rows differ from the same rows computed with
M = 4,096. Seen on an Intel Xeon (SkylakeX kernels, OpenBLAS 0.3.30):
float32 matched everywhere; float64 differed at most M for N = 257 and
N = 300, for 64 x 10 up to M * N * K = 10**6 (the small-matrix kernel) and,
with two threads, for 37 x 1000 up to M = 960: the premise fails, and fixed
chunks stay.
"""

import numpy as np
import scipy.linalg.blas as blas
from threadpoolctl import threadpool_limits

SHAPES = [(784, 128), (128, 64), (64, 10), (784, 1024), (37, 1000), (513, 257),
          (5, 300)]
ROWS = 4096                          # the reference product's rows
COUNTS = range(64, ROWS, 64)         # the row counts compared with it


def main():
    rng = np.random.default_rng(1)
    for threads in (1, 2):
        with threadpool_limits(threads):
            for k, n in SHAPES:
                for dtype, gemm in ((np.float32, blas.sgemm), (np.float64, blas.dgemm)):
                    w = rng.standard_normal((k, n)).astype(dtype)
                    x = rng.standard_normal((ROWS, k)).astype(dtype)
                    ref = gemm(1.0, w.T, x.T).T
                    bad = [m for m in COUNTS
                           if not np.array_equal(gemm(1.0, w.T, x[:m].T).T, ref[:m])]
                    shown = bad if len(bad) <= 6 else bad[:3] + ["..."] + bad[-2:]
                    print(f"threads {threads}  {k:5d} x {n:5d} {dtype.__name__:8s} "
                          f"rows differ at {len(bad):3d} of {len(COUNTS)} M: {shown}", flush=True)


if __name__ == "__main__":
    main()
