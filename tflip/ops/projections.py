"""Exact Euclidean projections onto L1 balls and onto the L-infinity operator-norm ball.

A Dense kernel `K` of shape `(in, out)` (Keras convention, `y = x @ K`) has the
L-infinity operator norm `max_j sum_i |K[i, j]|`, so bounding it is the same as
bounding the L1 norm of every column. Anil, Lucas and Grosse, "Sorting out
Lipschitz Function Approximation" (ICML 2019, sec. 4.2.2), enforce this by
projecting each column with Algorithm 1 of Condat, "Fast projection onto the
simplex and the l1 ball" (Mathematical Programming 158, 2016): the sort-based
exact method, which vectorizes well because it has no data-dependent loop.
"""

import numbers

import tensorflow as tf

from tflip._validation import positive_number

# Cumulative sums in half precision lose the threshold entirely for long vectors.
_LOW_PRECISION_DTYPES = (tf.float16, tf.bfloat16)


def _at_least_float32(tensor):
    return tf.cast(tensor, tf.float32) if tensor.dtype in _LOW_PRECISION_DTYPES else tensor


def _floating_tensor(name, value):
    tensor = tf.convert_to_tensor(value)
    if not tensor.dtype.is_floating:
        raise ValueError(f"`{name}` must be a floating-point tensor, got dtype {tensor.dtype.name}.")
    return tensor


def _matrix(name, kernel):
    kernel = _floating_tensor(name, kernel)
    if kernel.shape.rank != 2:
        raise ValueError(f"`{name}` must be a 2-D (inputs, outputs) kernel, got shape {kernel.shape}.")
    return kernel


def _radius_tensor(radius, dtype):
    # Python numbers are checked here; tensors (e.g. one radius per vector) cannot
    # be checked without forcing a host round trip, so they are trusted.
    if isinstance(radius, numbers.Number):
        radius = positive_number("radius", radius)
    return tf.cast(radius, dtype)


def _l1_ball_threshold(magnitudes, radius, axis):
    """Condat's Algorithm 1: the soft threshold `tau` with sum(max(|v| - tau, 0)) = radius.

    Only meaningful for vectors outside the ball (the caller keeps the others).
    """
    rank = magnitudes.shape.rank
    sorted_magnitudes = tf.sort(magnitudes, axis=axis, direction="DESCENDING")
    partial_sums = tf.cumsum(sorted_magnitudes, axis=axis)
    count_shape = [1] * rank
    count_shape[axis] = -1
    counts = tf.reshape(
        tf.cast(tf.range(1, tf.shape(magnitudes)[axis] + 1), magnitudes.dtype), count_shape
    )
    candidate_thresholds = (partial_sums - radius) / counts
    # The entries kept by the projection are the `rho` largest ones, rho being the
    # last k with u_k > (S_k - radius) / k. k = 1 always qualifies mathematically;
    # the floor of 1 covers a radius so small that u_1 - radius rounds to u_1.
    in_support = sorted_magnitudes > candidate_thresholds
    support_size = tf.reduce_max(
        tf.where(in_support, counts, tf.ones_like(counts)), axis=axis, keepdims=True
    )
    # Selecting with a mask instead of a gather keeps the op XLA-friendly for any
    # `axis` and lets gradients flow into the selected partial sum.
    return tf.reduce_sum(
        tf.where(tf.equal(counts, support_size), candidate_thresholds, tf.zeros_like(candidate_thresholds)),
        axis=axis,
        keepdims=True,
    )


def project_l1_ball(v, radius, axis=-1):
    """Euclidean projection of every vector along `axis` onto the L1 ball of `radius`.

    Implements the sort-based exact Algorithm 1 of Condat (2016): sort `|v|` in
    decreasing order, take cumulative sums `S_k`, find the largest `rho` with
    `u_rho > (S_rho - radius) / rho`, set `tau = (S_rho - radius) / rho` and return
    `sign(v) * max(|v| - tau, 0)`. All other axes are processed at once, with no
    data-dependent loop, so the op runs under `tf.function(jit_compile=True)` and
    is differentiable (gradients flow through the sort and the selection).

    Vectors already in the ball (L1 norm <= `radius`) are returned bit for bit
    unchanged; they are not pushed onto the sphere. Projected vectors are
    rescaled by `min(1, radius / L1)` at the end, which only removes floating
    point overshoot, so they lie in the ball up to a few ulps of `radius`.

    Args:
        v: Floating-point tensor of static rank. float16/bfloat16 inputs are
            projected in float32 and cast back.
        radius: Positive scalar, or a positive tensor broadcastable to `v` with
            `axis` reduced to size 1 (one radius per vector).
        axis: The axis holding the vectors to project.

    Returns:
        A tensor of the shape and dtype of `v`.

    Example:
        >>> project_l1_ball([[3.0, -1.0], [0.2, 0.3]], radius=1.0).numpy()
        array([[ 1. , -0. ],
               [ 0.2,  0.3]], dtype=float32)
    """
    v = _floating_tensor("v", v)
    rank = v.shape.rank
    if rank is None or rank == 0:
        raise ValueError(f"`v` must have a known rank >= 1, got shape {v.shape}.")
    if not -rank <= axis < rank:
        raise ValueError(f"`axis` must be in [{-rank}, {rank}) for a rank-{rank} `v`, got {axis}.")
    axis %= rank
    values = _at_least_float32(v)
    radius = _radius_tensor(radius, values.dtype)
    magnitudes = tf.abs(values)
    inside = tf.reduce_sum(magnitudes, axis=axis, keepdims=True) <= radius
    shrunk = tf.nn.relu(magnitudes - _l1_ball_threshold(magnitudes, radius, axis))
    # |v_i| - tau cannot be resolved finer than ulp(|v_i|), so when |v| is large
    # against the radius the L1 norm overshoots it by several ulps (or far more).
    # Rescaling the overshoot away makes the result feasible to float rounding; on
    # the exact solution the factor is 1 and its gradient vanishes.
    shrunk_norms = tf.reduce_sum(shrunk, axis=axis, keepdims=True)
    shrunk *= tf.minimum(tf.ones_like(shrunk_norms), tf.math.divide_no_nan(radius, shrunk_norms))
    projected = tf.sign(values) * shrunk
    # Selecting the original `v` (not its float32 copy) makes "inside" an exact identity.
    return tf.where(inside, v, tf.cast(projected, v.dtype))


def linf_operator_norm(kernel):
    """Matrix infinity-norm of the map `x -> x @ kernel`: `max_j sum_i |kernel[i, j]|`.

    This is the Lipschitz constant of the linear map with respect to the
    L-infinity norm on inputs and outputs.

    Args:
        kernel: 2-D floating-point tensor of shape `(inputs, outputs)`.

    Returns:
        A scalar tensor, float32 for float16/bfloat16/float32 kernels (a half
        precision sum could overflow) and float64 for float64 kernels.

    Example:
        >>> float(linf_operator_norm([[1.0, -2.0], [0.5, 1.0]]))
        3.0
    """
    kernel = _at_least_float32(_matrix("kernel", kernel))
    return tf.reduce_max(tf.reduce_sum(tf.abs(kernel), axis=0))


def project_linf_operator(kernel, radius):
    """Projects `kernel` onto the set `{K : linf_operator_norm(K) <= radius}`.

    That set is a product of L1 balls, one per output column, so the Euclidean
    (Frobenius) projection projects each column `kernel[:, j]` (the weights
    feeding output `j`) onto the L1 ball of `radius` with `project_l1_ball`.
    Columns already inside are left bit for bit unchanged.

    Args:
        kernel: 2-D floating-point tensor of shape `(inputs, outputs)`.
        radius: Positive scalar bound on the operator norm.

    Returns:
        A tensor of the shape and dtype of `kernel`.

    Example:
        >>> project_linf_operator([[3.0, 0.5], [-1.0, 0.25]], radius=1.0).numpy()
        array([[ 1.  ,  0.5 ],
               [-0.  ,  0.25]], dtype=float32)
    """
    return project_l1_ball(_matrix("kernel", kernel), radius, axis=0)
