"""Multilayer perceptrons for critics and generators (shared by the CLI, the tuner and examples)."""

import keras

from tflip import _validation, layers

CONSTRAINTS = ("bjorck", "spectral", "linf", "none")
ACTIVATIONS = ("relu", "maxmin", "groupsort", "fullsort")

_DENSE_CLASSES = {
    "bjorck": layers.BjorckDense,
    "spectral": layers.SpectralNormDense,
    "linf": layers.LInfProjectedDense,
    "none": keras.layers.Dense,
}


def activation_layer(activation, group_size=2, name=None):
    """A gradient-norm-preserving or ReLU activation layer by name (one of `ACTIVATIONS`)."""
    activation = _validation.one_of("activation", activation, ACTIVATIONS)
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    if activation == "maxmin":
        return layers.MaxMin(name=name)
    if activation == "groupsort":
        return layers.GroupSort(group_size, name=name)
    return layers.FullSort(name=name)


def width_multiple(activation, group_size=2):
    """The number every hidden width must be a multiple of for `activation`.

    MaxMin sorts pairs of units and GroupSort groups of `group_size` units,
    so a width must split into whole pairs or groups; ReLU and FullSort take
    any width.
    """
    return {"maxmin": 2, "groupsort": group_size}.get(activation, 1)


def check_width(width, activation, group_size=2, name="width"):
    """Raises `ValueError` naming `name` unless `width` is a multiple of `width_multiple(activation, group_size)`."""
    multiple = width_multiple(activation, group_size)
    if width % multiple:
        raise ValueError(f"`{name}` must be a multiple of {multiple} for {activation}, got {width}.")
    return width


def lipschitz_mlp(input_dim, output_dim=1, depth=3, width=128, constraint="bjorck", activation="groupsort",
                  group_size=2, name="critic"):
    """An MLP `input_dim -> output_dim` of constrained Dense layers and activations.

    Hidden layers are `Dense -> activation`; the output layer is a Dense with
    the same constraint, so with a constraint and a 1-Lipschitz activation
    the network is 1-Lipschitz (Anil et al.: Björck + GroupSort). `"linf"`
    is 1-Lipschitz in the L-infinity norm.

    Args:
        input_dim: size of one input sample.
        output_dim: outputs (1 for a critic).
        depth: hidden layers (>= 0).
        width: hidden width (a multiple of `group_size` for GroupSort, even for MaxMin).
        constraint: one of `CONSTRAINTS`: `"bjorck"` (`BjorckDense`), `"spectral"`
            (`SpectralNormDense`), `"linf"` (`LInfProjectedDense`), `"none"` (`keras.layers.Dense`).
        activation: one of `ACTIVATIONS`.
        group_size: GroupSort group size.
        name: model name (layer names are prefixed with it).

    Returns:
        A built `keras.Sequential` with an explicit `keras.Input`.

    Example:

        >>> critic = lipschitz_mlp(2, depth=3, width=128)  # Björck + GroupSort(2), 1-Lipschitz
    """
    input_dim = _validation.positive_int("input_dim", input_dim)
    output_dim = _validation.positive_int("output_dim", output_dim)
    depth = _validation.non_negative_int("depth", depth)
    width = _validation.positive_int("width", width)
    dense = _DENSE_CLASSES[_validation.one_of("constraint", constraint, CONSTRAINTS)]
    activation = _validation.one_of("activation", activation, ACTIVATIONS)
    group_size = _validation.positive_int("group_size", group_size, minimum=2)
    if depth:
        check_width(width, activation, group_size)
    stack = [keras.Input((input_dim,), name=f"{name}_input")]
    for i in range(depth):
        stack.append(dense(width, name=f"{name}_dense_{i}"))
        stack.append(activation_layer(activation, group_size, name=f"{name}_{activation}_{i}"))
    stack.append(dense(output_dim, name=f"{name}_output"))
    return keras.Sequential(stack, name=name)


def relu_mlp(input_dim, output_dim, depth=3, width=128, name="generator"):
    """A ReLU MLP `input_dim -> output_dim` with a linear output (a toy generator)."""
    input_dim = _validation.positive_int("input_dim", input_dim)
    output_dim = _validation.positive_int("output_dim", output_dim)
    depth = _validation.non_negative_int("depth", depth)
    width = _validation.positive_int("width", width)
    stack = [keras.Input((input_dim,), name=f"{name}_input")]
    stack += [keras.layers.Dense(width, "relu", name=f"{name}_dense_{i}") for i in range(depth)]
    stack.append(keras.layers.Dense(output_dim, name=f"{name}_output"))
    return keras.Sequential(stack, name=name)
