"""Network-level Lipschitz constants: a certified upper bound and an empirical lower bound.

The upper bound walks the model's graph (Sequential chains, functional
graphs with residual connections, merges and several inputs, nested models)
and combines certified per-layer constants by the rules of
`lipschitz_upper_bound`. tflip layers certify themselves through the
`LipschitzLayer` protocol; plain Keras Dense and Conv1D/Conv2D layers and
their transposes are bounded exactly (SVD) or by Gram iteration;
parameter-free layers with known constants are recognised; any other layer
raises unless the caller declares its constant.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tflip._compat import functional_calls, is_functional
from tflip.layers.base import LipschitzLayer
from tflip.lipschitz.spectra import conv_operator
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
    keras.layers.Identity,
    keras.layers.Permute,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
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
    if getattr(layer, "bounds_sublayers", False):  # wrappers (LipschitzResidual) bound their inner layers
        return layer.lipschitz_upper_bound(norm, known=known) * activation
    if isinstance(layer, LipschitzLayer):
        return layer.lipschitz_upper_bound(norm) * activation
    if isinstance(layer, keras.layers.Rescaling):
        return float(np.max(np.abs(layer.scale)))
    if isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation == "nearest":
        # Each input is copied into size_h * size_w outputs.
        return 1.0 if norm == "inf" else math.sqrt(layer.size[0] * layer.size[1])
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
    if type(layer) is keras.layers.Conv2DTranspose and layer.data_format == "channels_last" and norm == "inf":
        # Kernel (kh, kw, filters, c_in): an output entry sums at most all taps of its channel (fewer with strides).
        kernel = tf.transpose(tf.convert_to_tensor(layer.kernel), (0, 1, 3, 2))
        return dense_kernel_norm(tf.reshape(kernel, (-1, layer.filters)), "inf") * activation
    operator = conv_operator(layer) if norm == 2 else None
    if operator is not None:
        # Transposed convolutions are adjoints of a convolution: same 2-norm.
        return conv_norm_upper_bound(*operator) * activation
    raise ValueError(
        f"Layer {layer.name!r} ({type(layer).__name__}) has no known Lipschitz constant; "
        f"pass `known={{{layer.name!r}: constant}}`."
    )


# Merge layers whose output is a sum (Add, Subtract) or mean (Average) of their inputs, and those whose
# output stacks or selects entries of them (Concatenate; Maximum/Minimum: |max(a, b) - max(a', b')| <=
# max(|a - a'|, |b - b'|) per entry, so they are bounded as the concatenation).
_SUM_LAYERS = (keras.layers.Add, keras.layers.Subtract)
_STACK_LAYERS = (keras.layers.Concatenate, keras.layers.Maximum, keras.layers.Minimum)
# Keras ops (`keras.ops.*` or operators on symbolic tensors) that only move or negate entries.
_ISOMETRIC_OPS = {"Reshape", "Transpose", "ExpandDims", "Squeeze", "Negative", "Flatten"}
# Element-wise layers and ops, which broadcast their operands to the output's shape.
_ELEMENTWISE_LAYERS = _SUM_LAYERS + (keras.layers.Average, keras.layers.Maximum, keras.layers.Minimum)
_ELEMENTWISE_OPS = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide"}


def _broadcast(operation, inputs, outputs, matrices, norm):
    """The operands' bound matrices as broadcast to the output's shape.

    Broadcasting copies each entry k = (output size / operand size) times, which multiplies L2 distances by
    sqrt(k) and leaves L-infinity distances as they are.
    """
    layer = isinstance(operation, keras.layers.Layer)
    elementwise = isinstance(operation, _ELEMENTWISE_LAYERS) or (
        not layer and type(operation).__name__ in _ELEMENTWISE_OPS
    )
    if norm != 2 or not elementwise:
        return matrices
    target = tuple(outputs[0].shape[1:])
    broadcast = []
    for tensor, matrix in zip(inputs, matrices):
        shape = tuple(tensor.shape[1:])
        if shape != target and (None in shape or None in target):
            raise ValueError(
                f"Operation {operation.name!r} ({type(operation).__name__}) broadcasts a tensor of shape "
                f"{tensor.shape} to {outputs[0].shape}, by a factor unknown until run time; pass "
                f"`known={{{operation.name!r}: constant}}`."
            )
        factor = 1.0 if shape == target else math.sqrt(math.prod(target) / max(math.prod(shape), 1))
        broadcast.append(_scale(factor, matrix) if factor != 1.0 else matrix)
    return broadcast


# Every tensor of the graph carries a bound matrix B (rows x model inputs): with d_i = ||x_i - y_i||,
# ||f(x) - f(y)||_2 <= ||B d||_2 in L2 and ||f(x) - f(y)||_inf <= max_r (B d)_r in L-infinity. Stacking tensors
# stacks rows, so parts fed by different inputs stay apart until something sums them. B starts nonnegative;
# in L2 every rule reads it only through B^T B, which stays entrywise nonnegative (see `_compact`).

# In L-infinity, more rows than this (after dropping dominated ones) are bounded by their column maxima.
_MAX_ROWS = 64


def _scale(constant, matrix):
    """`constant * matrix`, with `0 * inf = 0`: a zero column means the tensor does not depend on that input."""
    constant = float(constant)
    if math.isinf(constant):
        return np.where(matrix != 0, np.inf, 0.0)
    return constant * matrix


def _compact(matrix, norm):
    """The same bound with at most as many rows as inputs (L2), or without dominated rows (L-infinity).

    Rows only add up at concatenations, so without this a chain of concatenations (DenseNet blocks) would
    double them at every step. L2: the R factor of `B = QR` has the same `B^T B`, which is all the rules use
    (stacking adds it, a sum takes its diagonal, the bound is its top eigenvalue, and `||B e||` grows with
    `e >= 0` because it is entrywise nonnegative). L-infinity: a row below another entry by entry never
    gives the maximum.
    """
    rows, columns = matrix.shape
    if rows <= (columns if norm == 2 else 1) or not np.all(np.isfinite(matrix)):
        return matrix
    if norm == 2:
        return np.linalg.qr(matrix, mode="r")
    kept = []
    for row in matrix[np.argsort(-matrix.sum(axis=1))]:
        if not any(np.all(row <= other) for other in kept):
            kept.append(row)
    return np.array(kept) if len(kept) <= _MAX_ROWS else _row(matrix, norm)


def _stack(matrices, norm):
    """Bound matrix of the concatenation: `||[g; h]||^2 = ||g||^2 + ||h||^2` (L2), the larger part (L-inf)."""
    return _compact(np.concatenate(matrices, axis=0), norm)


def _row(matrix, norm):
    """One row `c` with `c . d` above the matrix's bound for every `d >= 0`: column norms (L2) or maxima (L-inf).

    L2: `||B d|| <= sum_i ||B[:, i]|| d_i` (triangle inequality); L-inf: `max_r (B d)_r <= sum_i max_r B_ri d_i`.
    """
    return np.linalg.norm(matrix, axis=0, keepdims=True) if norm == 2 else np.max(matrix, axis=0, keepdims=True)


def _sum(matrices, norm):
    """Bound matrix of a sum of tensors: the sum of their rows (a sum does not keep its terms apart)."""
    return sum(_row(matrix, norm) for matrix in matrices)


def _constant(matrix, norm):
    """The Lipschitz constant a bound matrix certifies: max of its bound over `||d|| = 1`.

    L2: the spectral norm of B; L-infinity (`||d||_inf = 1`): the largest row sum.
    """
    if not np.all(np.isfinite(matrix)):
        return math.inf
    return float(np.linalg.norm(matrix, 2)) if norm == 2 else float(np.max(np.sum(matrix, axis=1)))


def _compose(outputs, matrices, norm):
    """Bound matrices of a nested model's outputs (`outputs`, w.r.t. its own inputs) called on `matrices`."""
    if len(matrices) == 1:
        # One input: ||f(u) - f(v)|| <= c ||u - v|| with c the nested output's constant, whatever B's rows are.
        return [_scale(_constant(output, norm), matrices[0]) for output in outputs]
    # e_j = ||u_j - v_j|| <= row_j . d, and ||B_o e|| grows with e >= 0 (B_o^T B_o >= 0): ||B_o e|| <= ||B_o C d||.
    rows = np.concatenate([_row(matrix, norm) for matrix in matrices], axis=0)
    with np.errstate(invalid="ignore"):  # 0 * inf from an unbounded part: the bound is infinite anyway
        return [np.nan_to_num(output @ rows, nan=np.inf) for output in outputs]


def _op_bound(operation, args, matrices, norm):
    """Bound matrix of a Keras op applied to tensors with bound matrices `matrices`, or None."""
    if not type(operation).__module__.startswith("keras."):
        return None
    name = type(operation).__name__
    constants = [a for a in args if not isinstance(a, keras.KerasTensor)]
    if name in ("Add", "Subtract"):
        return matrices[0] if len(matrices) == 1 else _sum(matrices, norm)  # a constant operand only translates
    if name in _ISOMETRIC_OPS and len(matrices) == 1:
        return matrices[0]
    if name == "Multiply" and len(matrices) == 1 and len(constants) == 1:
        return _scale(np.max(np.abs(np.asarray(constants[0], "float64"))), matrices[0])
    if name in ("Divide", "TrueDivide") and len(matrices) == 1 and isinstance(args[0], keras.KerasTensor):
        with np.errstate(divide="ignore"):
            return _scale(np.max(1.0 / np.abs(np.asarray(args[1], "float64"))), matrices[0])
    return None


def _call_bound(operation, args, matrices, norm, known):
    """Bound matrix of one call of `operation` on tensors with bound matrices `matrices`."""
    if operation.name in known:
        return _scale(known[operation.name], _stack(matrices, norm))
    if isinstance(operation, _SUM_LAYERS):
        return _sum(matrices, norm)
    if isinstance(operation, keras.layers.Average):
        return _sum(matrices, norm) / len(matrices)
    if isinstance(operation, _STACK_LAYERS):
        return _stack(matrices, norm)
    if isinstance(operation, keras.Model):
        # The nested model's bound matrices (w.r.t. its own inputs, in the order the call feeds them),
        # composed with those of the tensors it is called on.
        return _compose(_output_bounds(operation, norm, known), matrices, norm)
    if isinstance(operation, keras.layers.Layer):
        if len(matrices) != 1:
            raise ValueError(
                f"Layer {operation.name!r} ({type(operation).__name__}) combines several tensors and has no "
                f"known Lipschitz constant; pass `known={{{operation.name!r}: constant}}` (a constant with "
                "respect to the concatenation of its inputs)."
            )
        return _scale(layer_lipschitz_bound(operation, norm, known), matrices[0])
    bound = _op_bound(operation, args, matrices, norm)
    if bound is None:
        raise ValueError(
            f"Operation {operation.name!r} ({type(operation).__name__}) has no known Lipschitz constant "
            f"(products of tensors are not Lipschitz); pass `known={{{operation.name!r}: constant}}`."
        )
    return bound


def _output_bounds(model, norm, known):
    """One bound matrix per output of `model` (rows x inputs of `model`; see `_stack`)."""
    if isinstance(model, keras.Sequential):
        bound = 1.0
        for layer in model.layers:
            bound *= layer_lipschitz_bound(layer, norm, known)
        return [_scale(bound, np.ones((1, 1)))]
    if not is_functional(model):
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}) is subclassed: its graph cannot be read. Bound its "
            f"networks one by one, or pass `known={{{model.name!r}: constant}}` where it is nested."
        )
    count = len(model.inputs)
    bounds = {id(x): np.eye(count)[i : i + 1] for i, x in enumerate(model.inputs)}
    for operation, inputs, args, outputs in functional_calls(model):
        if any(id(x) not in bounds for x in inputs):
            continue  # not connected to the inputs (Keras skips such nodes too)
        matrices = [bounds[id(x)] for x in inputs]
        if operation.name not in known:
            matrices = _broadcast(operation, inputs, outputs, matrices, norm)
        result = _call_bound(operation, args, matrices, norm, known)
        results = result if isinstance(result, list) else [result] * len(outputs)
        for tensor, matrix in zip(outputs, results):
            bounds[id(tensor)] = matrix
    return [bounds[id(x)] for x in model.outputs]


def lipschitz_upper_bound(model, norm=2, known=None):
    """Certified upper bound of a model's Lipschitz constant, by walking its graph.

    Every tensor of the graph gets a certified bound of its Lipschitz
    constant as a function of the model's inputs, from the inputs to the
    outputs:

    - a layer with one input: its certified constant (`layer_lipschitz_bound`,
      activation included) times its input's bound; a Sequential model is
      the product of its layers';
    - `Add`, `Subtract` (and `x + y`, `x - y` on symbolic tensors): the sum
      of the inputs' bounds; `Average`: their mean, so that
      `(g(x) + h(x)) / 2` gets `(L_g + L_h) / 2`, and a convex combination
      never exceeds the largest branch;
    - `Concatenate`, `Maximum`, `Minimum`: in L2 the root of the sum of the
      squared bounds (`||[g; h](x) - [g; h](y)||^2 = ||g(x) - g(y)||^2 +
      ||h(x) - h(y)||^2`) for branches of the same input, the largest for
      branches of different inputs (in general the spectral norm of the
      stacked rows, below); in L-infinity the largest;
    - an operand broadcast k-fold by an element-wise layer or op: `sqrt(k)`
      times its bound in L2 (k copies of each difference), unchanged in
      L-infinity;
    - scaling by a constant (`Rescaling`, `x * c`, `x / c`): `max |c|` times
      the input's bound; reshapes, transposes and negation keep it;
    - nested models recursively (their bounds with respect to their own
      inputs, composed with those of the tensors they are called on);
      `LipschitzResidual` from its branch's bound;
    - products of tensors (`Multiply` layers, `x * y`) and unknown layers
      raise `ValueError` unless their constant is declared in `known`
      (a layer with several inputs: with respect to their concatenation).

    Several inputs and outputs: each tensor carries a nonnegative matrix B,
    one column per input, with `||f(x) - f(y)||_2 <= ||B d||_2` (L2) or
    `||f(x) - f(y)||_inf <= max_r (B d)_r` (L-infinity) for
    `d_i = ||x_i - y_i||`. A concatenation stacks the rows of its parts, so
    parts computed from different inputs stay apart; a sum first bounds each
    part by one row (its column norms in L2, column maxima in L-infinity).
    The result is the bound with respect to the concatenation of all inputs,
    for the concatenation of all outputs: the spectral norm of the stacked
    matrices in L2, their largest row sum in L-infinity. Each rule is tight
    on its own closed form (`x + f(x)` with `f` linear of norm 0.25 in the
    direction of `x` gives 1.25; `[f(x1); g(x2)]` gives `max(L_f, L_g)`);
    composing them can only overestimate.

    Args:
        model: A built `keras.Sequential` or functional `keras.Model`
            (subclassed models cannot be read; bound their networks).
        norm: 2 (default) or "inf"; input and output use the same norm.
        known: Optional dict `{layer_or_op_name: constant}` declaring
            constants of layers tflip cannot bound itself (also nested
            models and symbolic ops, by name).

    Returns:
        A Python float.

    Raises:
        ValueError: If a layer's constant is unknown and not declared, or
            `model` is not built, or is subclassed.

    Example:
        >>> inputs = keras.Input((4,))
        >>> branch = SpectralNormDense(4, lipschitz=0.25)(inputs)
        >>> model = keras.Model(inputs, keras.layers.Add()([inputs, branch]))
        >>> lipschitz_upper_bound(model)  # ~1.25
    """
    norm = check_norm(norm)
    known = known or {}
    if not model.built:
        raise ValueError("`model` must be built before its Lipschitz constant can be bounded.")
    if model.name in known:
        return float(known[model.name])
    return _constant(_stack(_output_bounds(model, norm, known), norm), norm)


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
