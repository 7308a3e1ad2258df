"""Critic penalties for Wasserstein GANs: one protocol, `penalty(critic, real, fake)`.

- `GradientPenalty` (GP, Gulrajani et al. 2017) and `LipschitzPenalty` (LP,
  Petzka et al. 2018): (one-/two-sided) gradient-norm penalties at sampled points.
- `AdversarialLipschitzPenalty` (ALP, Terjek 2020): Lipschitz quotients at
  adversarial perturbations of real and fake samples.
- `MaxGradientPenalty` (MaxGP) and `MaxGradientAugmentedLagrangian` (MaxAL),
  Zhou et al. 2019: constraints on the batch maximum of the gradient norm.
- `WeightClipping` (Arjovsky et al. 2017).
- `R1Penalty`, `R2Penalty` and `ZeroCenteredGradientPenalty` (R1 + R2),
  Mescheder et al. 2018: zero-centered gradient penalties on real and/or
  generated samples, optionally lazy (StyleGAN2).
"""

import dataclasses
import typing

from tflip.penalties.adversarial import ALP, AdversarialLipschitzPenalty
from tflip.penalties.base import GradientNormPenalty, LastValue, Penalty
from tflip.penalties.gradient_penalty import GP, LP, GradientPenalty, LipschitzPenalty
from tflip.penalties.max_gradient import MaxAL, MaxGP, MaxGradientAugmentedLagrangian, MaxGradientPenalty
from tflip.penalties.weight_clipping import WeightClipping
from tflip.penalties.zero_centered import R1Penalty, R2Penalty, ZeroCenteredGradientPenalty

__all__ = [
    "ALP",
    "GP",
    "LP",
    "MaxAL",
    "MaxGP",
    "AdversarialLipschitzPenalty",
    "GradientNormPenalty",
    "Hyperparameter",
    "GradientPenalty",
    "LastValue",
    "LipschitzPenalty",
    "MaxGradientAugmentedLagrangian",
    "MaxGradientPenalty",
    "NAMES",
    "NONE",
    "Penalty",
    "PenaltyEntry",
    "R1Penalty",
    "R2Penalty",
    "REGISTRY",
    "WEIGHT",
    "WeightClipping",
    "ZeroCenteredGradientPenalty",
    "get",
]


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """A tunable penalty argument: its default search range and the value a search starts from.

    Attributes:
        name: the hyperparameter's name in a search (`tflip.tuner`), e.g.
            `"alp_epsilon_low"`.
        low: lower end of the default search range (inclusive).
        high: upper end of the default search range (inclusive).
        default: the value a search tries first.
        integer: an integer searched on a linear scale; otherwise a positive
            float searched on a log scale.
    """

    name: str
    low: float
    high: float
    default: float
    integer: bool = False

    @property
    def range(self):
        """The default search range `(low, high)`."""
        return self.low, self.high


@dataclasses.dataclass(frozen=True)
class PenaltyEntry:
    """What the CLI, the tuner and the docs need to know about one penalty.

    Attributes:
        name: the short name accepted by `get` (and by `--penalty`, the tuner's
            `penalties`).
        penalty_class: the `Penalty` subclass.
        weighted: whether the penalty is scaled by a `weight` argument (lambda),
            tuned as the shared hyperparameter `WEIGHT`. MaxAL's strength is its
            adaptive multiplier and weight clipping adds no loss term.
        hyperparameters: its other tunable arguments.
        arguments: maps `{hyperparameter name: value}` to constructor keyword
            arguments (default: the names are the arguments).
    """

    name: str
    penalty_class: type
    weighted: bool
    hyperparameters: tuple = ()
    arguments: typing.Optional[typing.Callable] = None

    def constructor_arguments(self, values):
        """Constructor keyword arguments from hyperparameter values (`WEIGHT.name` -> `weight`)."""
        values = dict(values)
        options = {}
        if WEIGHT.name in values:
            if not self.weighted:
                raise ValueError(f"Penalty {self.name!r} has no `weight`.")
            options["weight"] = values.pop(WEIGHT.name)
        unknown = set(values) - {h.name for h in self.hyperparameters}
        if unknown:
            raise ValueError(f"Penalty {self.name!r} has no hyperparameters {sorted(unknown)}.")
        options.update(self.arguments(values) if self.arguments else values)
        return options


def _alp_arguments(values):
    """ALP's perturbation-length range is one argument, `epsilon=(low, high)`, searched as two."""
    options = {}
    if "alp_epsilon_low" in values or "alp_epsilon_high" in values:
        options["epsilon"] = (values["alp_epsilon_low"], values["alp_epsilon_high"])
    if "alp_power_iterations" in values:
        options["power_iterations"] = values["alp_power_iterations"]
    return options


WEIGHT = Hyperparameter("penalty_weight", 0.1, 100.0, 10.0)
"""The search range of the `weight` (lambda) of every weighted penalty, one hyperparameter for all."""

REGISTRY = {
    entry.name: entry
    for entry in (
        PenaltyEntry("gp", GradientPenalty, weighted=True),
        PenaltyEntry("lp", LipschitzPenalty, weighted=True),
        PenaltyEntry(
            "alp",
            AdversarialLipschitzPenalty,
            weighted=True,
            hyperparameters=(
                Hyperparameter("alp_epsilon_low", 0.01, 0.5, 0.1),
                Hyperparameter("alp_epsilon_high", 1.0, 10.0, 10.0),
                Hyperparameter("alp_power_iterations", 0, 2, 1, integer=True),
            ),
            arguments=_alp_arguments,
        ),
        PenaltyEntry("maxgp", MaxGradientPenalty, weighted=True),
        PenaltyEntry("maxal", MaxGradientAugmentedLagrangian, weighted=False),
        PenaltyEntry("clip", WeightClipping, weighted=False),
        PenaltyEntry("r1", R1Penalty, weighted=True),
        PenaltyEntry("r2", R2Penalty, weighted=True),
        PenaltyEntry("r1r2", ZeroCenteredGradientPenalty, weighted=True),
    )
}
"""The one registry of penalties: short name -> `PenaltyEntry`.

`get`, the `tflip demo --penalty` choices and the tuner's penalty search
space read it; tests check the docs' tables against it.
"""

NAMES = tuple(REGISTRY)
"""Short names of the penalties, as accepted by `get`."""

NONE = "none"
"""The name that selects no penalty where a choice is offered (CLI, tuner); `get` maps it to `None`."""


def get(identifier, **kwargs):
    """Returns a penalty from an instance, a config dict, a name, `"none"` or `None`.

    The one way to build a penalty from a name: names are the keys of
    `REGISTRY` ("gp", "lp", "alp", "maxgp", "maxal", "clip", "r1", "r2",
    "r1r2") or the class
    names; `kwargs` go to the constructor of a named penalty (e.g.
    `get("lp", weight=5.0)`). `"none"` and `None` give `None`.
    """
    if identifier is None or (isinstance(identifier, str) and identifier.lower() == NONE):
        if kwargs:
            raise ValueError(f"Constructor arguments {sorted(kwargs)} need a penalty, got {identifier!r}.")
        return None
    if kwargs and not isinstance(identifier, str):
        raise ValueError(f"Constructor arguments {sorted(kwargs)} need a penalty name, got {identifier!r}.")
    if isinstance(identifier, Penalty):
        return identifier
    if isinstance(identifier, dict):
        import keras

        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        classes = {name: entry.penalty_class for name, entry in REGISTRY.items()}
        classes.update({entry.penalty_class.__name__.lower(): entry.penalty_class for entry in REGISTRY.values()})
        if key in classes:
            return classes[key](**kwargs)
    names = ", ".join(repr(name) for name in NAMES)
    raise ValueError(
        f"`penalty` must be a tflip Penalty, a config dict, None, 'none' or one of {names}, got {identifier!r}."
    )
