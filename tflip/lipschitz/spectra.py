"""Singular-value spectra of the linear maps inside Keras layers (tflip's and Keras' own).

What the monitoring callbacks log per layer. A layer is *Dense-like* if it
has a rank-2 `kernel` and *Conv-like* if it is a 2-D (or 1-D) convolution or
transposed convolution with channels-last data. For tflip layers the
*effective* kernel (the one the forward pass uses, after normalization or
projection) is analysed, not the raw trainable variable.

- Dense-like: the singular values of the effective kernel (exact SVD).
- Conv-like: the exact spectrum of the same convolution with *circular*
  padding on the layer's input size (Sedghi et al. 2019, strides by the
  polyphase decomposition; `tflip.ops.conv.circular_conv_singular_values`),
  and the exact operator norm of the layer's actual *zero-padded*
  convolution by block power iteration with the convolution and its
  transpose (float64, Rayleigh-Ritz), warm-started across calls and run to
  a relative tolerance of 1e-10. The two differ
  (zero padding can only lower the norm of the corresponding circular map on
  a larger grid, not this one): both are reported, labelled.
- Other layers with a kernel (depthwise, separable, 3-D convolutions,
  channels-first data or unknown input sizes): the singular values of the
  reshaped kernel matrix, labelled as such (a summary, not the operator).

No operator-sized matrix is ever formed; large convolutions are summarized
by a sample of `max_frequencies` frequencies.
"""

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tflip import _compat
from tflip.layers.base import iter_layers
from tflip.ops.conv import ConvGeometry, circular_conv_singular_values
from tflip.ops.power_iteration import operator_norm_by_subspace_iteration
from tflip.ops.spectra import rank_collapse, singular_values, weight_matrix

DENSE = "dense"
CONVOLUTION = "conv_circular"
RESHAPED_KERNEL = "reshaped_kernel"


class LayerSpectrum(NamedTuple):
    """The spectrum of one layer's linear map.

    Attributes:
        kind: `"dense"` (SVD of the effective kernel), `"conv_circular"`
            (FFT spectrum of the circular-padding convolution) or
            `"reshaped_kernel"` (SVD of the kernel reshaped to a matrix).
        values: singular values, float64 numpy, descending.
        sigma_max: the operator norm of the layer's own linear map: the
            largest singular value for Dense, the zero-padding convolution
            norm for convolutions (NaN where it is not known).
        sampled: whether `values` is a frequency sample of a large operator.
    """

    kind: str
    values: np.ndarray
    sigma_max: float
    sampled: bool = False

    @property
    def sigma_ratio(self):
        """sigma_0 / sigma_1 of `values` (inf if sigma_1 is 0, NaN with fewer than two values)."""
        if len(self.values) < 2:
            return float("nan")
        return float(self.values[0] / self.values[1]) if self.values[1] > 0 else float("inf")

    @property
    def rank_collapse(self):
        """r(W) of `values`: 1 for a flat spectrum, 1/k for rank one (`tflip.ops.spectra.rank_collapse`)."""
        return float(rank_collapse(self.values))


def _kernel(layer):
    if hasattr(layer, "inference_kernel"):
        return layer.inference_kernel()
    return keras.ops.convert_to_tensor(layer.kernel)


def _static_size(shape):
    """The static spatial size `(h, w)` of a `(batch, h, w, c)` or `(batch, t, c)` shape, or None."""
    if shape is None or len(shape) not in (3, 4):
        return None
    size = (1, shape[1]) if len(shape) == 3 else tuple(shape[1:3])
    return None if None in size else tuple(int(s) for s in size)


def _spatial_size(layer, attribute):
    """Static spatial size of a layer's input or output tensor, or None.

    Where the symbolic tensor is missing (layers of subclassed models) or of
    dynamic size (a model that accepts any image size), the size the layer
    was built for: the size its bounds and spectra are computed on.
    """
    try:
        size = _static_size(getattr(layer, attribute).shape)
    except (AttributeError, ValueError):  # layers of subclassed models have no symbolic tensors
        size = None
    if size is None:
        built = _compat.build_input_shape(layer)
        if built is not None and attribute == "output":
            built = layer.compute_output_shape(built)
        size = _static_size(built)
    return size


def _as_2d(value, rank):
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return (1, int(value[0])) if rank == 3 else tuple(int(v) for v in value)


def conv_operator(layer):
    """`(kernel_2d, geometry)` of a layer's convolution as a linear map, or None if not a plain conv.

    The kernel is `(kh, kw, c_in, c_out)` of the forward convolution whose
    operator (or its adjoint, for a transposed convolution: same singular
    values) the layer applies; 1-D convolutions are 2-D with height 1.
    """
    if hasattr(layer, "geometry") and hasattr(layer, "inference_kernel"):  # tflip's SpectralNormConv2D
        return layer.inference_kernel(), layer.geometry
    conv_types = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose)
    if type(layer) not in conv_types or getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    kernel = tf.cast(keras.ops.convert_to_tensor(layer.kernel), tf.float32)
    # rank of the layer's inputs: (batch, *spatial, channels) for a (*spatial, c_in, c_out) kernel
    rank = len(kernel.shape)
    if rank == 3:
        kernel = kernel[None]
    transposed = isinstance(layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose))
    # A transposed convolution is the adjoint of the convolution with the same
    # kernel acting on its *output* grid (same singular values).
    size = _spatial_size(layer, "output" if transposed else "input")
    if size is None:
        return None
    geometry = ConvGeometry(size, _as_2d(layer.strides, rank), layer.padding, _as_2d(layer.dilation_rate, rank))
    if transposed and geometry.output_size(kernel.shape[:2]) != _spatial_size(layer, "input"):
        return None  # output_padding made the grids inconsistent with a plain adjoint
    return kernel, geometry


class SpectrumAnalyzer:
    """Computes `LayerSpectrum`s, keeping power-iteration vectors warm between calls.

    Args:
        max_frequencies: per convolution, at most this many frequencies of the
            circular spectrum are decomposed (a seeded uniform sample beyond it).
        tolerance: relative tolerance of the zero-padding norm's block power iteration.
        max_iterations: cap of that iteration per call (warm starts make
            later calls converge in a few steps).
        block_size: vectors in the block.
    """

    def __init__(self, max_frequencies=4096, tolerance=1e-10, max_iterations=500, block_size=8):
        self.max_frequencies = max_frequencies
        self.block_size = block_size
        self.tolerance = tolerance
        self.max_iterations = max_iterations
        self._vectors = {}

    def zero_padding_norm(self, key, kernel, geometry):
        """Operator norm of the zero-padded convolution, warm-started from the last call for `key`.

        Block power iteration in float64 (`operator_norm_by_subspace_iteration`).
        """
        start = self._vectors.get(key)
        kernel = tf.cast(kernel, tf.float64)
        shape = (self.block_size, *geometry.input_size, kernel.shape[2])
        if start is None or tuple(start.shape) != shape:
            start = tf.random.stateless_normal(shape, (len(self._vectors), 7), dtype=tf.float64)
        norm, block = operator_norm_by_subspace_iteration(
            *geometry.operators(kernel), start, self.tolerance, self.max_iterations
        )
        self._vectors[key] = block
        return norm

    def analyze(self, layer):
        """The `LayerSpectrum` of `layer`, or None if it has no kernel."""
        if not layer.built or getattr(layer, "kernel", None) is None:
            return None
        operator = conv_operator(layer)
        if operator is not None:
            kernel, geometry = operator
            kernel = tf.cast(kernel, tf.float32)
            values = self._circular_spectrum(kernel, geometry)
            if values is not None:
                sampled = self._frequencies(geometry) > self.max_frequencies
                return LayerSpectrum(CONVOLUTION, values, self.zero_padding_norm(layer.path, kernel, geometry), sampled)
        kernel = _kernel(layer)
        values = singular_values(weight_matrix(kernel)).numpy().astype("float64")
        if len(kernel.shape) == 2:
            return LayerSpectrum(DENSE, values, float(values[0]))
        return LayerSpectrum(RESHAPED_KERNEL, values, float("nan"))

    @staticmethod
    def _frequencies(geometry):
        return int(np.prod([n // s for n, s in zip(geometry.input_size, geometry.strides)]))

    def _circular_spectrum(self, kernel, geometry):
        """The circular spectrum on the layer's grid; None if the grid does not fit (e.g. odd sizes, strides)."""
        effective = geometry.effective_kernel_size(kernel.shape[:2])
        fits = all(n % s == 0 and n >= k for n, s, k in zip(geometry.input_size, geometry.strides, effective))
        if not fits:
            return None
        values = circular_conv_singular_values(
            kernel, geometry.input_size, geometry.strides, geometry.dilation, self.max_frequencies
        )
        return values.numpy().astype("float64")


def linear_layers(model):
    """The built layers with a kernel inside `model` (nested models included), in order."""
    return [
        layer for layer in iter_layers(model)
        if not isinstance(layer, keras.Model) and layer.built and getattr(layer, "kernel", None) is not None
    ]
