"""SpectralNormConv2DTranspose: a transposed convolution normalized by its exact operator norm."""

import keras
import tensorflow as tf

from tflip.layers.base import resolve_training
from tflip.layers.spectral import SpectralNormConv2D
from tflip.ops.conv import ConvGeometry
from tflip.ops.norms import check_norm, dense_kernel_norm


def transposed_output_size(input_size, kernel_size, strides, padding):
    """Spatial output size of a transposed convolution, Keras' rule (no output padding)."""
    if padding == "same":
        return tuple(n * s for n, s in zip(input_size, strides))
    return tuple(n * s + max(k - s, 0) for n, k, s in zip(input_size, kernel_size, strides))


@keras.saving.register_keras_serializable(package="tflip")
class SpectralNormConv2DTranspose(SpectralNormConv2D):
    """Conv2DTranspose normalized by the exact operator norm of the transposed convolution.

    A transposed convolution with kernel K on an `h x w` input is the adjoint
    of the convolution with the same kernel acting on its `H x W` output grid
    (Dumoulin and Visin 2016, sec. 4; Sargent thesis lemma 2.4.9): the two
    have the same singular values. The layer therefore normalizes exactly as
    `SpectralNormConv2D` does (largest singular value of the strided,
    zero-padded operator on the layer's actual grid, estimated by persistent
    power iteration through the convolution and its adjoint; Miyato et al.
    2018 for the normalization), with that forward convolution's geometry
    (`self.geometry`, on the output grid). Generators built from it get a
    certified bound per layer.

    Output sizes follow `keras.layers.Conv2DTranspose` (no `output_padding`):
    `h * s` for "same", `h * s + max(k - s, 0)` for "valid".

    Args:
        filters: Number of output channels.
        kernel_size: Int or pair.
        strides: Int or pair (the upsampling factor).
        padding: `"same"` or `"valid"`.
        lipschitz: The per-layer gain `k` (Sargent thesis sec. 5.5.1).
        power_iterations: Power-iteration steps per training call (>= 1).
        input_size: Optional `(h, w)` of the inputs; required when the
            model's spatial size is not static at build time.
        data_format: Only `"channels_last"` is supported.
        use_bias: Whether to add a bias.
        activity_regularizer: As in `keras.layers.Conv2DTranspose`.
        **kwargs: `activation`, initializers, regularizers and constraints
            as in `keras.layers.Conv2DTranspose`, and base layer arguments.

    Call arguments:
        inputs: Tensor `(batch, h, w, c_in)`.
        training: Whether to advance the power iteration.

    Returns:
        Tensor `(batch, H, W, filters)`.

    Example:
        >>> layer = SpectralNormConv2DTranspose(16, 4, strides=2)
        >>> layer(tf.random.normal((8, 7, 7, 32)), training=True).shape  # (8, 14, 14, 16)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        lipschitz=1.0,
        power_iterations=1,
        input_size=None,
        data_format="channels_last",
        use_bias=True,
        activity_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            norm="toeplitz",
            lipschitz=lipschitz,
            power_iterations=power_iterations,
            input_size=input_size,
            data_format=data_format,
            use_bias=use_bias,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )

    @property
    def output_grid(self):
        """`(H, W)`: the spatial size of the outputs (where the forward convolution acts)."""
        return transposed_output_size(self.input_size, self.kernel_size, self.strides, self.padding)

    @property
    def geometry(self):
        """Geometry of the forward convolution (on the output grid) whose adjoint the layer applies."""
        return ConvGeometry(self.output_grid, self.strides, self.padding)

    def build(self, input_shape):
        _, h, w, c_in = input_shape
        if c_in is None:
            raise ValueError(f"The channel dimension of the inputs must be defined, got {input_shape}.")
        if self.input_size is None:
            if h is None or w is None:
                raise ValueError(
                    f"The spatial size of the inputs is not static ({input_shape}); the operator norm "
                    "depends on it: pass `input_size=(h, w)`."
                )
            self.input_size = (int(h), int(w))
        elif (h is not None and h != self.input_size[0]) or (w is not None and w != self.input_size[1]):
            raise ValueError(f"`input_size` {self.input_size} does not match the input shape {input_shape}.")
        # Keras' layout for transposed kernels: (kh, kw, filters, c_in), the forward convolution's kernel.
        self.add_kernel_and_bias((*self.kernel_size, self.filters, c_in), self.kernel_initializer,
                                 self.kernel_constraint)
        self.add_power_vector((1, *self.output_grid, self.filters))
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: c_in})
        self.build_kernel_cache(self.kernel.shape)

    def add_kernel_and_bias(self, kernel_shape, initializer, constraint):
        # The bias has `filters` entries, which is not the last axis of a transposed kernel.
        use_bias, self.use_bias = self.use_bias, False
        super().add_kernel_and_bias(kernel_shape, initializer, constraint)
        self.use_bias = use_bias
        self.bias = (
            self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
            if use_bias
            else None
        )

    def call(self, inputs, training=None):
        kernel = keras.ops.cast(self.call_kernel(resolve_training(training)), self.compute_dtype)
        outputs = self.geometry.apply_adjoint(inputs, kernel)
        return self.add_bias_and_activate(outputs)

    def compute_output_shape(self, input_shape):
        batch, h, w, _ = input_shape
        size = [
            None if n is None else transposed_output_size((n,), (k,), (s,), self.padding)[0]
            for n, k, s in zip((h, w), self.kernel_size, self.strides)
        ]
        return (batch, *size, self.filters)

    def lipschitz_upper_bound(self, norm=2, iterations=6):
        """Certified upper bound of the effective transposed convolution's operator norm.

        `norm=2`: that of the forward convolution (same singular values; see
        `SpectralNormConv2D.lipschitz_upper_bound`). `norm="inf"`: the
        largest L1 norm of all taps feeding one output channel (strides let
        only some of them meet an output, so this is an upper bound).
        """
        if check_norm(norm) == "inf":
            kernel = tf.transpose(self.inference_kernel(), (0, 1, 3, 2))
            return dense_kernel_norm(tf.reshape(kernel, (-1, self.filters)), "inf")
        return super().lipschitz_upper_bound(2, iterations)

    def plain_keras_layer(self):
        """A built `keras.layers.Conv2DTranspose` holding the inference kernel (float32) and bias."""
        conv = keras.layers.Conv2DTranspose(
            self.filters, self.kernel_size, strides=self.strides, padding=self.padding, **self.plain_layer_options()
        )
        conv.build((None, *self.input_size, self.kernel.shape[3]))
        conv.set_weights([self.inference_kernel().numpy()] + ([self.bias.numpy()] if self.use_bias else []))
        return conv

    def get_config(self):
        config = super().get_config()
        for key in ("norm", "dilation_rate"):
            config.pop(key)
        return config
