"""SDP-based Lipschitz residual layers (SLL, Araujo et al. ICLR 2023): Dense and Conv2D."""

import keras
import numpy as np
import tensorflow as tf

from tflip import _validation
from tflip._compat import build_input_shape
from tflip.layers.base import WEIGHT_OPTIONS, KernelBiasLayer, LipschitzLayer, float32_variable_read, resolve_training
from tflip.layers.kernel_cache import CachedKernelLayer
from tflip.ops.aol import rescaled_norm_upper_bound
from tflip.ops.conv import ConvGeometry
from tflip.ops.norms import check_norm
from tflip.ops.sll import sll_conv_residual, sll_dense_residual, sll_normalized_kernel


class _SLLBase(CachedKernelLayer, KernelBiasLayer, keras.layers.Layer, LipschitzLayer):
    """Shared plumbing: the kernel W, the Schur weights log q, the cached V = W T^(-1/2), the bounds."""

    lipschitz = 1.0

    def _init_options(self, use_bias, learnable_q, options):
        if options.pop("activation", None) is not None:
            raise ValueError("`activation` is not an option of SLL layers: the residual uses ReLU inside it.")
        self.set_weight_options(
            use_bias,
            kernel_initializer=options.pop("kernel_initializer", "glorot_uniform"),
            bias_initializer=options.pop("bias_initializer", "zeros"),
            **options,
        )
        if not isinstance(learnable_q, bool):
            raise ValueError(f"`learnable_q` must be a bool, got {learnable_q!r}.")
        self.learnable_q = learnable_q

    def _build_weights(self, kernel_shape):
        self.add_kernel_and_bias(kernel_shape, self.kernel_initializer, self.kernel_constraint)
        self.log_q = self.add_weight(
            name="log_q", shape=(kernel_shape[-1],), initializer="zeros", trainable=self.learnable_q, autocast=False
        )
        self.build_kernel_cache(kernel_shape)

    def kernel_cache_sources(self):
        return [self.kernel, self.log_q]

    def effective_kernel(self, training=False):
        """V = W T^(-1/2) in float32 (theorem 3 with T = diag(sum_j |W^T W|_ij q_j / q_i))."""
        return sll_normalized_kernel(float32_variable_read(self.kernel), float32_variable_read(self.log_q))

    def _call_parts(self, training):
        kernel = keras.ops.cast(self.call_kernel(resolve_training(training)), self.compute_dtype)
        bias = None if self.bias is None else keras.ops.cast(self.bias, self.compute_dtype)
        return kernel, bias

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def operator_norm(self):
        """Largest singular value of V^T, the map inside the ReLU (float32; at most 1, the SDP condition).

        The layer's Jacobian is `I - 2 V Lambda V^T` with Lambda the ReLU
        slopes, whose eigenvalues lie in [-1, 1] exactly when this is <= 1.
        """
        raise NotImplementedError

    def lipschitz_upper_bound(self, norm=2):
        """Certified Lipschitz constant.

        `norm=2`: 1.0, by Araujo et al. (2023), theorem 3 (V V^T <= I is
        enforced by construction for every W and q). `norm="inf"`: the bound
        `1 + 2 max_i sum_k |V|_ik c_k` of the Jacobian `I - 2 V Lambda V^T`,
        with `|V|_ik` the absolute taps from input channel i to inner channel k
        (summed over space) and `c_k` the absolute sum of inner channel k's taps.
        """
        if check_norm(norm) == 2:
            return 1.0
        kernel = np.abs(np.asarray(self.inference_kernel(), np.float64))
        kernel = kernel.reshape((-1,) + kernel.shape[-2:])  # (taps, input channels, inner channels)
        row = kernel.sum(axis=0)  # (c, inner)
        column = kernel.sum(axis=(0, 1))  # (inner,)
        return float(1.0 + 2.0 * np.max(row @ column))

    def plain_keras_layer(self):
        """A nested functional model of built-in layers computing `x - 2 V ReLU(V^T x + b')`, named after this layer.

        `Add([x, back(inner(x))])` with `inner` the map V^T (kernel V, the
        bias, ReLU) and `back` the map V holding `-2 V` (no bias), all kernels
        the float32 inference kernel; the subclass gives the two layers
        (`Dense` / `Dense`, `Conv2D` / `Conv2DTranspose`), named
        `<name>_inner` and `<name>_adjoint`. The model accepts every input the
        layer accepts (any image size); its layers are built for the layer's
        own build shape, which is the size the graph bound measures the
        convolutions on. The outputs are the layer's, but
        `tflip.lipschitz.lipschitz_upper_bound` bounds this graph by
        `1 + ||inner|| ||back||` (in L2 `1 + 2 ||V||^2`, up to 3), not by
        theorem 3's 1: certify the original model, or keep SLL layers
        (`tflip.export.to_plain_keras(model, keep=(SLLDense, SLLConv2D))`).

        Returns:
            A built `keras.Model`.
        """
        options = self.plain_layer_options()
        name, dtype = options["name"], options["dtype"]
        kernel = np.asarray(self.inference_kernel(), np.float32)
        inner, back = self._plain_pair(kernel.shape, dtype, name)
        built = build_input_shape(self)
        if built is not None:
            inner.build((None, *built[1:]))
            back.build(inner.compute_output_shape((None, *built[1:])))
        rank = len(built) if built is not None else len(kernel.shape)
        inputs = keras.Input((None,) * (rank - 2) + (kernel.shape[-2],), dtype=dtype.variable_dtype)
        outputs = keras.layers.Add(name=f"{name}_residual", dtype=dtype)([inputs, back(inner(inputs))])
        model = keras.Model(inputs, outputs, name=name)
        inner.set_weights([kernel] + ([np.asarray(self.bias, np.float32)] if self.use_bias else []))
        # Doubling and negating are exact in floating point: back(.) is exactly -2 V(.) of the layer's call.
        back.set_weights([-2.0 * self._adjoint_kernel(kernel)])
        return model

    def _plain_pair(self, kernel_shape, dtype, name):
        """The built-in layers of V^T (with bias and ReLU) and of V (no bias), named `<name>_inner` / `_adjoint`."""
        raise NotImplementedError

    def _adjoint_kernel(self, kernel):
        """The kernel of the "adjoint" layer that applies V, from V's `(.., c, inner)` kernel."""
        return kernel

    def get_config(self):
        config = {**super().get_config(), "learnable_q": self.learnable_q, **self.weight_options_config()}
        del config["activation"]  # the ReLU is part of the layer, not an option
        return config


@keras.saving.register_keras_serializable(package="tflip")
class SLLDense(_SLLBase):
    """Dense SDP-based Lipschitz residual layer (Araujo et al., ICLR 2023, eq. (8) / theorem 3).

    Computes

        y = x - 2 W T^-1 ReLU(W^T x + b),   T = diag(sum_j |W^T W|_ij q_j / q_i),

    with W the trainable `(d, inner_units)` kernel and q = exp(log q) > 0
    learnable Schur-test weights (the paper's q; `learnable_q=False` keeps
    q = 1). Theorem 3: W^T W <= T makes the layer 1-Lipschitz for every W and
    q. It is computed as `x - 2 V ReLU(V^T x + b')` with the normalized
    kernel V = W T^(-1/2) (ReLU is positively homogeneous, b = T^(1/2) b'):
    the trainable bias is b'. V is recomputed in training calls and cached at
    inference. Output shape = input shape.

    Args:
        inner_units: Width m of the hidden pre-activation W^T x.
        learnable_q: Whether q is trained (default) or fixed at 1.
        use_bias: Whether to add the bias b' inside the ReLU.
        activity_regularizer: As in Keras layers.
        **kwargs: `kernel_initializer` (default `"glorot_uniform"`),
            `bias_initializer`, `kernel_regularizer`, `bias_regularizer`,
            `kernel_constraint`, `bias_constraint`, and base layer arguments.
            `activation` is rejected: the ReLU is part of the layer.

    Call arguments:
        inputs: Tensor `(..., d)`.
        training: Whether to recompute V (differentiably).

    Returns:
        Tensor of the inputs' shape.

    Example:
        >>> layer = SLLDense(128)
        >>> y = layer(tf.random.normal((8, 32)), training=True)  # (8, 32)
    """

    def __init__(self, inner_units, learnable_q=True, use_bias=True, activity_regularizer=None, **kwargs):
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in WEIGHT_OPTIONS}
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._init_options(use_bias, learnable_q, options)
        self.inner_units = _validation.positive_int("inner_units", inner_units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(f"The last dimension of the inputs must be defined, got shape {input_shape}.")
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: dim})
        self._build_weights((dim, self.inner_units))

    def call(self, inputs, training=None):
        return sll_dense_residual(inputs, *self._call_parts(training))

    def _plain_pair(self, kernel_shape, dtype, name):
        dim, inner = kernel_shape
        return (
            keras.layers.Dense(inner, activation="relu", use_bias=self.use_bias, name=f"{name}_inner", dtype=dtype),
            keras.layers.Dense(dim, use_bias=False, name=f"{name}_adjoint", dtype=dtype),
        )

    def _adjoint_kernel(self, kernel):
        return kernel.T  # Dense computes x @ kernel: V applied to z is z @ V^T

    def operator_norm(self):
        return tf.linalg.svd(self.inference_kernel(), compute_uv=False)[0]

    def get_config(self):
        return {**super().get_config(), "inner_units": self.inner_units}


@keras.saving.register_keras_serializable(package="tflip")
class SLLConv2D(_SLLBase):
    """Convolutional SDP-based Lipschitz residual layer (Araujo et al., ICLR 2023, eq. (8) / theorem 3).

    Computes

        y = x - 2 W T^-1 ReLU(W^T x + b)

    where W^T x is the "same", stride-1 convolution with the trainable kernel
    `(kh, kw, c, inner_filters)` and W its adjoint, the transposed
    convolution. T = diag(T_k) over the inner channels,

        T_k = sum_l sum_delta |M[delta, k, l]| q_l / q_k,
        M[delta, k, l] = sum_{a, i} K[a + delta, i, k] K[a, i, l],

    the AOL bound of W^T W from the kernel's autocorrelation over its inner
    channels, which dominates W^T W for every input size with zero padding
    (the paper's conv layer). q = exp(log q) > 0 are learnable weights
    (`learnable_q=False`: q = 1). Computed as `x - 2 V ReLU(V^T x + b')` with
    V = W T^(-1/2), cached at inference (b = T^(1/2) b'; the trainable bias is
    b'). Output shape = input shape; certified 1-Lipschitz.

    Args:
        inner_filters: Channels of the hidden pre-activation W^T x.
        kernel_size: Int or pair (odd or even: W is the exact adjoint either way).
        learnable_q: Whether q is trained (default) or fixed at 1.
        input_size: Optional `(h, w)` for the spectrum monitors (the map V^T on
            that size); taken from a static input shape at build.
        use_bias: Whether to add the bias b' inside the ReLU.
        activity_regularizer: As in Keras layers.
        **kwargs: `kernel_initializer` (default `"glorot_uniform"`),
            `bias_initializer`, `kernel_regularizer`, `bias_regularizer`,
            `kernel_constraint`, `bias_constraint`, and base layer arguments.
            `activation` is rejected: the ReLU is part of the layer.

    Call arguments:
        inputs: Tensor `(batch, h, w, c)` (channels last).
        training: Whether to recompute V (differentiably).

    Returns:
        Tensor of the inputs' shape.

    Example:
        >>> layer = SLLConv2D(64, 3)
        >>> y = layer(tf.random.normal((8, 16, 16, 32)), training=True)  # (8, 16, 16, 32)
    """

    def __init__(
        self, inner_filters, kernel_size, learnable_q=True, input_size=None, use_bias=True,
        activity_regularizer=None, **kwargs
    ):
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in WEIGHT_OPTIONS}
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._init_options(use_bias, learnable_q, options)
        self.inner_filters = _validation.positive_int("inner_filters", inner_filters)
        self.kernel_size = _validation.int_pair("kernel_size", kernel_size)
        self.input_size = None if input_size is None else _validation.int_pair("input_size", input_size)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        _, h, w, c = input_shape
        if c is None:
            raise ValueError(f"The channel dimension of the inputs must be defined, got {input_shape}.")
        if self.input_size is None and h is not None and w is not None:
            self.input_size = (int(h), int(w))
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: c})
        self._build_weights((*self.kernel_size, c, self.inner_filters))

    @property
    def geometry(self):
        """The `ConvGeometry` of V^T on `input_size`; an AttributeError while the input size is unknown."""
        if self.input_size is None:
            raise AttributeError("SLLConv2D has no `geometry` until its input size is known (pass `input_size`).")
        return ConvGeometry(self.input_size, (1, 1), "same")

    def call(self, inputs, training=None):
        return sll_conv_residual(inputs, *self._call_parts(training))

    def _plain_pair(self, kernel_shape, dtype, name):
        # Conv2DTranspose runs tf.nn.conv_transpose with the same SAME padding and output size as
        # `sll_conv_residual`, and its kernel layout (kh, kw, out, in) is V's (kh, kw, c, inner) as it is:
        # the exact adjoint for odd and even kernel sizes.
        channels = kernel_shape[2]
        return (
            keras.layers.Conv2D(
                self.inner_filters,
                self.kernel_size,
                padding="same",
                activation="relu",
                use_bias=self.use_bias,
                name=f"{name}_inner",
                dtype=dtype,
            ),
            keras.layers.Conv2DTranspose(
                channels, self.kernel_size, padding="same", use_bias=False, name=f"{name}_adjoint", dtype=dtype
            ),
        )

    def operator_norm(self):
        """The weighted Schur-test bound of V^T on its inner side (float32 scalar tensor).

        About 1 by construction (theorem 3's T, recomputed in float64 from W
        and q and applied to the cached V; `tflip.ops.aol.rescaled_norm_upper_bound`),
        and at least V^T's exact norm on every input size.
        """
        swap = (0, 1, 3, 2)  # the inner channels as input side
        bound = rescaled_norm_upper_bound(
            tf.transpose(float32_variable_read(self.kernel), swap),
            tf.transpose(self.inference_kernel(), swap),
            float32_variable_read(self.log_q),
        )
        return tf.constant(bound, tf.float32)

    def get_config(self):
        return {
            **super().get_config(),
            "inner_filters": self.inner_filters,
            "kernel_size": self.kernel_size,
            "input_size": self.input_size,
        }
