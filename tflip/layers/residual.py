"""LipschitzResidual: a convex combination of the identity and a Lipschitz branch."""

import math

import keras
import tensorflow as tf

from tflip.layers.base import LipschitzLayer


def _alpha(value, learnable):
    """Validates the mixing weight: in [0, 1], or in (0, 1) when learned through a sigmoid."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`alpha` must be a number in [0, 1], got {value!r}.")
    if learnable and not 0.0 < value < 1.0:
        raise ValueError(f"`alpha` must be in (0, 1) when `learn_alpha=True` (a sigmoid), got {value!r}.")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="tflip")
class LipschitzResidual(keras.layers.Layer, LipschitzLayer):
    """Residual block `y = (1 - alpha) x + alpha f(x)`: a convex combination of identity and branch.

    A plain residual `x + f(x)` has constant `1 + L_f`, which compounds over
    depth; a convex combination has `(1 - alpha) + alpha L_f` (triangle
    inequality), which is 1 for a 1-Lipschitz branch whatever the depth
    (the convex residual of Meunier et al., "A dynamical system perspective
    for Lipschitz neural networks", ICML 2022, eq. 6, there with a fixed
    step; Anil et al. 2019 sec. 3 on why 1-Lipschitz networks need such
    norm-controlled blocks). The bound is tight when the branch is linear
    and scales the direction of largest gain.

    `alpha` is fixed by default. With `learn_alpha=True` it is learned as
    `sigmoid(theta)` (a trainable scalar `alpha_logit`), so it stays in
    (0, 1) without projection and the bound above holds after every step;
    the certified bound uses its current value.

    Args:
        layer: The branch `f`, a Keras layer or model whose output shape
            equals its input shape. Its certified constant comes from
            `tflip.lipschitz.layer_lipschitz_bound` (tflip layers, known
            Keras layers, nested models).
        alpha: Weight of the branch, in [0, 1] (in (0, 1) if learned).
        learn_alpha: Whether `alpha` is trainable (through a sigmoid).
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor, the input of the branch.
        training: Passed to the branch.

    Returns:
        Tensor of the shape of `inputs`.

    Example:
        >>> branch = keras.Sequential([SpectralNormConv2D(16, 3), GroupSort(2), SpectralNormConv2D(16, 3)])
        >>> block = LipschitzResidual(branch, alpha=0.5)
        >>> y = block(tf.random.normal((8, 16, 16, 16)))  # 1-Lipschitz
    """

    bounds_sublayers = True  # tflip.lipschitz passes its `known` constants through to the branch
    exports_sublayers = True  # tflip.export passes its `keep` classes through to the branch

    def __init__(self, layer, alpha=0.5, learn_alpha=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"`layer` must be a Keras layer or model, got {type(layer).__name__}.")
        self.layer = layer
        self.learn_alpha = bool(learn_alpha)
        self.alpha = _alpha(alpha, self.learn_alpha)
        self.alpha_logit = None

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if not self.layer.built:
            self.layer.build(input_shape)
        spec = self.layer.compute_output_spec(keras.KerasTensor(input_shape, dtype=self.compute_dtype))
        if tuple(spec.shape[1:]) != input_shape[1:]:
            raise ValueError(
                f"The output shape {tuple(spec.shape)} of `layer` ({self.layer.name!r}) differs from its input "
                f"shape {input_shape}: a residual block adds them."
            )
        self.residual_input_shape = input_shape
        self.alpha_logit = (
            self.add_weight(
                name="alpha_logit",
                shape=(),
                initializer=keras.initializers.Constant(math.log(self.alpha / (1.0 - self.alpha))),
                autocast=False,
            )
            if self.learn_alpha
            else None
        )

    def current_alpha(self):
        """The mixing weight the layer uses now (float32 scalar tensor)."""
        if self.alpha_logit is None:
            return tf.constant(self.alpha, tf.float32)
        return tf.sigmoid(keras.ops.cast(self.alpha_logit, "float32"))

    def call(self, inputs, training=None):
        branch = self.layer(inputs, training=training)
        alpha = keras.ops.cast(self.current_alpha(), self.compute_dtype)
        return (1.0 - alpha) * inputs + alpha * keras.ops.cast(branch, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    @property
    def lipschitz(self):
        """The gain the block promises: `(1 - alpha) + alpha * k` with the branch's promised `k` (1 if none)."""
        alpha = float(self.current_alpha()) if self.built else self.alpha
        return (1.0 - alpha) + alpha * float(getattr(self.layer, "lipschitz", 1.0))

    def operator_norm(self):
        """`(1 - alpha) + alpha * ||f||` with the branch's own `operator_norm()` (an estimate, as the branch's).

        A branch without one (a model, a plain Keras layer) contributes its
        certified bound instead.
        """
        alpha = self.current_alpha()
        if isinstance(self.layer, LipschitzLayer):
            branch = tf.cast(self.layer.operator_norm(), tf.float32)
        else:
            from tflip.lipschitz import layer_lipschitz_bound

            branch = tf.constant(layer_lipschitz_bound(self.layer), tf.float32)
        return (1.0 - alpha) + alpha * branch

    def lipschitz_upper_bound(self, norm=2, known=None):
        """Certified `(1 - alpha) + alpha * L_f`, with `L_f` from `tflip.lipschitz.layer_lipschitz_bound`.

        Args:
            norm: 2 or "inf".
            known: Optional `{layer_name: constant}` for layers in the branch.
        """
        from tflip.lipschitz import layer_lipschitz_bound  # the graph bounds know this layer: no import cycle

        alpha = float(self.current_alpha())
        return (1.0 - alpha) + alpha * layer_lipschitz_bound(self.layer, norm, known)

    def plain_keras_layer(self, keep=()):
        """The block as a nested functional model of built-in layers, with `alpha` fixed at its current value.

        `Add([Rescaling(1 - alpha)(x), Rescaling(alpha)(g(x))])`, named after
        this layer (its layers `<name>_identity_scale`, `<name>_branch_scale`,
        `<name>_combine`), where `g` is the exported branch
        (`tflip.export.export_layer`: `to_plain_keras` for a model branch, the
        branch's own plain layer for a tflip layer, a copy otherwise), built
        for this block's build shape. The model accepts every input size the
        block accepts. Both scales are the values `call` multiplies by, in
        the compute dtype (in a float64 block to the float32 precision at
        which Keras' `Rescaling` holds its scale), so the outputs agree, and
        `tflip.lipschitz.lipschitz_upper_bound` bounds the `Add` of the two
        rescaled paths by `(1 - alpha) + alpha L_g`: this block's own bound
        when the exported branch re-certifies to the branch's (an expanded
        SLL branch does not; see `tflip.export.to_plain_keras`).

        Args:
            keep: tflip layer classes the branch keeps as they are (as in
                `tflip.export.to_plain_keras`).

        Returns:
            A built `keras.Model`.
        """
        from tflip.export import export_layer

        branch = export_layer(self.layer, self.residual_input_shape, keep)
        dtype = self.dtype_policy
        # The scales `call` multiplies by: alpha cast to the compute dtype, and 1 - alpha computed in it.
        alpha = tf.cast(self.current_alpha(), self.compute_dtype)
        scales = float(1.0 - alpha), float(alpha)
        shape = self.residual_input_shape
        inputs = keras.Input((None,) * (len(shape) - 2) + (shape[-1],), dtype=dtype.variable_dtype)
        identity = keras.layers.Rescaling(scales[0], name=f"{self.name}_identity_scale", dtype=dtype)(inputs)
        mixed = keras.layers.Rescaling(scales[1], name=f"{self.name}_branch_scale", dtype=dtype)(branch(inputs))
        outputs = keras.layers.Add(name=f"{self.name}_combine", dtype=dtype)([identity, mixed])
        return keras.Model(inputs, outputs, name=self.name)

    def get_config(self):
        return {
            **super().get_config(),
            "layer": keras.saving.serialize_keras_object(self.layer),
            "alpha": self.alpha,
            "learn_alpha": self.learn_alpha,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)
