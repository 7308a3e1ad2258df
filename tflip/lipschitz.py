"""Network-level Lipschitz constants: a certified upper bound and an empirical lower bound.

The upper bound multiplies certified per-layer constants along a chain of
layers (Sequential models, or functional models without branches). tflip
layers certify themselves through the `LipschitzLayer` protocol; plain Keras
Dense and Conv1D/Conv2D layers and their transposes are bounded exactly (SVD) or by Gram iteration;
parameter-free layers with known constants are recognised; any other layer
raises unless the caller declares its constant.
"""

import math

import keras
import tensorflow as tf

from tflip.layer_spectra import conv_operator
from tflip.layers.base import LipschitzLayer
from tflip.ops.conv import conv_norm_upper_bound
from tflip.ops.norms import check_norm, dense_kernel_norm

# Lipschitz constants of element-wise activations (in any p-norm).
_ACTIVATION_CONSTANTS = {
    "linear": 1.0,
    "relu": 1.0,
    "relu6": 1.0,
    "tanh": 1.0,
    "sigmoid": 0.25,
    "hard_sigmoid": 1.0 / 6.0,
    "softsign": 1.0,
    "softplus": 1.0,
    "silu": 1.1,  # max |d/dx x sigmoid(x)| = 1.0998...
    "swish": 1.1,
    "gelu": 1.13,  # max |d/dx x Phi(x)| = 1.1289...
}

# Layers that are 1-Lipschitz (in L2 and L-infinity) whatever their settings.
_ONE_LIPSCHITZ_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.ReLU,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling1D,
)


def activation_lipschitz(activation):
    """Lipschitz constant of a Keras activation function, or raises ValueError."""
    if activation is None:
        return 1.0
    name = getattr(activation, "__name__", str(activation))
    if name in _ACTIVATION_CONSTANTS:
        return _ACTIVATION_CONSTANTS[name]
    raise ValueError(f"Unknown Lipschitz constant for activation {name!r}; declare it with `known`.")


def _pooling_bound(layer, norm):
    """Max or average pooling: each input feeds at most `overlap` windows."""
    if norm == "inf":
        return 1.0
    pool, strides = tuple(layer.pool_size), tuple(layer.strides or layer.pool_size)
    overlap = math.prod(-(-p // s) for p, s in zip(pool, strides))
    if isinstance(layer, keras.layers.MaxPooling2D):
        return math.sqrt(overlap)
    # Average: sum_w mean(x_w)^2 <= sum_w |w|^-1 sum_{i in w} x_i^2 <= overlap / |w| * ||x||^2.
    return math.sqrt(overlap / math.prod(pool))


def _batch_normalization_bound(layer):
    """Inference-mode BatchNormalization is diagonal: max_c |gamma_c| / sqrt(var_c + eps), in any p-norm.

    In training mode it normalizes by batch statistics and has no such
    constant; the bound certifies the deployed (inference) network.
    """
    variance = tf.cast(keras.ops.convert_to_tensor(layer.moving_variance), tf.float64)
    scale = 1.0 / tf.sqrt(variance + layer.epsilon)
    if layer.scale:
        scale *= tf.abs(tf.cast(keras.ops.convert_to_tensor(layer.gamma), tf.float64))
    return float(tf.reduce_max(scale))


def layer_lipschitz_bound(layer, norm=2, known=None):
    """Certified Lipschitz constant of one layer (activation included).

    Args:
        layer: A built Keras layer.
        norm: 2 or "inf".
        known: Optional dict mapping layer names to declared constants.

    Returns:
        A Python float.

    Raises:
        ValueError: If the layer's constant is not known.
    """
    norm = check_norm(norm)
    known = known or {}
    if layer.name in known:
        return float(known[layer.name])
    if isinstance(layer, keras.Model):
        return lipschitz_upper_bound(layer, norm, known)
    if isinstance(layer, _ONE_LIPSCHITZ_LAYERS):
        return 1.0
    activation = activation_lipschitz(getattr(layer, "activation", None))
    if isinstance(layer, LipschitzLayer):
        return layer.lipschitz_upper_bound(norm) * activation
    if isinstance(layer, keras.layers.Activation):
        return activation
    if isinstance(layer, keras.layers.LeakyReLU):
        return max(1.0, abs(float(layer.negative_slope)))
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        return _pooling_bound(layer, norm)
    if isinstance(layer, keras.layers.BatchNormalization):
        return _batch_normalization_bound(layer)
    if type(layer) is keras.layers.Dense:
        return dense_kernel_norm(layer.kernel, norm) * activation
    if type(layer) is keras.layers.Conv2D and layer.data_format == "channels_last" and norm == "inf":
        kernel = tf.convert_to_tensor(layer.kernel)
        return dense_kernel_norm(tf.reshape(kernel, (-1, layer.filters)), "inf") * activation
    operator = conv_operator(layer) if norm == 2 else None
    if operator is not None:
        # Transposed convolutions are adjoints of a convolution: same 2-norm.
        return conv_norm_upper_bound(*operator) * activation
    raise ValueError(
        f"Layer {layer.name!r} ({type(layer).__name__}) has no known Lipschitz constant; "
        f"pass `known={{{layer.name!r}: constant}}`."
    )


def lipschitz_upper_bound(model, norm=2, known=None):
    """Certified upper bound of a chain model's Lipschitz constant (product of layers).

    Args:
        model: A built `keras.Sequential`, or a functional model whose layers
            form a single chain (no branches or merges).
        norm: 2 (default) or "inf"; input and output use the same norm.
        known: Optional dict `{layer_name: constant}` declaring constants of
            layers tflip cannot bound itself.

    Returns:
        A Python float.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), BjorckDense(8), GroupSort(2), BjorckDense(1)])
        >>> lipschitz_upper_bound(model)  # ~1.0
    """
    if not model.built:
        raise ValueError("`model` must be built before its Lipschitz constant can be bounded.")
    bound = 1.0
    for layer in model.layers:
        inputs = getattr(layer, "_inbound_nodes", [])
        # A Sequential model is a chain by construction (its layers may still
        # carry extra nodes from rebuilding, e.g. after load_model).
        chained = isinstance(model, keras.Sequential)
        if not chained and (any(len(node.input_tensors) > 1 for node in inputs) or len(inputs) > 1):
            raise ValueError(
                f"Layer {layer.name!r} has several inputs or is shared: only chains of layers are "
                "supported (residual connections need their own analysis)."
            )
        bound *= layer_lipschitz_bound(layer, norm, known)
    return bound


def jacobian_norms(model, x):
    """Per-sample spectral norm of the model's input Jacobian (the input-gradient norm for scalar outputs).

    Each value is a lower bound of the model's L2 Lipschitz constant; their
    maximum over a probe batch is what training actually reached there.

    Args:
        model: Callable Keras model (evaluated with `training=False`).
        x: Batch of inputs.

    Returns:
        float32 tensor `(batch,)`.
    """
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    batch = x.shape[0]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reshape(tf.cast(model(x, training=False), tf.float32), (batch, -1))
    if y.shape[1] == 1:
        gradient = tf.reshape(tape.gradient(y, x), (batch, -1))
        return tf.norm(gradient, axis=1)
    jacobian = tape.batch_jacobian(y, x)
    jacobian = tf.reshape(jacobian, (batch, jacobian.shape[1], -1))
    return tf.linalg.svd(jacobian, compute_uv=False)[:, 0]


def lipschitz_lower_bound(model, x, ascent_steps=20, step_size=0.05, seed=0):
    """Empirical lower bound: the largest local slope found near the data.

    Two estimates, both lower bounds of the true L2 Lipschitz constant:
    the largest Jacobian spectral norm over the samples `x` (input-gradient
    norm for scalar outputs), and difference quotients
    ||f(a) - f(b)|| / ||a - b|| over pairs that start at the samples and are
    moved by `ascent_steps` steps of normalized gradient ascent on the
    quotient (the gradient norm itself has no useful gradient in piecewise
    linear networks, the quotient does).

    Args:
        model: Callable Keras model.
        x: Batch of inputs (numpy or tensor).
        ascent_steps: Gradient-ascent steps on the pair quotient (>= 0).
        step_size: Step relative to the RMS scale of `x`.
        seed: Seed of the initial pair offsets.

    Returns:
        A Python float.
    """
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    batch = x.shape[0]
    best = float(tf.reduce_max(jacobian_norms(model, x)))

    scale = float(tf.sqrt(tf.reduce_mean(tf.square(x)))) or 1.0
    a = x
    b = x + 0.1 * scale * tf.random.stateless_normal(x.shape, (seed, 1))
    axes = list(range(1, len(x.shape)))
    for _ in range(ascent_steps + 1):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            fa = tf.reshape(tf.cast(model(a, training=False), tf.float32), (batch, -1))
            fb = tf.reshape(tf.cast(model(b, training=False), tf.float32), (batch, -1))
            distance = tf.sqrt(tf.reduce_sum(tf.square(a - b), axis=axes) + 1e-30)
            quotient = tf.norm(fa - fb, axis=1) / distance
            total = tf.reduce_sum(quotient)
        best = max(best, float(tf.reduce_max(quotient)))
        grads = tape.gradient(total, [a, b])
        # Normalized steps: the quotient's gradient scale says nothing about a good step.
        lengths = [tf.sqrt(tf.reduce_sum(tf.square(g), axis=axes, keepdims=True)) + 1e-30 for g in grads]
        a, b = (p + step_size * scale * g / n for p, g, n in zip((a, b), grads, lengths))
    return best
