"""The one place for the jit flags every kernel uses.

``fastmath`` is only ``nsz`` (the sign of a zero may differ): IEEE arithmetic
otherwise, so a kernel's bits are fixed by its source. ``reassoc``,
``contract`` and ``arcp`` let LLVM reorder sums, fuse multiply-adds and
replace divisions as it sees fit, and it sees differently when a callee is
compiled into its caller (numba links a kernel compiled in the same process
into the caller and optimizes them together) or called from numba's cache
(machine code): the same training step then gave different last bits
depending on what the process had compiled before. Reductions that need
vector speed keep explicit lanes (``optimizers.squared_norm``) or reduce
integers (the finiteness flags). ``nnan`` and ``ninf`` are left out too: the
kernels detect NaN and inf (divergence, bad input) and those flags would let
LLVM delete the checks. ``nogil`` lets two networks train at once in two Python threads.
``error_model="numpy"`` makes a division by zero give inf instead of a
Python exception check in every inner loop.
"""

FASTMATH = {"nsz"}

JIT = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")


def invalidate_stale_cache():
    """Drop numba's cached kernels when any kernel source file has changed.

    numba keys a cached function on its own file only, but the kernels call
    each other and are compiled into one another: after an edit (or an
    upgrade) of, say, ``optimizers.py``, the cached ``training.train_steps``
    would still run the old optimizer. The cache is therefore stamped with a
    hash of every kernel source and emptied when the hash changes.
    """
    import hashlib
    import os
    from pathlib import Path

    import numba

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(here.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    digest.update(numba.__version__.encode())
    stamp_text = digest.hexdigest()
    folders = [here / "__pycache__"]
    if numba.config.CACHE_DIR:
        folders.append(Path(numba.config.CACHE_DIR))
    modules = {source.stem for source in here.glob("*.py")}
    for folder in folders:
        stamp = folder / "fastnn-kernels.sha256"
        try:
            if stamp.read_text() == stamp_text:
                continue
        except OSError:
            pass
        try:
            for cached in [*folder.rglob("*.nbi"), *folder.rglob("*.nbc")]:
                # Only fastnn's kernels: "<module>.<function>-<line>.py311...".
                if cached.parent.name in ("__pycache__", "kernels") and \
                        cached.name.split(".")[0] in modules:
                    cached.unlink(missing_ok=True)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".stamp.{os.getpid()}"
            tmp.write_text(stamp_text)
            os.replace(tmp, stamp)
        except OSError:
            pass  # a read-only install: numba then caches elsewhere or not at all
