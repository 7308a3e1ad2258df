"""Export of a trained constrained model to built-in Keras layers for deployment.

A constrained layer computes its effective kernel from raw weights; once
training is over, the effective kernel is a fixed matrix and a plain Keras
`Dense` or `Conv2D` holding it computes the same map. The exported model
needs no tflip code at inference (weightless tflip activations such as
`GroupSort` stay, and are registered serializables), saves as `.keras`,
serves through `model.export()` (SavedModel) and converts to TFLite.
"""

import keras

from tflip._compat import is_functional
from tflip.layers.base import LipschitzLayer


def to_plain_keras(model):
    """A copy of `model` with every constrained linear layer replaced by its plain Keras layer.

    The graph (Sequential, functional with branches or shared layers, nested
    models) is cloned; each tflip layer with a plain counterpart
    (`LipschitzLayer.plain_keras_layer()`) becomes that layer, holding the
    kernel the tflip layer uses at inference (its cached effective kernel:
    the stored power-iteration estimate, the current Björck inference
    iterations) in float32 variables; every other layer is re-created from its
    config with a copy of its weights. Layer names are kept. The original
    model is not modified.

    Args:
        model: A built Sequential or functional `keras.Model`. The networks
            of a subclassed model (e.g. `WGAN.critic`, `WGAN.generator`)
            are exported one by one.

    Returns:
        A new `keras.Model` of the same kind, with the same outputs at
        inference.

    Raises:
        ValueError: If `model` is not a built Sequential or functional model.

    Example:
        >>> plain = tflip.export.to_plain_keras(critic)
        >>> plain.save("critic.keras")  # loads without tflip's layers
    """
    if not isinstance(model, keras.Sequential) and not is_functional(model):
        raise ValueError(
            f"`model` must be a Sequential or functional keras.Model, got {type(model).__name__}; "
            "export the networks of a subclassed model (e.g. `gan.critic`) one by one."
        )
    if not model.built:
        raise ValueError("`model` must be built (call it once or give it an Input) before export.")
    originals = []

    def clone_layer(layer):
        plain = layer.plain_keras_layer() if isinstance(layer, LipschitzLayer) else None
        if plain is not None:
            return plain
        clone = layer.__class__.from_config(layer.get_config())
        originals.append((layer, clone))
        return clone

    exported = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    for layer, clone in originals:
        clone.set_weights(layer.get_weights())
    return exported

