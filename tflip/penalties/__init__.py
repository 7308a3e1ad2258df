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


def get(identifier):
    """Returns a penalty from an instance, a config dict, a name or `None`.

    Names: "gp", "lp", "alp", "maxgp", "maxal", "clip" (default arguments)
    or the class names.
    """
    if identifier is None or isinstance(identifier, Penalty):
        return identifier
    if isinstance(identifier, dict):
        import keras

        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        classes = {
            "gp": GradientPenalty, "lp": LipschitzPenalty, "alp": AdversarialLipschitzPenalty,
            "maxgp": MaxGradientPenalty, "maxal": MaxGradientAugmentedLagrangian, "clip": WeightClipping,
        }
        classes.update({cls.__name__.lower(): cls for cls in set(classes.values())})
        if key in classes:
            return classes[key]()
    raise ValueError(
        "`penalty` must be a tflip Penalty, a config dict, None or one of "
        f"'gp', 'lp', 'alp', 'maxgp', 'maxal', 'clip', got {identifier!r}."
    )
