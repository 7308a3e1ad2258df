"""Shared plumbing of the Dense-like constrained layers (kernel, bias, activation, config)."""

import keras

from tflip import _validation
from tflip.layers.base import WEIGHT_OPTIONS, KernelBiasLayer, LipschitzLayer, float32_variable_read, resolve_training
from tflip.layers.kernel_cache import CachedKernelLayer
from tflip.ops.norms import dense_kernel_norm


class ConstrainedDense(CachedKernelLayer, KernelBiasLayer, keras.layers.Layer, LipschitzLayer):
    """A Dense layer whose kernel is replaced by an effective kernel.

    Subclasses implement `effective_kernel(training=False)`, which reads the
    raw float32 kernel (`self.raw_kernel()`) and returns the constrained one in
    float32. Training calls recompute it and are differentiated through it
    (the trainable variable is never overwritten); inference calls use the
    cached kernel of `CachedKernelLayer`, recomputed only after the raw
    weights changed.

    Args:
        units: Output dimension.
        lipschitz: Gain `k` the effective kernel's operator norm is set to.
        activation: Activation applied after the affine map. Note that only
            1-Lipschitz activations (ReLU, GroupSort...) keep the bound.
        use_bias: Whether to add a bias.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint,
        bias_constraint: As in `keras.layers.Dense`.
    """

    default_kernel_initializer = "glorot_uniform"

    def __init__(
        self,
        units,
        lipschitz=1.0,
        activation=None,
        use_bias=True,
        kernel_initializer=None,
        activity_regularizer=None,
        **kwargs,
    ):
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in WEIGHT_OPTIONS}
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = _validation.positive_int("units", units)
        self.lipschitz = _validation.positive_number("lipschitz", lipschitz)
        self.set_weight_options(
            use_bias,
            activation=activation,
            kernel_initializer=kernel_initializer or self.default_kernel_initializer,
            bias_initializer=options.pop("bias_initializer", "zeros"),
            **options,
        )
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError("The last dimension of the inputs must be defined, got shape %s." % (input_shape,))
        self.add_kernel_and_bias((input_dim, self.units), *self.kernel_initializer_and_constraint())
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})
        self.build_state(input_dim)
        self.build_kernel_cache((input_dim, self.units))

    def kernel_initializer_and_constraint(self):
        """Hook for subclasses that constrain the variable itself."""
        return self.kernel_initializer, self.kernel_constraint

    def build_state(self, input_dim):
        """Hook for subclasses to create non-trainable state."""

    def kernel_cache_sources(self):
        return [self.kernel]

    def raw_kernel(self):
        return float32_variable_read(self.kernel)

    def effective_kernel(self, training=False):
        raise NotImplementedError

    def call(self, inputs, training=None):
        kernel = self.call_kernel(resolve_training(training))
        outputs = keras.ops.matmul(inputs, keras.ops.cast(kernel, self.compute_dtype))
        return self.add_bias_and_activate(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def lipschitz_upper_bound(self, norm=2):
        """Exact norm of the effective kernel at inference: SVD for `norm=2`, column L1 for "inf"."""
        return dense_kernel_norm(self.inference_kernel(), norm)

    def plain_keras_layer(self):
        """A built `keras.layers.Dense` holding the inference kernel (float32) and bias."""
        dense = keras.layers.Dense(self.units, **self.plain_layer_options())
        dense.build((None, self.kernel.shape[0]))
        dense.set_weights([self.inference_kernel().numpy()] + ([self.bias.numpy()] if self.use_bias else []))
        return dense

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "lipschitz": self.lipschitz,
            **self.weight_options_config(),
        }
