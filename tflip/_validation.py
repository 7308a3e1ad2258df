"""Argument checks shared by every public constructor.

Each helper raises `ValueError` naming the argument, so that bad input is
reported where the user wrote it rather than deep inside TensorFlow.
"""

import math
import numbers


def positive_number(name, value):
    """Returns `value` as a float, or raises if it is not a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a positive number, got {value!r}.")
    value = float(value)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}.")
    return value


def non_negative_number(name, value):
    """Returns `value` as a float, or raises if it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a non-negative number, got {value!r}.")
    value = float(value)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"`{name}` must be a non-negative finite number, got {value!r}.")
    return value


def positive_int(name, value, minimum=1):
    """Returns `value` as an int, or raises if it is not an integer >= `minimum` (itself >= 1).

    Use `non_negative_int` where 0 is allowed.
    """
    if minimum < 1:
        raise ValueError(f"positive_int takes a minimum >= 1, got {minimum}; use non_negative_int.")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def non_negative_int(name, value):
    """Returns `value` as an int, or raises if it is not an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")
    return int(value)


def random_seed(name, value):
    """Returns `value` as an int, or raises if it is not an integer >= 0.

    Every seed of tflip is such an integer: it seeds stateless TensorFlow
    draws and numpy generators alike, and numpy rejects negative seeds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0 (a seed), got {value!r}.")
    return int(value)


def unit_fraction(name, value):
    """Returns `value` as a float in (0, 1], or raises."""
    value = positive_number(name, value)
    if value > 1.0:
        raise ValueError(f"`{name}` must be in (0, 1], got {value!r}.")
    return value


def boolean(name, value):
    """Returns `value` if it is `True` or `False` (not merely truthy), else raises."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return value


def interval(name, value, positive=False):
    """Returns `(low, high)` as floats from a pair of finite numbers with `low < high`.

    With `positive=True` the interval must also lie above 0 (`0 < low`).
    Used for value ranges such as a data range to clip to or a range of
    perturbation lengths.
    """
    kind = "0 < low < high" if positive else "low < high"
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a pair (low, high) of finite numbers with {kind}, got {value!r}.") from None
    if (
        any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) for v in (low, high))
        or not low < high
        or (positive and not low > 0)
    ):
        raise ValueError(f"`{name}` must be a pair (low, high) of finite numbers with {kind}, got {value!r}.")
    return float(low), float(high)


def one_of(name, value, choices):
    """Returns `value` (lower-cased if a string) if it is one of `choices`."""
    key = value.lower() if isinstance(value, str) else value
    if key not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}, got {value!r}.")
    return key


def int_pair(name, value):
    """Normalizes an int or a pair of ints >= 1 (kernel sizes, strides) to a tuple."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in pair
    ):
        raise ValueError(f"`{name}` must be a positive int or a pair of positive ints, got {value!r}.")
    return tuple(int(v) for v in pair)
