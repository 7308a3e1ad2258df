"""Exactly orthogonal 2-D convolution (BCOP, Li et al. NeurIPS 2019)."""

import keras
import numpy as np
import tensorflow as tf

from tflip.layers.base import KernelBiasLayer, LipschitzLayer, float32_variable_read, resolve_training
from tflip.layers.conv_options import ConvolutionOptions
from tflip.layers.kernel_cache import CachedKernelLayer
from tflip.layers.orthonormalization import OrthonormalizationSettings
from tflip.ops.bjorck import bjorck_orthonormalize, polar_express_orthonormalize
from tflip.ops.conv import ConvGeometry, conv_norm_upper_bound
from tflip.ops.norms import check_norm, dense_kernel_norm
from tflip.ops.orthogonal_conv import (
    circular_conv2d,
    circular_conv_norm,
    circular_padding_amounts,
    downsampled_kernel_from_strided,
    orthogonal_conv_kernel,
    projectors_from_frames,
    strided_kernel_from_downsampled,
    transfer_gram_norm_bound,
)

PADDINGS = ("circular", "same")


def _orthonormal_frames(shape, dtype=None):
    """Initializer: a stack of independent random frames with orthonormal columns."""
    gaussian = keras.initializers.RandomNormal()(shape, dtype="float32")  # seeded by keras' global seed
    q, r = tf.linalg.qr(tf.convert_to_tensor(gaussian))
    # Sign fix: the Haar-distributed orthonormal frame (QR's Q alone is biased by the sign convention).
    return q * tf.sign(tf.linalg.diag_part(r))[..., None, :]


@keras.saving.register_keras_serializable(package="tflip")
class OrthogonalConv2D(
    OrthonormalizationSettings,
    CachedKernelLayer,
    ConvolutionOptions,
    KernelBiasLayer,
    keras.layers.Layer,
    LipschitzLayer,
):
    """Orthogonal convolution: every singular value equals `lipschitz` (circular padding).

    Block convolution orthogonal parameterization (BCOP; Li, Haque, Anil,
    Lucas, Grosse, Jacobsen, "Preventing Gradient Attenuation in Lipschitz
    Constrained Convolutional Networks", NeurIPS 2019, sec. 4, eq. (5)-(6)).
    The `kh x kw` kernel is the composition of `kh - 1` vertical and
    `kw - 1` horizontal size-2 block convolutions `[P, I - P]` with symmetric
    projectors `P = Q Q^T` (each unitary at every frequency) and a 1x1
    convolution by a matrix `M` with orthonormal rows (isometry) or columns
    (co-isometry); see `tflip.ops.orthogonal_conv.orthogonal_conv_kernel`.
    The frames `Q` (`c x floor(c / 2)`, `c = max(c_in', filters)`) and `M`
    are the polar factors of raw trainable matrices (`tflip.ops.bjorck`):
    Polar Express steps in training calls (differentiated through), Björck
    iterations to convergence for the cached inference kernel.

    With `padding="circular"` (periodic images) the layer's map is, up to
    float32 rounding of the orthonormalization:

    - orthogonal when `filters == s_h * s_w * c_in`: every singular value is
      `lipschitz`, so gradient norms are preserved exactly;
    - an isometry when `filters > s_h * s_w * c_in` (`||f(x) - f(y)|| =
      lipschitz * ||x - y||`, Li et al. sec. 4.2);
    - a co-isometry when `filters < c_in` (stride 1 only): all `filters`
      singular values per frequency equal `lipschitz`, the rest of the
      input space is projected out.

    With `padding="same"` (zero padding) the map is a restriction of a
    circular one on a larger grid: every singular value is at most
    `lipschitz` (most equal to it on large images).

    Strides `s` use invertible downsampling (space-to-depth, a permutation;
    Li et al. sec. 4.3) followed by the stride-1 orthogonal convolution with
    `s_h * s_w * c_in` input channels; both are applied at once as one
    stride-`s` convolution with an `(s_h kh, s_w kw)` kernel (what inference
    and `plain_keras_layer` use). An isometry needs `filters >= s_h * s_w *
    c_in`.

    Args:
        filters: Number of output channels.
        kernel_size: Int or pair `(kh, kw)`: the size of the orthogonal
            convolution after downsampling; the strided kernel applied to the
            input has size `(s_h kh, s_w kw)`.
        strides: Int or pair.
        padding: `"circular"` (exactly orthogonal) or `"same"` (zero padding,
            at most `lipschitz`).
        lipschitz: The gain `k`: the singular values equal (circular) or are
            at most (same) `k`.
        inference_iterations: Björck steps computing the cached inference
            kernel (converged to float32 rounding for well-conditioned raw
            matrices; >= 1).
        training_steps: Polar Express steps per training call (>= 1; see
            `tflip.ops.bjorck.polar_express_orthonormalize`). The errors of
            the `kh + kw - 1` orthonormalized factors add up, so the default
            is one step more than `BjorckDense`'s.
        training_lower: Lower end, in (0, 1], of the scaled raw matrices'
            singular values the training schedule is optimized for.
        input_size: Optional `(h, w)`: the spatial size used by
            `operator_norm`, the input-size specific bounds and the export of
            circular padding; taken from the input shape at build when static.
        data_format: Only `"channels_last"` is supported.
        use_bias: Whether to add a bias, as in `keras.layers.Conv2D`.
        activity_regularizer: As in `keras.layers.Conv2D`.
        **kwargs: `activation`, `kernel_initializer` (of the raw channel
            matrix `M`, default `"orthogonal"`), `bias_initializer`,
            `kernel_regularizer`, `bias_regularizer`, `kernel_constraint`,
            `bias_constraint` as in `keras.layers.Conv2D`, and the base
            `keras.layers.Layer` arguments.

    Call arguments:
        inputs: Tensor `(batch, h, w, c_in)`; with circular padding `h` and
            `w` divisible by the strides and at least the padding.
        training: Whether to recompute (and differentiate) the kernel.

    Returns:
        Tensor `(batch, ceil(h / s_h), ceil(w / s_w), filters)`.

    Raises:
        ValueError: For bad arguments, or at build if `filters < s_h * s_w *
            c_in` with strides > 1.

    Example:
        >>> layer = OrthogonalConv2D(32, 3, strides=2)
        >>> y = layer(tf.random.normal((8, 16, 16, 8)), training=True)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="circular",
        lipschitz=1.0,
        inference_iterations=30,
        training_steps=4,
        training_lower=0.35,
        input_size=None,
        data_format="channels_last",
        use_bias=True,
        activity_regularizer=None,
        **kwargs,
    ):
        self.init_with_weight_options(kwargs, use_bias, activity_regularizer, "orthogonal")
        self.set_convolution_options(
            filters, kernel_size, strides, padding, PADDINGS, lipschitz, input_size, data_format
        )
        self.set_orthonormalization_settings(inference_iterations, training_steps, training_lower)

    def build(self, input_shape):
        c_in = self.resolve_input_size(input_shape)
        sh, sw = self.strides
        self.downsampled_channels = sh * sw * c_in
        if sh * sw > 1 and self.filters < self.downsampled_channels:
            raise ValueError(
                f"`filters` ({self.filters}) must be at least `strides` {self.strides} product times the input "
                f"channels ({c_in}), i.e. {self.downsampled_channels}: a strided orthogonal convolution is an "
                "isometry after invertible downsampling."
            )
        if self.input_size is not None and self.padding == "circular":
            self._check_circular_size(self.input_size)
        self.channels = max(self.downsampled_channels, self.filters)
        self.add_kernel_and_bias((self.downsampled_channels, self.filters), self.kernel_initializer,
                                 self.kernel_constraint)
        kh, kw = self.kernel_size
        self.projector_rank = max(1, self.channels // 2)
        count = kh - 1 + kw - 1
        # The raw frames Q of the projectors P = Q Q^T, stacked: vertical ones first.
        self.projector_frames = (
            self.add_weight(
                name="projector_frames",
                shape=(count, self.channels, self.projector_rank),
                initializer=_orthonormal_frames,
                autocast=False,
            )
            if count
            else None
        )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: c_in})
        self.build_kernel_cache(self.strided_kernel_shape(c_in))

    def _check_circular_size(self, size):
        (top, bottom), (left, right) = circular_padding_amounts(self.kernel_size, self.strides)
        for n, s, pad in zip(size, self.strides, (max(top, bottom), max(left, right))):
            if n % s or n < pad:
                raise ValueError(
                    f"With circular padding the input size {tuple(size)} must be divisible by `strides` "
                    f"{self.strides} and at least the padding {pad} of `kernel_size` {self.kernel_size}."
                )

    def strided_kernel_shape(self, c_in):
        """Shape `(s_h kh, s_w kw, c_in, filters)` of the kernel applied to the inputs."""
        return (self.strides[0] * self.kernel_size[0], self.strides[1] * self.kernel_size[1], c_in, self.filters)

    def kernel_cache_sources(self):
        return [self.kernel] + ([self.projector_frames] if self.projector_frames is not None else [])

    def _orthonormalize(self, matrix, training):
        if training:
            return polar_express_orthonormalize(matrix, self.training_steps, self.training_lower)
        return bjorck_orthonormalize(matrix, self.inference_iterations)

    def effective_kernel(self, training=False):
        """`lipschitz` times the strided BCOP kernel `(s_h kh, s_w kw, c_in, filters)`, float32.

        Training calls orthonormalize with Polar Express (differentiable);
        otherwise with `inference_iterations` Björck steps.
        """
        channel_matrix = self._orthonormalize(float32_variable_read(self.kernel), training)
        kh, kw = self.kernel_size
        if self.projector_frames is None:
            projectors = tf.zeros((0, self.channels, self.channels))
        else:
            raw = float32_variable_read(self.projector_frames)
            projectors = projectors_from_frames(self._orthonormalize(raw, training))  # one batched call
        kernel = orthogonal_conv_kernel(channel_matrix, projectors[: kh - 1], projectors[kh - 1 :])
        return self.lipschitz * strided_kernel_from_downsampled(kernel, self.strides)

    def convolve(self, inputs, kernel):
        """The layer's linear map (no bias, no activation) with a given strided kernel."""
        if self.padding == "circular":
            return circular_conv2d(inputs, kernel, self.strides)
        return tf.nn.conv2d(inputs, kernel, self.strides, "SAME")

    def call(self, inputs, training=None):
        kernel = keras.ops.cast(self.call_kernel(resolve_training(training)), self.compute_dtype)
        return self.add_bias_and_activate(self.convolve(inputs, kernel))

    def compute_output_shape(self, input_shape):
        batch, h, w, _ = input_shape
        size = [None if n is None else -(-n // s) for n, s in zip((h, w), self.strides)]
        return (batch, *size, self.filters)

    @property
    def geometry(self):
        """The zero-padding `ConvGeometry` of the strided kernel on `input_size` (monitoring).

        For circular padding its circular spectrum (what
        `tflip.lipschitz.spectra` reports) is the layer's exact spectrum; its
        zero-padded norm is that of the "same" variant.
        """
        if self.input_size is None:
            raise AttributeError("`input_size` is unknown: pass it to the constructor for size-specific analyses.")
        return ConvGeometry(self.input_size, self.strides, "same")

    def _require_input_size(self, what):
        if self.input_size is None:
            raise ValueError(f"{what} needs the input size: build the layer on a static shape or pass `input_size`.")

    def operator_norm(self):
        """The norm of the inference map on `input_size` (float32 scalar; `lipschitz` for circular padding).

        Circular padding: the largest singular value of the circular
        spectrum (Sedghi et al. 2019; float64 SVD of the frequency blocks,
        `tflip.ops.orthogonal_conv.circular_conv_norm`). Same padding: the zero-padded
        norm, exact (float64 eigenvalues of the explicit matrix's Gram
        matrix, raised by a relative 1e-9) for small layers, otherwise the
        certified `lipschitz_upper_bound()` (within about 1e-6 of
        `lipschitz`, which the zero-padded norm approaches on large images).
        Power iteration is no option here: the top singular values of an
        orthogonal construction are clustered, so it converges slowly.
        """
        self._require_input_size("operator_norm")
        kernel = self.inference_kernel()
        if self.padding == "circular":
            return tf.constant(circular_conv_norm(kernel, self.input_size, self.strides), tf.float32)
        return tf.constant(self.lipschitz_upper_bound(), tf.float32)

    def lipschitz_upper_bound(self, norm=2):
        """Certified upper bound of the layer's Lipschitz constant.

        `norm=2`: the minimum of
        `tflip.ops.orthogonal_conv.transfer_gram_norm_bound` (valid for every
        input size and both paddings: `lipschitz` up to about 1e-6 for this
        construction) and, when the input size is known, the input-size
        specific bound: the float64 circular spectrum for circular padding
        (`circular_conv_norm`), `tflip.ops.conv.conv_norm_upper_bound`
        (exact for small layers) for zero padding. `norm="inf"`: the largest
        L1 norm of the taps feeding one output channel.
        """
        kernel = self.inference_kernel()
        if check_norm(norm) == "inf":
            return dense_kernel_norm(tf.reshape(kernel, (-1, self.filters)), "inf")
        bound = transfer_gram_norm_bound(downsampled_kernel_from_strided(kernel, self.strides))
        if self.input_size is not None:
            if self.padding == "circular":
                bound = min(bound, circular_conv_norm(kernel, self.input_size, self.strides))
            else:
                bound = min(bound, conv_norm_upper_bound(kernel, self.geometry))
        return bound

    def plain_keras_layer(self):
        """Built-in Keras layers computing the inference map (float32 kernel).

        Same padding: a `keras.layers.Conv2D` with the strided kernel. Circular
        padding (Keras has none): a small functional model named after this
        layer, of `Cropping2D` / `Concatenate` layers that wrap the image
        around and a valid `Conv2D`; it needs `input_size` and loads without
        tflip.
        """
        c_in = self.kernel.shape[0] // (self.strides[0] * self.strides[1])
        options = self.plain_layer_options()
        name = options.pop("name")
        kernel_size = self.strided_kernel_shape(c_in)[:2]
        weights = [np.asarray(self.inference_kernel())] + ([np.asarray(self.bias)] if self.use_bias else [])
        if self.padding == "same":
            conv = keras.layers.Conv2D(self.filters, kernel_size, self.strides, "same", name=name, **options)
            conv.build((None, *(self.input_size or (None, None)), c_in))
            conv.set_weights(weights)
            return conv
        self._require_input_size("Exporting circular padding")
        h, w = self.input_size
        inputs = keras.Input((h, w, c_in), dtype=options["dtype"].variable_dtype)
        padded = inputs
        for axis, (before, after) in zip((1, 2), circular_padding_amounts(self.kernel_size, self.strides)):
            size = (h, w)[axis - 1]

            def crop(start, stop, label):
                # Keep rows (or columns) start..stop-1 of the current image.
                cut = ((start, size - stop), (0, 0)) if axis == 1 else ((0, 0), (start, size - stop))
                return keras.layers.Cropping2D(cut, name=f"wrap_{label}", dtype=options["dtype"])(padded)

            pieces = ([crop(size - before, size, f"before_{axis}")] if before else []) + [padded]
            pieces += [crop(0, after, f"after_{axis}")] if after else []
            if len(pieces) > 1:
                padded = keras.layers.Concatenate(axis=axis, name=f"wrap_{axis}", dtype=options["dtype"])(pieces)
        conv = keras.layers.Conv2D(self.filters, kernel_size, self.strides, "valid", name="conv", **options)
        model = keras.Model(inputs, conv(padded), name=name)
        conv.set_weights(weights)
        return model

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **self.convolution_options_config(),
                **self.orthonormalization_config(),
                **self.weight_options_config(),
            }
        )
        return config
