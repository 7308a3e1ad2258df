"""Shared plumbing of the Dense-like constrained layers (kernel, bias, activation, config)."""

import keras

from tflip import _validation
from tflip.layers.base import WEIGHT_OPTIONS, KernelBiasLayer, LipschitzLayer, float32_variable_read, resolve_training
from tflip.ops.norms import dense_kernel_norm


class ConstrainedDense(KernelBiasLayer, keras.layers.Layer, LipschitzLayer):
    """A Dense layer whose kernel is replaced by an effective kernel in every call.

    Subclasses implement `effective_kernel(training=False)`, which reads the
    raw float32 kernel (`self.raw_kernel()`) and returns the constrained one in
    float32. The trainable variable is never overwritten, so the constraint
    is differentiated through.

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

    def kernel_initializer_and_constraint(self):
        """Hook for subclasses that constrain the variable itself."""
        return self.kernel_initializer, self.kernel_constraint

    def build_state(self, input_dim):
        """Hook for subclasses to create non-trainable state."""

    def raw_kernel(self):
        return float32_variable_read(self.kernel)

    def effective_kernel(self, training=False):
        raise NotImplementedError

    def call(self, inputs, training=None):
        kernel = self.effective_kernel(training=resolve_training(training))
        outputs = keras.ops.matmul(inputs, keras.ops.cast(kernel, self.compute_dtype))
        return self.add_bias_and_activate(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def lipschitz_upper_bound(self, norm=2):
        """Exact norm of the effective kernel at inference: SVD for `norm=2`, column L1 for "inf"."""
        return dense_kernel_norm(self.effective_kernel(training=False), norm)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "lipschitz": self.lipschitz,
            **self.weight_options_config(),
        }
