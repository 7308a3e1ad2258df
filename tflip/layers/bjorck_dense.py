"""Dense layer with a Björck-orthonormalized kernel (Anil, Lucas, Grosse 2019)."""

import keras
import tensorflow as tf

from tflip import _validation
from tflip.layers.dense_base import ConstrainedDense
from tflip.layers.orthonormalization import OrthonormalizationSettings
from tflip.ops.bjorck import bjorck_orthonormalize, orthonormality_error, polar_express_orthonormalize


@keras.saving.register_keras_serializable(package="tflip")
class BjorckDense(OrthonormalizationSettings, ConstrainedDense):
    """Dense layer whose kernel is `lipschitz` times an orthonormal matrix.

    Every forward pass maps the raw kernel to (an approximation of) the
    closest orthonormal matrix, its polar factor, which is differentiated
    through, so gradient-norm preservation holds during training, not only
    after a projection step. The raw kernel is first divided by a certified
    Gram-iteration bound of its spectral norm, which guarantees convergence.
    Training calls use `training_method`:

    - `"polar_express"` (default): `training_steps` cubic steps with per-step
      optimal coefficients for singular values in `[training_lower, 1]`
      after scaling (Amsel et al. 2025, `polar_express_orthonormalize`),
      sharing `W^T W` between the scale and the first step. The defaults
      keep a kernel trained from the orthogonal initializer orthonormal to
      well under 1e-3 at a fraction of the Björck cost (see docs/layers.md).
      Kernels far from orthonormal (a glorot or random-normal initializer)
      need a smaller `training_lower` and one or two more steps.
    - `"bjorck"`: `iterations` Björck-Bowie steps of order `order` (Anil et
      al. eq. 3, appendix B; the paper uses 2-3 with order 1).

    Inference uses `inference_iterations` Björck steps so that a trained
    layer is orthonormal to about 1e-6 (the paper raises it to 15+ at the end
    of training). Wide, square and tall kernels are supported; the
    iterations run on the smaller Gram side.

    Args:
        units: Output dimension.
        lipschitz: Gain `k`: all singular values of the effective kernel
            equal `k`, so the layer's Lipschitz constant is exactly `k`.
        iterations: Björck steps per training call with
            `training_method="bjorck"` (>= 1).
        inference_iterations: Björck steps at inference (>= `iterations`
            is sensible; defaults to 20).
        order: Taylor order `p` of each Björck step (>= 1).
        training_method: `"polar_express"` or `"bjorck"`: the
            orthonormalization differentiated in training calls.
        training_steps: Cubic steps per training call with
            `training_method="polar_express"` (>= 1).
        training_lower: Lower end, in (0, 1], of the singular values of the
            scaled kernel that the `"polar_express"` schedule is optimized
            for; smaller values cover worse-conditioned kernels at a larger
            error for the same `training_steps`.
        **kwargs: `activation`, `use_bias`, initializers (default kernel
            initializer "orthogonal"), regularizers and constraints as in
            `keras.layers.Dense`, and base layer arguments.

    Call arguments:
        inputs: Tensor `(..., input_dim)`.
        training: Selects `training_method` (True) or `inference_iterations`.

    Returns:
        Tensor `(..., units)`.

    Example:
        >>> layer = BjorckDense(64)
        >>> y = layer(tf.random.normal((8, 64)))
    """

    default_kernel_initializer = "orthogonal"

    def __init__(
        self,
        units,
        lipschitz=1.0,
        iterations=5,
        inference_iterations=20,
        order=1,
        training_method="polar_express",
        training_steps=3,
        training_lower=0.35,
        **kwargs,
    ):
        super().__init__(units, lipschitz=lipschitz, **kwargs)
        self.iterations = _validation.positive_int("iterations", iterations)
        self.training_method = _validation.one_of("training_method", training_method, ("polar_express", "bjorck"))
        self.set_orthonormalization_settings(inference_iterations, training_steps, training_lower)
        self.order = _validation.positive_int("order", order)

    def effective_kernel(self, training=False, iterations=None):
        """`lipschitz * polar(W)` in float32.

        Training calls (`iterations=None`) use `training_method`; otherwise
        `iterations` Björck steps (default `inference_iterations`), the exact
        uncached computation.
        """
        if training and iterations is None and self.training_method == "polar_express":
            kernel = polar_express_orthonormalize(self.raw_kernel(), self.training_steps, self.training_lower)
            return self.lipschitz * kernel
        if iterations is None:
            iterations = self.iterations if training else self.inference_iterations
        return self.lipschitz * bjorck_orthonormalize(self.raw_kernel(), iterations, self.order)

    def operator_norm(self):
        """Largest singular value of the effective kernel at inference (float32 SVD)."""
        return tf.linalg.svd(self.inference_kernel(), compute_uv=False)[0]

    def orthonormality_error(self, iterations=None):
        """max_i |sigma_i / lipschitz - 1| of the effective kernel (after `iterations` steps)."""
        return orthonormality_error(self.effective_kernel(iterations=iterations) / self.lipschitz)

    def get_config(self):
        return {
            **super().get_config(),
            "iterations": self.iterations,
            "order": self.order,
            "training_method": self.training_method,
            **self.orthonormalization_config(),
        }
