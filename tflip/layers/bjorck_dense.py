"""Dense layer with a Björck-orthonormalized kernel (Anil, Lucas, Grosse 2019)."""

import keras
import tensorflow as tf

from tflip import _validation
from tflip.layers.dense_base import ConstrainedDense
from tflip.ops.bjorck import bjorck_orthonormalize, orthonormality_error


@keras.saving.register_keras_serializable(package="tflip")
class BjorckDense(ConstrainedDense):
    """Dense layer whose kernel is `lipschitz` times an orthonormal matrix.

    Every forward pass maps the raw kernel to the closest orthonormal matrix
    by the Björck-Bowie iteration (Anil et al. eq. 3, appendix B), which is
    differentiated through, so gradient-norm preservation holds during
    training, not only after a projection step. The raw kernel is first
    divided by a certified Gram-iteration bound of its spectral norm, which
    guarantees convergence (appendix B.3). The number of steps is fixed:
    `iterations` in training (the paper uses 2-3 with order 1; the default 5
    is a little tighter), `inference_iterations` at inference so that a
    trained layer is orthonormal to about 1e-6 (the paper raises it to 15+
    at the end of training). Wide, square and tall kernels are supported;
    the iteration runs on the smaller Gram side.

    Args:
        units: Output dimension.
        lipschitz: Gain `k`: all singular values of the effective kernel
            equal `k`, so the layer's Lipschitz constant is exactly `k`.
        iterations: Björck steps per training call (>= 1).
        inference_iterations: Björck steps at inference (>= `iterations`
            is sensible; defaults to 20).
        order: Taylor order `p` of each step (>= 1).
        **kwargs: `activation`, `use_bias`, initializers (default kernel
            initializer "orthogonal"), regularizers and constraints as in
            `keras.layers.Dense`, and base layer arguments.

    Call arguments:
        inputs: Tensor `(..., input_dim)`.
        training: Selects `iterations` (True) or `inference_iterations`.

    Returns:
        Tensor `(..., units)`.

    Example:
        >>> layer = BjorckDense(64)
        >>> y = layer(tf.random.normal((8, 64)))
    """

    default_kernel_initializer = "orthogonal"

    def __init__(self, units, lipschitz=1.0, iterations=5, inference_iterations=20, order=1, **kwargs):
        super().__init__(units, lipschitz=lipschitz, **kwargs)
        self.iterations = _validation.positive_int("iterations", iterations)
        self.inference_iterations = inference_iterations
        self.order = _validation.positive_int("order", order)

    @property
    def inference_iterations(self):
        return self._inference_iterations

    @inference_iterations.setter
    def inference_iterations(self, value):
        self._inference_iterations = _validation.positive_int("inference_iterations", value)
        # The cached kernel was computed with the old count.
        self.invalidate_kernel_cache()

    def effective_kernel(self, training=False, iterations=None):
        """`lipschitz * bjorck(W)` in float32; `iterations` overrides the mode's count."""
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
            "inference_iterations": self.inference_iterations,
            "order": self.order,
        }
