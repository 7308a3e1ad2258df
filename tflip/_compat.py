"""The one place where tflip touches private Keras / TensorFlow APIs.

Each helper names the private symbol it relies on and the versions it was
checked against (Keras 3.0-3.15, TensorFlow 2.16-2.21); when one moves, only
this module changes.
"""

from keras.src.models.functional import Functional as _Functional  # private since Keras 3.0


def is_functional(model):
    """Whether `model` is a functional model (built from `keras.Input`), not a subclassed one.

    Keras exposes no public predicate: `keras.Model(inputs, outputs)` returns
    an instance of the private `Functional` class (Keras 3.0-3.15).
    """
    return isinstance(model, _Functional)
