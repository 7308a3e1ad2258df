"""Critic penalties for Wasserstein GANs: one protocol, `penalty(critic, real, fake)`.

- `GradientPenalty` (GP, Gulrajani et al. 2017) and `LipschitzPenalty` (LP,
  Petzka et al. 2018): (one-/two-sided) gradient-norm penalties at sampled points.
- `AdversarialLipschitzPenalty` (ALP, Terjek 2020): Lipschitz quotients at
  adversarial perturbations of real and fake samples.
- `MaxGradientPenalty` (MaxGP) and `MaxGradientAugmentedLagrangian` (MaxAL),
  Zhou et al. 2019: constraints on the batch maximum of the gradient norm.
- `WeightClipping` (Arjovsky et al. 2017).
"""

from tflip.penalties.adversarial import ALP, AdversarialLipschitzPenalty
from tflip.penalties.base import GradientNormPenalty, LastValue, Penalty
from tflip.penalties.gradient_penalty import GP, LP, GradientPenalty, LipschitzPenalty
from tflip.penalties.max_gradient import MaxAL, MaxGP, MaxGradientAugmentedLagrangian, MaxGradientPenalty
from tflip.penalties.weight_clipping import WeightClipping

__all__ = [
    "ALP",
    "GP",
    "LP",
    "MaxAL",
    "MaxGP",
    "AdversarialLipschitzPenalty",
    "GradientNormPenalty",
    "GradientPenalty",
    "LastValue",
    "LipschitzPenalty",
    "MaxGradientAugmentedLagrangian",
    "MaxGradientPenalty",
    "Penalty",
    "WeightClipping",
]


def _by_name():
    return {
        "gp": GradientPenalty, "lp": LipschitzPenalty, "alp": AdversarialLipschitzPenalty,
        "maxgp": MaxGradientPenalty, "maxal": MaxGradientAugmentedLagrangian, "clip": WeightClipping,
    }


#: Short names of the penalties, as accepted by `get`.
NAMES = tuple(_by_name())


def get(identifier, **kwargs):
    """Returns a penalty from an instance, a config dict, a name or `None`.

    Names: "gp", "lp", "alp", "maxgp", "maxal", "clip" or the class names;
    `kwargs` go to the constructor of a named penalty (e.g.
    `get("lp", weight=5.0)`).
    """
    if kwargs and not isinstance(identifier, str):
        raise ValueError(f"Constructor arguments {sorted(kwargs)} need a penalty name, got {identifier!r}.")
    if identifier is None or isinstance(identifier, Penalty):
        return identifier
    if isinstance(identifier, dict):
        import keras

        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        classes = _by_name()
        classes.update({cls.__name__.lower(): cls for cls in set(classes.values())})
        if key in classes:
            return classes[key](**kwargs)
    raise ValueError(
        "`penalty` must be a tflip Penalty, a config dict, None or one of "
        f"'gp', 'lp', 'alp', 'maxgp', 'maxal', 'clip', got {identifier!r}."
    )
