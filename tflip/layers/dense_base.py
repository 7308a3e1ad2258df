"""Shared plumbing of the Dense-like constrained layers (kernel, bias, activation, config)."""

import keras

from tflip import _validation
from tflip.layers.base import LipschitzLayer, float32_variable_read, resolve_training
from tflip.ops.norms import dense_kernel_norm


class ConstrainedDense(keras.layers.Layer, LipschitzLayer):
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
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = _validation.positive_int("units", units)
        self.lipschitz = _validation.positive_number("lipschitz", lipschitz)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or self.default_kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError("The last dimension of the inputs must be defined, got shape %s." % (input_shape,))
        # autocast=False: the constraint math always reads the float32 kernel.
        initializer, constraint = self.kernel_initializer_and_constraint()
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self.units),
            initializer=initializer,
            regularizer=self.kernel_regularizer,
            constraint=constraint,
            autocast=False,
        )
        self.bias = (
            self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
            if self.use_bias
            else None
        )
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
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def lipschitz_upper_bound(self, norm=2):
        """Exact norm of the effective kernel at inference: SVD for `norm=2`, column L1 for "inf"."""
        return dense_kernel_norm(self.effective_kernel(training=False), norm)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "lipschitz": self.lipschitz,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        return config
