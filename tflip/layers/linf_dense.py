"""Dense layer whose kernel is projected onto the L-infinity operator-norm ball.

Anil, Lucas and Grosse, "Sorting out Lipschitz Function Approximation" (ICML 2019,
sec. 4.2.2 and app. G.4), build networks that are Lipschitz with respect to the
L-infinity norm by projecting every weight matrix so that its matrix
infinity-norm is at most 1, using Algorithm 1 of Condat, "Fast projection onto
the simplex and the l1 ball" (2016). They report that projecting after each
gradient update and projecting in the forward pass work equally well; both are
offered here.
"""

import keras

from tflip._validation import one_of, positive_number
from tflip.layers.dense_base import ConstrainedDense
from tflip.ops.projections import linf_operator_norm, project_linf_operator

_PROJECTIONS = ("forward", "constraint")


@keras.saving.register_keras_serializable(package="tflip")
class LInfBallConstraint(keras.constraints.Constraint):
    """Keeps a `(inputs, outputs)` kernel's matrix infinity-norm at most `radius`.

    Projects each column (the weights feeding one output) onto the L1 ball of
    `radius` with Condat's (2016) exact Algorithm 1. Columns already inside the
    ball are left unchanged, so applying it to a feasible kernel is a no-op.

    Args:
        radius: Positive bound on `max_j sum_i |kernel[i, j]|`.

    Example:
        >>> layer = keras.layers.Dense(8, kernel_constraint=LInfBallConstraint(1.0))
    """

    def __init__(self, radius=1.0):
        self.radius = positive_number("radius", radius)

    def __call__(self, w):
        # Keras variables created with autocast=False read at their float32 dtype.
        return project_linf_operator(keras.ops.convert_to_tensor(w), self.radius)

    def get_config(self):
        return {"radius": self.radius}


@keras.saving.register_keras_serializable(package="tflip")
class LInfProjectedDense(ConstrainedDense):
    """Dense layer that is `lipschitz`-Lipschitz with respect to the L-infinity norm.

    The kernel acting on the input (the "effective kernel") is the Euclidean
    projection of the trainable kernel onto `{K : max_j sum_i |K[i, j]| <= lipschitz}`,
    computed column by column with Condat's (2016) sort-based Algorithm 1, as in
    Anil et al. (2019), sec. 4.2.2. Since `||x @ K||_inf <= ||K||_inf * ||x||_inf`
    for that matrix norm, the affine map `x -> x @ K + b` is `lipschitz`-Lipschitz
    in L-infinity. An element-wise 1-Lipschitz `activation` (ReLU, tanh, ...)
    preserves the bound; other activations are the caller's responsibility.

    Two ways to enforce the projection:

    - `"forward"` (default): project in every forward pass, differentiably. The
      variable holds the unconstrained parameters and is never overwritten.
    - `"constraint"`: `LInfBallConstraint` projects the variable after every
      optimizer update (and the initial value is projected too), and the forward
      pass uses the variable as is, which makes inference cheaper.

    Args:
        units: Number of output features.
        lipschitz: Positive bound on the matrix infinity-norm of the effective
            kernel, i.e. the layer's L-infinity Lipschitz constant.
        projection: `"forward"` or `"constraint"`, see above.
        **kwargs: `activation` (applied to the output), `use_bias` (a bias
            does not change the Lipschitz constant), `kernel_initializer` (of
            the unconstrained kernel), `bias_initializer`,
            `kernel_regularizer` (on the unconstrained kernel variable),
            `bias_regularizer`, as in `keras.layers.Dense`, and the base
            `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor of shape `(..., input_dim)`.

    Returns:
        Tensor of shape `(..., units)` in the layer's compute dtype.

    Example:
        >>> layer = LInfProjectedDense(16, lipschitz=1.0)
        >>> y = layer(np.random.randn(4, 8).astype("float32"))
        >>> float(layer.operator_norm()) <= 1.0 + 1e-6
        True
    """

    def __init__(self, units, lipschitz=1.0, projection="forward", **kwargs):
        super().__init__(units, lipschitz=lipschitz, **kwargs)
        self.projection = one_of("projection", projection, _PROJECTIONS)

    def kernel_initializer_and_constraint(self):
        if self.projection == "forward":
            return self.kernel_initializer, self.kernel_constraint
        if self.kernel_constraint is not None:
            raise ValueError("`kernel_constraint` cannot be combined with projection='constraint'.")
        constraint = LInfBallConstraint(self.lipschitz)

        # The constraint only runs after optimizer updates; projecting the
        # initial value keeps the bound true before the first step too.
        def initializer(shape, dtype=None):
            return constraint(self.kernel_initializer(shape, dtype=dtype))

        return initializer, constraint

    def kernel_cache_sources(self):
        # A kernel projected after each update is used as it is: nothing to cache.
        return [self.kernel] if self.projection == "forward" else None

    def effective_kernel(self, training=False):
        """The float32 kernel acting on the input (projected in forward mode)."""
        kernel = self.raw_kernel()
        if self.projection == "forward":
            return project_linf_operator(kernel, self.lipschitz)
        return kernel

    def operator_norm(self):
        """Matrix infinity-norm of the effective kernel (float32 scalar tensor)."""
        return linf_operator_norm(self.inference_kernel())

    def lipschitz_upper_bound(self, norm="inf"):
        """Exact Lipschitz constant of the layer's linear part.

        Args:
            norm: `"inf"` (default; the metric this layer constrains) or `2`
                (the largest singular value, not bounded by `lipschitz` in
                general).

        Returns:
            A Python float.
        """
        return super().lipschitz_upper_bound(norm)

    def get_config(self):
        return {**super().get_config(), "projection": self.projection}
