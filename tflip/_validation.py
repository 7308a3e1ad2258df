"""Argument checks shared by every public constructor.

Each helper raises `ValueError` naming the argument, so that bad input is
reported where the user wrote it rather than deep inside TensorFlow.
"""

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
    """Returns `value` as an int, or raises if it is not an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


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
