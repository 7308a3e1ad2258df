"""The Lipschitz-layer protocol shared by every tflip layer.

Network-level bounds and the monitoring callbacks only talk to this protocol,
so a new constrained layer plugs in without touching them.
"""

import keras

from tflip import _compat


class LipschitzLayer:
    """Mixin for layers with a known Lipschitz constant (in the L2 metric).

    Subclasses set `self.lipschitz` (the gain the layer promises, the per-layer
    `k` of the Sargent thesis) and implement:

    - `operator_norm()`: the norm of the effective linear map that the layer
      currently enforces, as the layer itself measures it (for power-iteration
      layers this is an estimate from below; for exact constructions the
      exact value). Returns a float32 scalar tensor.
    - `lipschitz_upper_bound(norm=2)`: a certified upper bound of the layer's
      Lipschitz constant in the given input/output norm (`2` or `"inf"`),
      computed independently of any running estimate. Returns a float.

    - `plain_keras_layer()`: a built-in Keras layer (`Dense`, `Conv2D`...),
      or a small nested functional model of them named after the layer,
      built and holding the effective inference kernel in float32, that
      computes what the layer computes at inference; `None` for layers that
      `tflip.export.to_plain_keras` keeps as they are (weightless
      activations). Wrappers that export their sublayers set
      `exports_sublayers = True` and take `plain_keras_layer(keep=())`.

    Layers without weights (activations) return constants.
    """

    lipschitz = 1.0

    def operator_norm(self):
        raise NotImplementedError

    def lipschitz_upper_bound(self, norm=2):
        raise NotImplementedError

    def plain_keras_layer(self):
        return None

    def plain_layer_options(self):
        """Constructor arguments every exported layer takes from this one."""
        return {
            "name": self.name,
            "dtype": self.dtype_policy,
            "activation": getattr(self, "activation", None),
            "use_bias": getattr(self, "use_bias", False),
        }


def iter_layers(layer):
    """`layer` and every layer nested in it, each once, depth first.

    Nested models (a WGAN's critic and generator) and layers tracked as
    attributes of custom layers (residual blocks, wrappers) are included,
    through Keras' own traversal of tracked sublayers.
    """
    flattened = _compat.flatten_layers(layer)
    if flattened is None:
        yield layer
        for sublayer in getattr(layer, "layers", None) or ():
            yield from iter_layers(sublayer)
        return
    yield from flattened


def resolve_training(training):
    """Keras passes `training=None` outside `fit`; treat it as inference."""
    return bool(training) if training is not None else False


def float32_variable_read(variable):
    """Reads a variable as float32 whatever the layer's compute dtype.

    Variables created with `autocast=False` are read at full precision, so the
    norm computations never see a float16/bfloat16 rounded kernel.
    """
    return keras.ops.cast(variable, "float32")


_WEIGHT_OPTION_KINDS = {
    "activation": keras.activations,
    "kernel_initializer": keras.initializers,
    "bias_initializer": keras.initializers,
    "kernel_regularizer": keras.regularizers,
    "bias_regularizer": keras.regularizers,
    "kernel_constraint": keras.constraints,
    "bias_constraint": keras.constraints,
}


WEIGHT_OPTIONS = tuple(_WEIGHT_OPTION_KINDS)


class KernelBiasLayer:
    """Mixin: the kernel/bias/activation options of Keras' Dense and Conv layers.

    Keeps the argument handling, weight creation and config of those options
    in one place for every constrained layer.
    """

    def init_with_weight_options(self, kwargs, use_bias, activity_regularizer, default_kernel_initializer):
        """Runs the Keras layer constructor on the base arguments in `kwargs`, then stores the weight options.

        The weight options (`_WEIGHT_OPTION_KINDS`) are taken out of `kwargs`
        first; the kernel initializer defaults to `default_kernel_initializer`
        and the bias initializer to zeros.
        """
        options = {name: kwargs.pop(name) for name in list(kwargs) if name in WEIGHT_OPTIONS}
        # The constructor after this mixin in the MRO: keras.layers.Layer's.
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        options.setdefault("kernel_initializer", default_kernel_initializer)
        options.setdefault("bias_initializer", "zeros")
        self.set_weight_options(use_bias, **options)

    def set_weight_options(self, use_bias, **options):
        """Stores `use_bias` and the options named in `_WEIGHT_OPTION_KINDS`."""
        self.use_bias = bool(use_bias)
        for name, module in _WEIGHT_OPTION_KINDS.items():
            setattr(self, name, module.get(options.pop(name, None)))
        if options:
            raise TypeError(f"Unexpected arguments: {sorted(options)}.")

    def add_kernel_and_bias(self, kernel_shape, initializer, constraint):
        """Creates `self.kernel` (read at float32: `autocast=False`) and `self.bias`."""
        self.kernel = self.add_weight(
            name="kernel",
            shape=kernel_shape,
            initializer=initializer,
            regularizer=self.kernel_regularizer,
            constraint=constraint,
            autocast=False,
        )
        self.bias = (
            self.add_weight(
                name="bias",
                shape=(kernel_shape[-1],),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
            if self.use_bias
            else None
        )

    def add_bias_and_activate(self, outputs):
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def weight_options_config(self):
        config = {
            "use_bias": self.use_bias,
            "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
        }
        for name, module in _WEIGHT_OPTION_KINDS.items():
            config[name] = module.serialize(getattr(self, name))
        return config
