"""Spectral normalization with persistent power iteration: Dense and the exact-norm Conv2D."""

import keras
import tensorflow as tf

from tflip import _validation
from tflip.layers.base import KernelBiasLayer, LipschitzLayer, float32_variable_read, resolve_training
from tflip.layers.conv_options import ConvolutionOptions
from tflip.layers.dense_base import ConstrainedDense
from tflip.layers.kernel_cache import CachedKernelLayer
from tflip.ops.conv import ConvGeometry, conv_norm_upper_bound
from tflip.ops.norms import check_norm, dense_kernel_norm
from tflip.ops.power_iteration import (
    l2_normalize,
    matrix_operators,
    power_iteration,
    rayleigh_norm,
    top_singular_vector,
)

_MIN_SIGMA = 1e-12


class PowerIterationNormalizer:
    """Mixin: divides a kernel by its operator norm, estimated by persistent power iteration.

    The right singular vector estimate lives in a non-trainable weight
    `power_vector` (saved with the model; `only_first_replica` aggregation so
    replicas under `tf.distribute` stay identical). Each training-mode call
    runs `power_iterations` steps from it and stores the result; inference
    reuses the stored vector without updating it. The norm itself is always
    recomputed from the current kernel as ||A u|| so that gradients flow
    through it (Miyato et al. 2018).
    """

    def add_power_vector(self, shape):
        self.power_vector = self.add_weight(
            name="power_vector",
            shape=shape,
            initializer=keras.initializers.RandomNormal(),
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )

    def normalize(self, kernel, operators, training):
        """Returns `kernel * lipschitz / sigma` with sigma = ||A u|| (float32)."""
        apply, apply_adjoint = operators
        u = float32_variable_read(self.power_vector)
        if training:
            u = power_iteration(apply, apply_adjoint, u, self.power_iterations)
            self.power_vector.assign(u)
        else:
            u = tf.stop_gradient(l2_normalize(u))
        sigma = tf.maximum(rayleigh_norm(apply, u), _MIN_SIGMA)
        return kernel * (self.lipschitz / sigma)

    def converge_power_vector(self, tolerance=1e-7, max_iterations=500):
        """Replaces the stored vector by the top singular vector of the current raw kernel.

        One power-iteration step per training call tracks a moving kernel
        with a lag, and the stored vector then under-estimates the norm: the
        layer's effective constant exceeds `lipschitz` (measured 1.02-1.04
        during a fast digits WGAN run). This converges the vector by block
        power iteration (`tflip.ops.power_iteration.top_singular_vector`, in
        float32: measured within about 1e-5 of the exact norm), so the
        inference-mode normalization is exact to that accuracy until the
        kernel changes again. Not for use inside a training step.

        Args:
            tolerance: relative change of the norm between iterations at
                which the block iteration stops.
            max_iterations: cap on the block iterations.

        Returns:
            `(stored_norm, converged_norm)` as Python floats: the norm the
            stored vector gave (what inference divided by) and the converged
            norm; `converged_norm / stored_norm` is the factor by which the
            layer exceeded `lipschitz` before the call.
        """
        operators = self.kernel_operators()
        stored = float32_variable_read(self.power_vector)
        stored_norm = float(rayleigh_norm(operators[0], l2_normalize(stored)))
        norm, vector = top_singular_vector(*operators, stored, tolerance=tolerance, max_iterations=max_iterations)
        self.power_vector.assign(vector)
        return stored_norm, norm

    def kernel_operators(self):
        """`(apply, apply_adjoint)` of the raw (unnormalized) float32 kernel."""
        raise NotImplementedError

    def estimated_norm(self, kernel, operators):
        """||A u'|| after one fresh power step from the stored vector (no state change)."""
        u = power_iteration(*operators, float32_variable_read(self.power_vector), 1)
        return rayleigh_norm(operators[0], u)


@keras.saving.register_keras_serializable(package="tflip")
class SpectralNormDense(PowerIterationNormalizer, ConstrainedDense):
    """Dense layer divided by the spectral norm of its kernel (Miyato et al. 2018).

    The effective kernel is `k * W / sigma(W)` where sigma is estimated by
    persistent power iteration, computed in the forward pass and
    differentiated through (the variable `W` itself is never rescaled).

    Args:
        units: Output dimension.
        lipschitz: The gain `k` (Sargent thesis sec. 5.5.1); the layer is
            `k`-Lipschitz once the power iteration has converged.
        power_iterations: Power-iteration steps per training call (>= 1).
        **kwargs: `activation`, `use_bias`, initializers, regularizers and
            constraints as in `keras.layers.Dense`, and base layer arguments.

    Call arguments:
        inputs: Tensor `(..., input_dim)`.
        training: Whether to advance the power iteration.

    Returns:
        Tensor `(..., units)`.

    Example:
        >>> layer = SpectralNormDense(64, lipschitz=1.0)
        >>> y = layer(tf.random.normal((8, 32)), training=True)
    """

    def __init__(self, units, lipschitz=1.0, power_iterations=1, **kwargs):
        super().__init__(units, lipschitz=lipschitz, **kwargs)
        self.power_iterations = _validation.positive_int("power_iterations", power_iterations)

    def build_state(self, input_dim):
        self.add_power_vector((1, input_dim))

    def kernel_cache_sources(self):
        return [self.kernel, self.power_vector]

    def kernel_operators(self):
        return matrix_operators(self.raw_kernel())

    def effective_kernel(self, training=False):
        kernel = self.raw_kernel()
        return self.normalize(kernel, matrix_operators(kernel), training)

    def operator_norm(self):
        """Power-iteration estimate of the effective kernel's spectral norm (about `lipschitz`)."""
        kernel = self.inference_kernel()
        return self.estimated_norm(kernel, matrix_operators(kernel))

    def get_config(self):
        return {**super().get_config(), "power_iterations": self.power_iterations}


@keras.saving.register_keras_serializable(package="tflip")
class SpectralNormConv2D(
    PowerIterationNormalizer, CachedKernelLayer, ConvolutionOptions, KernelBiasLayer, keras.layers.Layer, LipschitzLayer
):
    """Conv2D normalized by the exact operator norm of the convolution.

    With `norm="toeplitz"` (default) the kernel is divided by the largest
    singular value of the convolution as a linear map on the layer's actual
    input size, i.e. of its doubly-block-Toeplitz matrix including strides
    and zero padding (Sargent thesis sec. 4.1.2). The norm is estimated by
    persistent power iteration through the convolution and its adjoint, the
    transposed convolution (Sargent lemma 2.4.9), on a single input-sized
    vector, so the matrix is never formed. `norm="reshape"` divides by the
    norm of the kernel reshaped to `(kh * kw * c_in, c_out)` instead (Miyato
    et al. 2018): cheaper, but that is not the operator norm, and the layer's
    true Lipschitz constant can exceed `lipschitz` by a large factor (lemma
    2.4.8). It is kept for comparison.

    The normalization is exact for inputs of the size seen at build time (or
    `input_size`); with "same" padding a larger input can have a slightly
    larger norm.

    Args:
        filters: Number of output channels.
        kernel_size: Int or pair.
        strides: Int or pair.
        padding: `"same"` or `"valid"`.
        norm: `"toeplitz"` (exact operator norm) or `"reshape"`.
        lipschitz: The per-layer gain `k` of the thesis (sec. 5.5.1).
        power_iterations: Power-iteration steps per training call (>= 1).
        dilation_rate: Int or pair (only with strides 1, as in TensorFlow).
        input_size: Optional `(h, w)`; required when the model's spatial size
            is not static at build time.
        data_format: Only `"channels_last"` is supported.
        use_bias: Whether to add a bias, as in `keras.layers.Conv2D`.
        activity_regularizer: As in `keras.layers.Conv2D`.
        **kwargs: `activation`, `kernel_initializer`, `bias_initializer`,
            `kernel_regularizer`, `bias_regularizer`, `kernel_constraint`,
            `bias_constraint` as in `keras.layers.Conv2D`, and the base
            `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor `(batch, h, w, c_in)` (channels last).
        training: Whether to advance the power iteration.

    Returns:
        Tensor `(batch, h_out, w_out, filters)`.

    Example:
        >>> layer = SpectralNormConv2D(32, 3, strides=2, lipschitz=1.0)
        >>> y = layer(tf.random.normal((8, 16, 16, 3)), training=True)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        norm="toeplitz",
        lipschitz=1.0,
        power_iterations=1,
        dilation_rate=1,
        input_size=None,
        data_format="channels_last",
        use_bias=True,
        activity_regularizer=None,
        **kwargs,
    ):
        self.init_with_weight_options(kwargs, use_bias, activity_regularizer, "glorot_uniform")
        self.set_convolution_options(
            filters, kernel_size, strides, padding, {"same", "valid"}, lipschitz, input_size, data_format
        )
        self.norm = _validation.one_of("norm", norm, {"toeplitz", "reshape"})
        self.power_iterations = _validation.positive_int("power_iterations", power_iterations)
        self.dilation_rate = _validation.int_pair("dilation_rate", dilation_rate)
        if max(self.dilation_rate) > 1 and max(self.strides) > 1:
            raise ValueError(
                f"`dilation_rate` {self.dilation_rate} > 1 cannot be combined with "
                f"`strides` {self.strides} > 1 (TensorFlow does not support it)."
            )

    def build(self, input_shape):
        c_in = self.resolve_input_size(input_shape, required=True)
        self.check_valid_padding_size(self.geometry.effective_kernel_size(self.kernel_size))
        self.add_kernel_and_bias((*self.kernel_size, c_in, self.filters), self.kernel_initializer,
                                 self.kernel_constraint)
        if self.norm == "toeplitz":
            self.add_power_vector((1, *self.input_size, c_in))
        else:
            self.add_power_vector((1, self.kernel_size[0] * self.kernel_size[1] * c_in))
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: c_in})
        self.build_kernel_cache(self.kernel.shape)

    def kernel_cache_sources(self):
        return [self.kernel, self.power_vector]

    @property
    def geometry(self):
        return ConvGeometry(self.input_size, self.strides, self.padding, self.dilation_rate)

    def _operators(self, kernel):
        if self.norm == "toeplitz":
            return self.geometry.operators(kernel)
        return matrix_operators(tf.reshape(kernel, (-1, self.filters)))

    def kernel_operators(self):
        return self._operators(float32_variable_read(self.kernel))

    def effective_kernel(self, training=False):
        """The normalized kernel `k * K / sigma(K)` in float32."""
        kernel = float32_variable_read(self.kernel)
        return self.normalize(kernel, self._operators(kernel), training)

    def call(self, inputs, training=None):
        kernel = keras.ops.cast(self.call_kernel(resolve_training(training)), self.compute_dtype)
        outputs = tf.nn.convolution(
            inputs, kernel, strides=self.strides, padding=self.padding.upper(), dilations=self.dilation_rate
        )
        return self.add_bias_and_activate(outputs)

    def compute_output_shape(self, input_shape):
        batch, h, w, _ = input_shape
        geometry = ConvGeometry((h, w), self.strides, self.padding, self.dilation_rate)
        return (batch, *geometry.output_size(self.kernel_size), self.filters)

    def operator_norm(self):
        """The norm the layer's own power iteration measures of its effective map (about `lipschitz`).

        For `norm="reshape"` that is the reshaped-kernel norm, not the
        convolution's: compare with `lipschitz_upper_bound()`.
        """
        kernel = self.inference_kernel()
        return self.estimated_norm(kernel, self._operators(kernel))

    def lipschitz_upper_bound(self, norm=2, iterations=6):
        """Certified upper bound of the effective convolution's operator norm.

        `norm=2`: Gram iteration on the polyphase frequency blocks (see
        `tflip.ops.conv.conv_norm_upper_bound`). `norm="inf"`: the largest L1
        norm of the taps feeding one output channel.
        """
        kernel = self.inference_kernel()
        if check_norm(norm) == "inf":
            return dense_kernel_norm(tf.reshape(kernel, (-1, self.filters)), "inf")
        return conv_norm_upper_bound(kernel, self.geometry, iterations)

    def plain_keras_layer(self):
        """A built `keras.layers.Conv2D` holding the inference kernel (float32) and bias."""
        conv = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            **self.plain_layer_options(),
        )
        conv.build((None, *self.input_size, self.kernel.shape[2]))
        conv.set_weights([self.inference_kernel().numpy()] + ([self.bias.numpy()] if self.use_bias else []))
        return conv

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **self.convolution_options_config(),
                "norm": self.norm,
                "power_iterations": self.power_iterations,
                "dilation_rate": self.dilation_rate,
                **self.weight_options_config(),
            }
        )
        return config
