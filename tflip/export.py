"""Export of a trained constrained model to built-in Keras layers for deployment.

A constrained layer computes its effective kernel from raw weights; once
training is over, the effective kernel is a fixed matrix and a plain Keras
`Dense` or `Conv2D` holding it computes the same map. Layers that are more
than one linear map (SLL residual layers, `LipschitzResidual` blocks, circular
`OrthogonalConv2D`) become small nested functional models of built-in layers.
The exported model needs no tflip code at inference unless the caller keeps
some tflip layers (`keep`) or it uses tflip's weightless activations
(`GroupSort`...; registered serializables); it saves as `.keras`, serves
through `model.export()` (SavedModel) and converts to TFLite.
"""

import keras

from tflip._compat import is_functional
from tflip.layers.base import LipschitzLayer


def _check_keep(keep):
    if not isinstance(keep, (tuple, list)) or not all(
        isinstance(cls, type) and issubclass(cls, LipschitzLayer) for cls in keep
    ):
        raise ValueError(f"`keep` must be a tuple or list of tflip layer classes (e.g. `(SLLConv2D,)`), got {keep!r}.")
    return tuple(keep)


def _plain_layer(layer, keep):
    """The built-in Keras layer (or nested model) replacing `layer`, or None if `layer` is to be copied."""
    if not isinstance(layer, LipschitzLayer) or isinstance(layer, keep):
        return None
    if getattr(layer, "exports_sublayers", False):  # wrappers export what they wrap, honouring `keep`
        return layer.plain_keras_layer(keep=keep)
    return layer.plain_keras_layer()


def export_layer(layer, input_shape, keep=()):
    """The exported counterpart of one built layer, for wrappers that export what they wrap.

    A Sequential or functional model is exported by `to_plain_keras`; a tflip
    layer becomes its plain layer unless its class is in `keep`; any other
    layer (and a kept one) is a copy with the same config and weights.

    Args:
        layer: A built Keras layer or model.
        input_shape: The shape `layer` was built with (to build the copy).
        keep: As in `to_plain_keras`.

    Returns:
        A built layer or model computing what `layer` computes at inference.
    """
    keep = _check_keep(keep)
    if isinstance(layer, keras.Model) and not isinstance(layer, keep):
        return to_plain_keras(layer, keep=keep)
    plain = _plain_layer(layer, keep)
    if plain is None:
        plain = layer.__class__.from_config(layer.get_config())
        plain.build(input_shape)
        plain.set_weights(layer.get_weights())
    return plain


def to_plain_keras(model, keep=()):
    """A copy of `model` with every constrained layer replaced by built-in Keras layers.

    The graph (Sequential, functional with branches or shared layers, nested
    models) is cloned; each tflip layer with a plain counterpart
    (`LipschitzLayer.plain_keras_layer()`) becomes that layer, holding the
    kernel the tflip layer uses at inference (its cached effective kernel:
    the stored power-iteration estimate, the current Björck inference
    iterations) in float32 variables; every other layer is re-created from its
    config with a copy of its weights. Layer names are kept (a layer that
    becomes a nested model gives it its name). The original model is not
    modified.

    SLL layers (`SLLDense`, `SLLConv2D`) become a nested model
    `x + Dense/Conv2DTranspose(-2 V)(relu(Dense/Conv2D(V)(x)))` with the same
    outputs, but the bound that `tflip.lipschitz.lipschitz_upper_bound`
    re-certifies from those plain layers is the graph bound (in L2
    `1 + 2 ||V||^2`, up to 3), not the layer's SDP certificate 1: certify the
    original model, or keep the SLL layers (`keep=(SLLDense, SLLConv2D)`, and
    the export needs tflip to load). `LipschitzResidual` blocks become
    `Add([Rescaling(1 - alpha)(x), Rescaling(alpha)(f(x))])` around the
    exported branch, with `alpha` fixed at its current value, and re-certify
    to the same bound unless their branch holds an expanded SLL layer. The
    nested models accept every input size the layers accept; their
    convolutions are bounded on the size the layers were built for.

    Args:
        model: A built Sequential or functional `keras.Model`. The networks
            of a subclassed model (e.g. `WGAN.critic`, `WGAN.generator`)
            are exported one by one.
        keep: Tuple or list of tflip layer classes whose instances are
            copied as they are instead of expanded (subclasses included,
            also inside `LipschitzResidual` branches). Default: none, every
            tflip layer with a plain counterpart is expanded.

    Returns:
        A new `keras.Model` of the same kind, with the same outputs at
        inference.

    Raises:
        ValueError: If `model` is not a built Sequential or functional model,
            or `keep` is not a tuple or list of tflip layer classes.

    Example:
        >>> plain = tflip.export.to_plain_keras(critic)
        >>> plain.save("critic.keras")  # loads without tflip's layers
        >>> kept = tflip.export.to_plain_keras(critic, keep=(tflip.layers.SLLConv2D,))  # SDP certificate kept
    """
    keep = _check_keep(keep)
    if not isinstance(model, keras.Sequential) and not is_functional(model):
        raise ValueError(
            f"`model` must be a Sequential or functional keras.Model, got {type(model).__name__}; "
            "export the networks of a subclassed model (e.g. `gan.critic`) one by one."
        )
    if not model.built:
        raise ValueError("`model` must be built (call it once or give it an Input) before export.")
    originals = []

    def clone_layer(layer):
        plain = _plain_layer(layer, keep)
        if plain is not None:
            return plain
        clone = layer.__class__.from_config(layer.get_config())
        originals.append((layer, clone))
        return clone

    exported = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    for layer, clone in originals:
        clone.set_weights(layer.get_weights())
    return exported
