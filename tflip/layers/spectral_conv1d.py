"""SpectralNormConv1D: a 1-D convolution normalized by its exact operator norm (a 2-D one of height 1)."""

import numbers

import keras
import tensorflow as tf

from tflip.layers.base import resolve_training
from tflip.layers.spectral import SpectralNormConv2D
from tflip.ops.conv import ConvGeometry


def _length(name, value, optional=False):
    """An int >= 1 (or a 1-tuple of one), or raises ValueError naming `name`."""
    if optional and value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive int (or a 1-tuple of one), got {value!r}.")
    return int(value)


@keras.saving.register_keras_serializable(package="tflip")
class SpectralNormConv1D(SpectralNormConv2D):
    """Conv1D normalized by the exact operator norm of the convolution on the sequence length.

    A 1-D convolution of a length-`L` sequence is the 2-D convolution of a
    `1 x L` image with a `1 x k` kernel, so the layer is `SpectralNormConv2D`
    (largest singular value of the strided, zero-padded Toeplitz operator by
    persistent power iteration; Miyato et al. 2018, Sargent thesis sec.
    4.1.2) on that geometry. Its `kernel` variable is stored as that 2-D
    kernel, `(1, k, c_in, filters)`; `plain_keras_layer()` exports a
    `keras.layers.Conv1D` with the kernel `(k, c_in, filters)`. Sequence
    critics and audio models use it.

    Args:
        filters: Number of output channels.
        kernel_size: Int (or 1-tuple).
        strides: Int (or 1-tuple).
        padding: `"same"` or `"valid"` ("causal" is not supported).
        norm: `"toeplitz"` (exact operator norm) or `"reshape"` (see
            `SpectralNormConv2D`).
        lipschitz: The per-layer gain `k`.
        power_iterations: Power-iteration steps per training call (>= 1).
        dilation_rate: Int (only with strides 1).
        input_size: Optional int: the sequence length, required when it is
            not static at build time.
        data_format: Only `"channels_last"` is supported.
        use_bias: Whether to add a bias.
        activity_regularizer: As in `keras.layers.Conv1D`.
        **kwargs: `activation`, initializers, regularizers and constraints
            as in `keras.layers.Conv1D`, and base layer arguments.

    Call arguments:
        inputs: Tensor `(batch, length, c_in)`.
        training: Whether to advance the power iteration.

    Returns:
        Tensor `(batch, length_out, filters)`.

    Example:
        >>> layer = SpectralNormConv1D(32, 5, strides=2)
        >>> layer(tf.random.normal((8, 100, 3)), training=True).shape  # (8, 50, 32)
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
        length = _length("input_size", input_size, optional=True)
        super().__init__(
            filters,
            (1, _length("kernel_size", kernel_size)),
            strides=(1, _length("strides", strides)),
            padding=padding,
            norm=norm,
            lipschitz=lipschitz,
            power_iterations=power_iterations,
            dilation_rate=(1, _length("dilation_rate", dilation_rate)),
            input_size=None if length is None else (1, length),
            data_format=data_format,
            use_bias=use_bias,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)

    def build(self, input_shape):
        batch, length, c_in = input_shape
        super().build((batch, 1, length, c_in))
        self.input_spec = keras.layers.InputSpec(ndim=3, axes={-1: c_in})

    def call(self, inputs, training=None):
        kernel = keras.ops.cast(self.call_kernel(resolve_training(training)), self.compute_dtype)
        outputs = tf.nn.convolution(
            inputs[:, None], kernel, strides=self.strides, padding=self.padding.upper(), dilations=self.dilation_rate
        )
        return self.add_bias_and_activate(outputs[:, 0])

    def compute_output_shape(self, input_shape):
        batch, length, _ = input_shape
        geometry = ConvGeometry((1, length), self.strides, self.padding, self.dilation_rate)
        return (batch, geometry.output_size(self.kernel_size)[1], self.filters)

    def plain_keras_layer(self):
        """A built `keras.layers.Conv1D` holding the inference kernel (float32) and bias."""
        conv = keras.layers.Conv1D(
            self.filters,
            self.kernel_size[1],
            strides=self.strides[1],
            padding=self.padding,
            dilation_rate=self.dilation_rate[1],
            **self.plain_layer_options(),
        )
        conv.build((None, self.input_size[1], self.kernel.shape[2]))
        kernel = self.inference_kernel().numpy()[0]
        conv.set_weights([kernel] + ([self.bias.numpy()] if self.use_bias else []))
        return conv

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size[1],
                "strides": self.strides[1],
                "dilation_rate": self.dilation_rate[1],
                "input_size": None if self.input_size is None else self.input_size[1],
            }
        )
        return config
