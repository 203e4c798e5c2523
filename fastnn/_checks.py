"""Checks of scalar hyperparameters, shared by the optimizers and the callbacks.

Each returns the value as a plain Python ``float``/``int``/``bool`` or raises a
``ValueError`` naming the parameter. Strings, bools (where a number is meant),
None, arrays and other objects are refused, never converted: ``float("0.1")``
would accept a string and ``bool("no")`` is True. Integers are fine where a
float is meant, and numpy scalars are fine everywhere.
"""

import math
import numbers

import numpy as np


def _shown(value):
    """``value!r``, with its type when the repr alone would not say what is wrong."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or value is None \
            or not isinstance(value, numbers.Number):
        return f"{value!r} ({type(value).__name__})"
    return repr(value)


def real(name, value, positive=False):
    """``value`` as a float: a finite real number, ``> 0`` if ``positive`` else ``>= 0``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if ok:
        try:
            number = float(value)
        except OverflowError:        # an int beyond float's range
            ok = False
        else:
            ok = math.isfinite(number) and (number > 0 if positive else number >= 0)
    if not ok:
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a finite {kind} number, got {_shown(value)}")
    return number


def optional_positive(name, value):
    """None, or ``value`` as a finite float ``> 0`` (an off-by-default threshold)."""
    if value is None:
        return None
    try:
        return real(name, value, positive=True)
    except ValueError:
        raise ValueError(f"{name} must be None or a finite positive number, got "
                         f"{_shown(value)}") from None


def fraction(name, value):
    """``value`` as a float in [0, 1)."""
    number = real(name, value)
    if number >= 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return number


def integer(name, value, minimum):
    """``value`` as an int ``>= minimum`` (an integral number; not a bool, not 2.0)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {_shown(value)}")
    return int(value)


def flag(name, value):
    """``value`` as a bool: only True or False (or numpy's bools)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {_shown(value)}")
    return bool(value)
