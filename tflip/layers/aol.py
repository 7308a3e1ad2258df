"""Almost-orthogonal layers (AOL): Dense and Conv2D rescaled to be 1-Lipschitz without iterations."""

import keras
import tensorflow as tf

from tflip.layers.base import KernelBiasLayer, LipschitzLayer, float32_variable_read, resolve_training
from tflip.layers.conv_options import ConvolutionOptions
from tflip.layers.dense_base import ConstrainedDense
from tflip.layers.kernel_cache import CachedKernelLayer
from tflip.ops.aol import aol_rescale, rescaled_norm_upper_bound
from tflip.ops.conv import ConvGeometry, conv_norm_upper_bound
from tflip.ops.norms import check_norm, dense_kernel_norm


@keras.saving.register_keras_serializable(package="tflip")
class AOLDense(ConstrainedDense):
    """Dense layer whose inputs are rescaled by the AOL diagonal (Prach and Lampert, ECML 2022).

    The effective kernel is `lipschitz * D W` with

        D = diag(sum_j |W W^T|_ij)^(-1/2)

    (theorem 1 of the paper, written for the Keras layout `x -> x @ W`, i.e.
    P = W^T there). By the Schur test `||D W||_2 <= 1` for every W, so the
    layer is certified `lipschitz`-Lipschitz with no iterative state; D W is
    exactly orthogonal when W has orthogonal rows, and close to it when W W^T
    is nearly diagonal (hence "almost orthogonal"). The trainable variable is
    never rescaled; D is recomputed from it in every training call and cached
    at inference.

    Args:
        units: Output dimension.
        lipschitz: The gain `k`: the effective kernel is `k` times the AOL-rescaled one.
        **kwargs: `activation`, `use_bias`, initializers (default
            `"orthogonal"`: D W is then orthogonal at initialization),
            regularizers and constraints as in `keras.layers.Dense`, and base
            layer arguments.

    Call arguments:
        inputs: Tensor `(..., input_dim)`.
        training: Whether to recompute the rescaled kernel (differentiably).

    Returns:
        Tensor `(..., units)`.

    Example:
        >>> layer = AOLDense(64)
        >>> y = layer(tf.random.normal((8, 32)), training=True)
    """

    default_kernel_initializer = "orthogonal"

    def effective_kernel(self, training=False):
        """`lipschitz * D W` in float32 (theorem 1)."""
        return self.lipschitz * aol_rescale(self.raw_kernel())

    def operator_norm(self):
        """Largest singular value of the effective kernel at inference (float32 SVD; at most `lipschitz`)."""
        return tf.linalg.svd(self.inference_kernel(), compute_uv=False)[0]


@keras.saving.register_keras_serializable(package="tflip")
class AOLConv2D(CachedKernelLayer, ConvolutionOptions, KernelBiasLayer, keras.layers.Layer, LipschitzLayer):
    """Conv2D whose input channels are rescaled by the AOL diagonal (Prach and Lampert, ECML 2022).

    The effective kernel is `lipschitz * K D` (input channel i scaled by d_i) with

        d_i = (sum_j sum_delta |M[delta, i, j]|)^(-1/2),
        M[delta, i, j] = sum_{a, o} K[a + delta, i, o] K[a, j, o],

    where M, the cross-correlation of the kernel with itself over all spatial
    offsets delta, is the kernel of A^T A for the convolution A (theorem 2 of
    the paper); it is computed with one small convolution of the kernel with
    itself (`tflip.ops.aol.gram_autocorrelation`). The bound holds for the
    convolution on l2(Z^2), so the layer is certified `lipschitz`-Lipschitz
    for every input size, with "same" or "valid" zero padding and any strides
    (a strided or padded convolution is a sub-matrix of that operator). No
    iterative state: the rescaled kernel is recomputed from the trainable
    variable in each training call and cached at inference.

    Args:
        filters: Number of output channels.
        kernel_size: Int or pair.
        strides: Int or pair.
        padding: `"same"` or `"valid"`.
        lipschitz: The gain `k`: the effective kernel is `k` times the AOL-rescaled one.
        input_size: Optional `(h, w)` used by `lipschitz_upper_bound` (the
            exact norm of the convolution on that size) and the spectrum
            monitors; taken from the input shape at build when static. The
            layer itself works on any input size.
        data_format: Only `"channels_last"` is supported.
        use_bias: Whether to add a bias.
        activity_regularizer: As in `keras.layers.Conv2D`.
        **kwargs: `activation`, `kernel_initializer` (default `"orthogonal"`),
            `bias_initializer`, `kernel_regularizer`, `bias_regularizer`,
            `kernel_constraint`, `bias_constraint` as in `keras.layers.Conv2D`,
            and base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor `(batch, h, w, c_in)` (channels last).
        training: Whether to recompute the rescaled kernel (differentiably).

    Returns:
        Tensor `(batch, h_out, w_out, filters)`.

    Example:
        >>> layer = AOLConv2D(32, 3, strides=2)
        >>> y = layer(tf.random.normal((8, 16, 16, 3)), training=True)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        lipschitz=1.0,
        input_size=None,
        data_format="channels_last",
        use_bias=True,
        activity_regularizer=None,
        **kwargs,
    ):
        self.init_with_weight_options(kwargs, use_bias, activity_regularizer, "orthogonal")
        self.set_convolution_options(
            filters, kernel_size, strides, padding, {"same", "valid"}, lipschitz, input_size, data_format
        )

    def build(self, input_shape):
        c_in = self.resolve_input_size(input_shape)
        self.check_valid_padding_size(self.kernel_size)
        self.add_kernel_and_bias((*self.kernel_size, c_in, self.filters), self.kernel_initializer,
                                 self.kernel_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: c_in})
        self.build_kernel_cache(self.kernel.shape)

    def kernel_cache_sources(self):
        return [self.kernel]

    @property
    def geometry(self):
        """The `ConvGeometry` on `input_size`; an AttributeError while the input size is unknown."""
        if self.input_size is None:
            # AttributeError (not ValueError) so that `hasattr(layer, "geometry")` is False and the spectrum
            # monitors fall back to the reshaped kernel.
            raise AttributeError("AOLConv2D has no `geometry` until its input size is known (pass `input_size`).")
        return ConvGeometry(self.input_size, self.strides, self.padding)

    def effective_kernel(self, training=False):
        """`lipschitz * K D` in float32 (theorem 2)."""
        return self.lipschitz * aol_rescale(float32_variable_read(self.kernel))

    def call(self, inputs, training=None):
        kernel = keras.ops.cast(self.call_kernel(resolve_training(training)), self.compute_dtype)
        outputs = tf.nn.convolution(inputs, kernel, strides=self.strides, padding=self.padding.upper())
        return self.add_bias_and_activate(outputs)

    def compute_output_shape(self, input_shape):
        batch, h, w, _ = input_shape
        geometry = ConvGeometry((h, w), self.strides, self.padding)
        return (batch, *geometry.output_size(self.kernel_size), self.filters)

    def operator_norm(self):
        """The AOL (Schur-test) norm bound of the effective kernel, which the rescaling sets to `lipschitz`.

        A float32 scalar tensor; the convolution's exact norm on
        `input_size` is at most this (see `lipschitz_upper_bound`).
        """
        return tf.constant(self._aol_certificate(self.inference_kernel()), tf.float32)

    def _aol_certificate(self, kernel):
        return rescaled_norm_upper_bound(float32_variable_read(self.kernel), kernel)

    def lipschitz_upper_bound(self, norm=2, iterations=6):
        """Certified upper bound of the effective convolution's operator norm.

        `norm=2`: the smaller of the AOL bound of the inference kernel
        (`tflip.ops.aol.rescaled_norm_upper_bound`: about `lipschitz`, valid on
        every input size) and, when `input_size` is known,
        `tflip.ops.conv.conv_norm_upper_bound` on that size (exact for small
        layers). `norm="inf"`: the largest L1 norm of the taps feeding one
        output channel.
        """
        kernel = self.inference_kernel()
        if check_norm(norm) == "inf":
            return dense_kernel_norm(tf.reshape(kernel, (-1, self.filters)), "inf")
        bound = self._aol_certificate(kernel)
        if self.input_size is not None:
            bound = min(bound, conv_norm_upper_bound(kernel, self.geometry, iterations))
        return bound

    def plain_keras_layer(self):
        """A built `keras.layers.Conv2D` holding the inference kernel (float32) and bias."""
        conv = keras.layers.Conv2D(
            self.filters, self.kernel_size, strides=self.strides, padding=self.padding, **self.plain_layer_options()
        )
        conv.build((None, *(self.input_size or (None, None)), self.kernel.shape[2]))
        conv.set_weights([self.inference_kernel().numpy()] + ([self.bias.numpy()] if self.use_bias else []))
        return conv

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **self.convolution_options_config(),
                **self.weight_options_config(),
            }
        )
        return config
