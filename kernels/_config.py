"""The one place for the jit flags every kernel uses.

``fastmath`` leaves out ``nnan`` and ``ninf`` on purpose: the kernels detect
NaN and inf (divergence, bad input) and those flags would let LLVM delete the
checks. ``nogil`` lets two networks train at once in two Python threads.
``error_model="numpy"`` makes a division by zero give inf instead of a
Python exception check in every inner loop.
"""

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

JIT = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
