"""The Lipschitz-layer protocol shared by every tflip layer.

Network-level bounds and the monitoring callbacks only talk to this protocol,
so a new constrained layer plugs in without touching them.
"""

import keras


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

    Layers without weights (activations) return constants.
    """

    lipschitz = 1.0

    def operator_norm(self):
        raise NotImplementedError

    def lipschitz_upper_bound(self, norm=2):
        raise NotImplementedError


def resolve_training(training):
    """Keras passes `training=None` outside `fit`; treat it as inference."""
    return bool(training) if training is not None else False


def float32_variable_read(variable):
    """Reads a variable as float32 whatever the layer's compute dtype.

    Variables created with `autocast=False` are read at full precision, so the
    norm computations never see a float16/bfloat16 rounded kernel.
    """
    return keras.ops.cast(variable, "float32")
