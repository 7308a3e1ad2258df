"""Keras Tuner hypermodels for `WGAN` and `WassersteinCritic`.

`WGANHyperModel` searches penalties, critic architectures and optimizer
settings of a WGAN on vector data and scores every trial by the exact W1
between generated and held-out real samples (`w1_exact`, minimized);
`WassersteinCriticHyperModel` searches critics that estimate W1 between two
sample sources and scores them by the held-out dual estimate
(`val_wasserstein`, maximized). Pass each hypermodel's `objective` to the
tuner:

>>> import keras_tuner, tflip.tuner
>>> hypermodel = tflip.tuner.WGANHyperModel(data_dim=2, latent_dim=2, held_out_real=held_out)
>>> tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=10)
>>> tuner.search(train, epochs=5, batch_size=256)

`import tflip` does not import this module (nor Keras Tuner): use
`import tflip.tuner`.
"""

import math
import numbers

import keras
import keras_tuner
import numpy as np

from tflip import _validation
from tflip import penalties as penalty_lib
from tflip.callbacks.wasserstein import ExactWasserstein
from tflip.models import WGAN, WassersteinCritic
from tflip.models.mlp import ACTIVATIONS, CONSTRAINTS, lipschitz_mlp, relu_mlp, width_multiple

__all__ = [
    "ACTIVATIONS",
    "CONSTRAINTS",
    "PENALTIES",
    "PenaltySpace",
    "WGANHyperModel",
    "WassersteinCriticHyperModel",
    "critic_mlp",
    "generator_mlp",
]

# The penalty names a search may choose from: the registry's and "none".
PENALTIES = (*penalty_lib.NAMES, penalty_lib.NONE)

# --- Argument normalization: every option is a fixed value or a (low, high) range.


def _choices(name, values, allowed):
    """`values` as a de-duplicated tuple of lower-case members of `allowed`."""
    if isinstance(values, str):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"`{name}` must be a non-empty sequence of {list(allowed)}, got {values!r}.") from None
    if not values:
        raise ValueError(f"`{name}` must be a non-empty sequence of {list(allowed)}, got {values!r}.")
    result = []
    for value in values:
        key = value.lower() if isinstance(value, str) else value
        if key not in allowed:
            raise ValueError(f"`{name}` may only contain {list(allowed)}, got {value!r}.")
        if key not in result:
            result.append(key)
    return tuple(result)


def _bounds(name, value, check):
    """`(low, high)` from a number (fixed: low == high) or a pair, each checked by `check`."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        value = check(name, value)
        return value, value
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number or a (low, high) pair, got {value!r}.") from None
    low, high = check(name, low), check(name, high)
    if low > high:
        raise ValueError(f"`{name}` must have low <= high, got {value!r}.")
    return low, high


def _float_bounds(name, value):
    return _bounds(name, value, _validation.positive_number)


def _int_bounds(name, value):
    return _bounds(name, value, _validation.positive_int)


def _clip(value, bounds):
    return min(max(value, bounds[0]), bounds[1])


def _hp_float(hp, name, bounds, default, **condition):
    """A log-scale Float hyperparameter, or a Fixed one for a fixed value."""
    low, high = bounds
    if low == high:
        return hp.Fixed(name, low, **condition)
    return hp.Float(name, low, high, sampling="log", default=_clip(default, bounds), **condition)


def _hp_int(hp, name, bounds, default, step=1, **condition):
    """An Int hyperparameter on `low, low + step, ..., high`, or a Fixed one."""
    low, high = bounds
    if low == high:
        return hp.Fixed(name, low, **condition)
    default = low + (_clip(default, bounds) - low) // step * step
    return hp.Int(name, low, high, step=step, default=default, **condition)


def _dims(name, value):
    return _validation.positive_int(name, value)


def _samples(name, value, data_dim):
    samples = np.asarray(value, dtype="float32")
    if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[1] != data_dim:
        raise ValueError(
            f"`{name}` must be a non-empty array of shape (n, data_dim={data_dim}), got shape {samples.shape}."
        )
    return samples


# --- Search spaces: validated once, registered into `hp` at every build.


def _registry_hyperparameters():
    """The tunable penalty hyperparameters of `tflip.penalties.REGISTRY`, the shared weight first."""
    parameters = [penalty_lib.WEIGHT]
    for entry in penalty_lib.REGISTRY.values():
        parameters += [p for p in entry.hyperparameters if p not in parameters]
    return parameters


class PenaltySpace:
    """The penalty part of a search space: which penalties, and the search range of each of their hyperparameters.

    Penalty names, which ones take a `weight`, and the hyperparameters with
    their default ranges come from `tflip.penalties.REGISTRY`; a range given
    here restricts (or fixes) one of them.

    Args:
        penalties: names to choose from: keys of `tflip.penalties.REGISTRY`
            and `"none"`.
        ranges: optional `{hyperparameter name: number or (low, high)}`
            (e.g. `{"penalty_weight": (1.0, 10.0)}`); a missing or `None`
            entry keeps the registry's range.

    Example:

        >>> space = PenaltySpace(["gp", "alp"], {"penalty_weight": 10.0})
        >>> penalty = space.build(keras_tuner.HyperParameters(), seed=0)
    """

    def __init__(self, penalties, ranges=None):
        self.penalties = _choices("penalties", penalties, PENALTIES)
        ranges = dict(ranges or {})
        parameters = _registry_hyperparameters()
        unknown = set(ranges) - {parameter.name for parameter in parameters}
        if unknown:
            raise ValueError(f"Unknown penalty hyperparameters {sorted(unknown)}.")
        self.ranges = {}
        for parameter in parameters:
            value = ranges.get(parameter.name)
            check = _validation.non_negative_int if parameter.integer else _validation.positive_number
            self.ranges[parameter.name] = _bounds(parameter.name, parameter.range if value is None else value, check)
        # ALP's epsilon = (low, high) is searched as two ranges; disjoint ranges
        # keep every sampled pair a valid (low < high) range.
        if self.ranges["alp_epsilon_low"][1] >= self.ranges["alp_epsilon_high"][0]:
            raise ValueError(
                "`alp_epsilon_high` must lie above `alp_epsilon_low` (so every sampled ALP range has low < high), "
                f"got {self.ranges['alp_epsilon_low']!r} and {self.ranges['alp_epsilon_high']!r}."
            )

    def build(self, hp, seed=0):
        """Registers the penalty hyperparameters in `hp` and returns the chosen penalty (or `None`).

        Each penalty's hyperparameters are active only when it is chosen (the
        shared `penalty_weight` for every weighted one).

        Args:
            hp: a `keras_tuner.HyperParameters`.
            seed: seed of the penalty's random draws.

        Returns:
            A `tflip.penalties.Penalty`, or `None` for `"none"`.
        """
        choice = hp.Choice("penalty", list(self.penalties))
        entries = [penalty_lib.REGISTRY[name] for name in self.penalties if name != penalty_lib.NONE]
        values = {}
        weighted = [entry.name for entry in entries if entry.weighted]
        if weighted:
            weight = penalty_lib.WEIGHT
            values[weight.name] = _hp_float(
                hp, weight.name, self.ranges[weight.name], weight.default,
                parent_name="penalty", parent_values=weighted,
            )
        for entry in entries:
            for parameter in entry.hyperparameters:
                register = _hp_int if parameter.integer else _hp_float
                values[parameter.name] = register(
                    hp, parameter.name, self.ranges[parameter.name], parameter.default,
                    parent_name="penalty", parent_values=[entry.name],
                )
        if choice == penalty_lib.NONE:
            return None
        entry = penalty_lib.REGISTRY[choice]
        names = [parameter.name for parameter in entry.hyperparameters]
        if entry.weighted:
            names.append(penalty_lib.WEIGHT.name)
        arguments = entry.constructor_arguments({name: values[name] for name in names})
        return penalty_lib.get(choice, seed=seed, **arguments)


# --- Critic and generator builders shared by both hypermodels.


class _CriticSpace:
    """The validated critic options of `critic_mlp` (checked once, used for every build)."""

    def __init__(self, constraints, activations, group_sizes, depth, width):
        self.constraints = _choices("constraints", constraints, CONSTRAINTS)
        self.activations = _choices("activations", activations, ACTIVATIONS)
        try:
            group_sizes = tuple(group_sizes)
        except TypeError:
            group_sizes = (group_sizes,)
        if not group_sizes:
            raise ValueError("`group_sizes` must be a non-empty sequence of integers >= 2, got ().")
        self.group_sizes = tuple(sorted({_validation.positive_int("group_sizes", g, minimum=2) for g in group_sizes}))
        self.depth = _int_bounds("critic_depth", depth)
        # Every width must suit every activation it can meet: MaxMin needs an
        # even width and GroupSort a multiple of its group size. A width step
        # of their lcm keeps all combinations valid, so the width does not
        # have to be conditional on the activation.
        self.width_step = math.lcm(
            *(width_multiple(activation, group) for activation in self.activations for group in self.group_sizes)
        )
        low, high = _int_bounds("critic_width", width)
        step = self.width_step
        if low == high:
            if low % step:
                raise ValueError(
                    f"`critic_width` must be divisible by {step} (MaxMin needs even widths, GroupSort multiples "
                    f"of the group sizes {list(self.group_sizes)}), got {low}."
                )
        else:
            low, high = -(-low // step) * step, high // step * step
            if low > high:
                raise ValueError(f"`critic_width` range {width!r} contains no multiple of {step}.")
        self.width = (low, high)

    def build(self, hp, data_dim, name="critic"):
        constraint = hp.Choice("critic_constraint", list(self.constraints))
        activation = hp.Choice("critic_activation", list(self.activations))
        group_size = None
        if "groupsort" in self.activations:
            group_size = hp.Choice(
                "critic_group_size", list(self.group_sizes), parent_name="critic_activation",
                parent_values=["groupsort"],
            )
        depth = _hp_int(hp, "critic_depth", self.depth, default=2)
        width = _hp_int(hp, "critic_width", self.width, default=32, step=self.width_step)

        return lipschitz_mlp(data_dim, 1, depth, width, constraint, activation, group_size or 2, name=name)


def critic_mlp(
    hp,
    data_dim,
    constraints=CONSTRAINTS,
    activations=ACTIVATIONS,
    group_sizes=(2, 4),
    depth=(1, 3),
    width=(16, 64),
    name="critic",
):
    """Builds a critic MLP `data_dim -> 1` from hyperparameters.

    Registers `critic_constraint` (Choice of `constraints`),
    `critic_activation` (Choice of `activations`), `critic_group_size`
    (Choice of `group_sizes`, active only when the activation is
    `"groupsort"`), `critic_depth` (hidden layers) and `critic_width`. Hidden
    layers are `Dense -> activation`; the output layer is a `Dense(1)` with
    the same constraint, so a constrained critic is 1-Lipschitz (for
    `"linf"` in the L-inf input norm, hence also in L2). Widths step by the
    lcm of 2 (if MaxMin can be chosen) and the group sizes (if GroupSort can
    be chosen), so every width suits every activation; a width range is
    rounded inwards to such multiples.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        data_dim: size of one sample.
        constraints: sequence of `"bjorck"` (`BjorckDense`), `"spectral"`
            (`SpectralNormDense`), `"linf"` (`LInfProjectedDense`), `"none"`
            (`keras.layers.Dense`).
        activations: sequence of `"relu"`, `"maxmin"`, `"groupsort"`,
            `"fullsort"`.
        group_sizes: GroupSort group sizes to choose from (>= 2).
        depth: number of hidden layers, an int or an inclusive `(low, high)`
            range.
        width: hidden width, an int or an inclusive `(low, high)` range.
        name: model name.

    Returns:
        A built `keras.Sequential` with an explicit `keras.Input`.

    Example:

        >>> hp = keras_tuner.HyperParameters()
        >>> critic = critic_mlp(hp, data_dim=2, constraints=["bjorck"], activations=["groupsort"])
    """
    space = _CriticSpace(constraints, activations, group_sizes, depth, width)
    return space.build(hp, _dims("data_dim", data_dim), name=name)


def generator_mlp(hp, latent_dim, data_dim, depth=(1, 3), width=(16, 64), name="generator"):
    """Builds a ReLU generator MLP `latent_dim -> data_dim` from hyperparameters.

    Registers `generator_depth` (hidden layers) and `generator_width`; the
    output layer is linear.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        latent_dim: size of the latent vectors.
        data_dim: size of one sample.
        depth: number of hidden layers, an int or an inclusive `(low, high)` range.
        width: hidden width, an int or an inclusive `(low, high)` range.
        name: model name.

    Returns:
        A built `keras.Sequential` with an explicit `keras.Input`.

    Example:

        >>> generator = generator_mlp(keras_tuner.HyperParameters(), latent_dim=2, data_dim=2, depth=2, width=64)
    """
    return _build_generator(
        hp, _dims("latent_dim", latent_dim), _dims("data_dim", data_dim),
        _int_bounds("generator_depth", depth), _int_bounds("generator_width", width), name,
    )


def _build_generator(hp, latent_dim, data_dim, depth, width, name="generator"):
    depth = _hp_int(hp, "generator_depth", depth, default=2)
    width = _hp_int(hp, "generator_width", width, default=32)
    return relu_mlp(latent_dim, data_dim, depth, width, name=name)


# --- Hypermodels.


class _LipschitzHyperModel(keras_tuner.HyperModel):
    """The critic and penalty search space shared by both hypermodels.

    Args:
        data_dim: size of one sample.
        penalty_space: a `PenaltySpace`.
        critic_space: a `_CriticSpace`.
        seed: seed of the penalties' random draws.
        name: hypermodel name.
        tunable: as in `keras_tuner.HyperModel`.
    """

    def __init__(self, data_dim, penalty_space, critic_space, seed, name, tunable):
        super().__init__(name=name, tunable=tunable)
        self.data_dim = _dims("data_dim", data_dim)
        self.penalty_space = penalty_space
        self.critic_space = critic_space
        if penalty_lib.NONE in penalty_space.penalties and "none" in critic_space.constraints:
            raise ValueError(
                "`penalties` and `constraints` both contain 'none': an unconstrained critic without a penalty is "
                "not Lipschitz and its Wasserstein estimate diverges. Remove 'none' from one of them."
            )
        self.seed = _validation.random_seed("seed", seed)

    @property
    def penalties(self):
        """The penalty names the search chooses from."""
        return self.penalty_space.penalties

    def build_penalty(self, hp):
        """Registers the penalty hyperparameters and returns the penalty (or `None`); see `PenaltySpace.build`."""
        return self.penalty_space.build(hp, self.seed)

    def build_critic(self, hp):
        """Registers the critic hyperparameters and returns the built critic (see `critic_mlp`)."""
        return self.critic_space.build(hp, self.data_dim)


class WGANHyperModel(_LipschitzHyperModel):
    """A Keras Tuner hypermodel of `tflip.models.WGAN` on vector data, scored by the exact W1.

    `build(hp)` returns a compiled and built WGAN with MLP generator and
    critic; `fit` trains it with `model.fit` plus an `ExactWasserstein`
    callback on `held_out_real`, which logs `w1_exact` (exact W1 between
    `len(held_out_real)` generated samples, fixed latents, and the held-out
    samples) every epoch. The tuner reads the best epoch of the returned
    history and checkpoints that epoch's weights, so a trial's score and the
    weights `get_best_models` loads belong to the same epoch. Use
    `WGANHyperModel.objective`, `Objective("w1_exact", "min")`.

    Search space (names of the hyperparameters; "fix" an entry by passing a
    single value, restrict it by a shorter list or range):

    - `penalty`: Choice of `penalties`; `penalty_weight` (log) for gp, lp,
      alp, maxgp; `alp_epsilon_low`, `alp_epsilon_high` (log) and
      `alp_power_iterations` only for alp. MaxAL keeps its defaults.
    - `critic_constraint`, `critic_activation`, `critic_group_size` (only
      for groupsort), `critic_depth`, `critic_width`: see `critic_mlp`.
    - `generator_depth`, `generator_width`: see `generator_mlp`.
    - `critic_learning_rate`, `generator_learning_rate` (log) of
      `Adam(lr, beta_1=0.5, beta_2=0.9)`; `n_critic`.

    Batches: a WGAN splits each batch into `n_critic` critic batches. With
    `critic_batch_size`, `fit` passes `batch_size = n_critic *
    critic_batch_size` so that the critic batch stays fixed while `n_critic`
    varies (array inputs only); otherwise pass `batch_size` to `search`.

    Args:
        data_dim: size of one sample.
        latent_dim: size of the latent vectors.
        held_out_real: held-out real samples `(n, data_dim)` for `w1_exact`
            (O(n^3) per epoch: n = 200 to 2000).
        penalties: penalty names to choose from: keys of
            `tflip.penalties.REGISTRY` (default: `"gp"`, `"lp"`, `"alp"`,
            `"maxgp"`, `"maxal"`) and `"none"` (for constrained critics only).
        penalty_weight: weight, a number or a `(low, high)` log range
            (`None`: the registry's range, `tflip.penalties.WEIGHT`).
        alp_epsilon_low: ALP perturbation lengths `epsilon = (low, high)`:
            lower end, a number or a range, entirely below ... (`None`, as
            for every penalty hyperparameter: the registry's range)
        alp_epsilon_high: ... the upper end.
        alp_power_iterations: ALP power iterations, an int or a range (>= 0).
        constraints: critic constraints (see `critic_mlp`).
        activations: critic activations (see `critic_mlp`).
        group_sizes: GroupSort group sizes.
        critic_depth: critic hidden layers, an int or a range.
        critic_width: critic width, an int or a range.
        generator_depth: generator hidden layers, an int or a range.
        generator_width: generator width, an int or a range.
        critic_learning_rate: a number or a `(low, high)` log range.
        generator_learning_rate: a number or a `(low, high)` log range.
        n_critic: critic steps per generator step, an int or a range.
        critic_batch_size: optional critic batch size (see above).
        loss: the WGAN loss (`"wasserstein"`, `"hinge"`, `"nonsaturating"`), not tuned.
        eval_seed: seed of the generated samples of `w1_exact`.
        seed: seed of the WGAN's latent draws and of the penalties.
        name: hypermodel name.
        tunable: as in `keras_tuner.HyperModel`.

    Example:

        >>> held_out = tflip.datasets.eight_gaussians(500, seed=1)
        >>> hypermodel = WGANHyperModel(2, 2, held_out, penalties=["lp", "alp"], critic_batch_size=64)
        >>> tuner = keras_tuner.Hyperband(hypermodel, objective=hypermodel.objective, max_epochs=9,
        ...                               directory="tuning", project_name="wgan")
        >>> tuner.search(tflip.datasets.eight_gaussians(64_000), verbose=0)
        >>> best = tuner.get_best_models(1)[0]
    """

    objective = keras_tuner.Objective("w1_exact", direction="min")

    def __init__(
        self,
        data_dim,
        latent_dim,
        held_out_real,
        penalties=("gp", "lp", "alp", "maxgp", "maxal"),
        penalty_weight=None,
        alp_epsilon_low=None,
        alp_epsilon_high=None,
        alp_power_iterations=None,
        constraints=CONSTRAINTS,
        activations=ACTIVATIONS,
        group_sizes=(2, 4),
        critic_depth=(1, 3),
        critic_width=(16, 64),
        generator_depth=(1, 3),
        generator_width=(16, 64),
        critic_learning_rate=(1e-5, 1e-2),
        generator_learning_rate=(1e-5, 1e-2),
        n_critic=(1, 5),
        critic_batch_size=None,
        loss="wasserstein",
        eval_seed=0,
        seed=0,
        name=None,
        tunable=True,
    ):
        penalty_space = PenaltySpace(penalties, {
            "penalty_weight": penalty_weight, "alp_epsilon_low": alp_epsilon_low,
            "alp_epsilon_high": alp_epsilon_high, "alp_power_iterations": alp_power_iterations,
        })
        critic_space = _CriticSpace(constraints, activations, group_sizes, critic_depth, critic_width)
        super().__init__(data_dim, penalty_space, critic_space, seed, name, tunable)
        self.latent_dim = _dims("latent_dim", latent_dim)
        self.held_out_real = _samples("held_out_real", held_out_real, self.data_dim)
        self.generator_depth = _int_bounds("generator_depth", generator_depth)
        self.generator_width = _int_bounds("generator_width", generator_width)
        self.critic_learning_rate = _float_bounds("critic_learning_rate", critic_learning_rate)
        self.generator_learning_rate = _float_bounds("generator_learning_rate", generator_learning_rate)
        self.n_critic = _int_bounds("n_critic", n_critic)
        self.critic_batch_size = (
            None if critic_batch_size is None else _validation.positive_int("critic_batch_size", critic_batch_size)
        )
        self.loss = _validation.one_of("loss", loss, ("wasserstein", "hinge", "nonsaturating"))
        self.eval_seed = _validation.random_seed("eval_seed", eval_seed)

    def build(self, hp):
        """Builds and compiles a WGAN from `hp`.

        Args:
            hp: a `keras_tuner.HyperParameters`.

        Returns:
            A compiled, built `tflip.models.WGAN` (its weights, optimizer
            slots and penalty state exist, so tuner checkpoints load into a
            fresh build).
        """
        penalty = self.build_penalty(hp)
        critic = self.build_critic(hp)
        generator = _build_generator(hp, self.latent_dim, self.data_dim, self.generator_depth, self.generator_width)
        critic_lr = _hp_float(hp, "critic_learning_rate", self.critic_learning_rate, default=1e-4)
        generator_lr = _hp_float(hp, "generator_learning_rate", self.generator_learning_rate, default=1e-4)
        n_critic = _hp_int(hp, "n_critic", self.n_critic, default=5)
        model = WGAN(generator, critic, self.latent_dim, penalty=penalty, n_critic=n_critic, loss=self.loss,
                     seed=self.seed)
        # Compile after the WGAN built itself (its critic has an Input), so the
        # optimizers build their slots now: `load_weights` needs them to exist.
        model.compile(
            critic_optimizer=keras.optimizers.Adam(critic_lr, beta_1=0.5, beta_2=0.9),
            generator_optimizer=keras.optimizers.Adam(generator_lr, beta_1=0.5, beta_2=0.9),
        )
        return model

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` with `model.fit`, logging `w1_exact` every epoch.

        Args:
            hp: the trial's `keras_tuner.HyperParameters`.
            model: the WGAN from `build`.
            *args: `fit` positional arguments (the real training samples).
            **kwargs: `fit` keyword arguments (`epochs`, `callbacks`, ...).

        Returns:
            The `History`: Keras Tuner scores a trial by its best epoch.
        """
        callbacks = list(kwargs.pop("callbacks", None) or [])
        # First in the list: the tuner's checkpoint callback and the user's
        # callbacks (TensorBoard, EarlyStopping) read `w1_exact` from the same logs.
        monitor = ExactWasserstein(self.held_out_real, every_n_epochs=1, seed=self.eval_seed, name=self.objective.name)
        kwargs["callbacks"] = [monitor] + callbacks
        if self.critic_batch_size is not None:
            if "batch_size" in kwargs:
                raise ValueError(
                    "Pass either `critic_batch_size` to WGANHyperModel or `batch_size` to `search`, not both."
                )
            kwargs["batch_size"] = model.n_critic * self.critic_batch_size
        return model.fit(*args, **kwargs)


class WassersteinCriticHyperModel(_LipschitzHyperModel):
    """A Keras Tuner hypermodel of `tflip.models.WassersteinCritic`, scored by the held-out estimate.

    `build(hp)` returns a compiled, built `WassersteinCritic`; `fit` trains it
    on `(p, q)` pairs (`search(p_train, q_train, ...)` or a dataset of pairs)
    with `held_out_pairs` as validation data, so every epoch logs
    `val_wasserstein`, the dual objective `mean f(p) - mean f(q)` of the
    current critic on the held-out pairs. For a 1-Lipschitz critic it is an
    unbiased estimate of a lower bound of W1(P, Q): a larger value is a
    better critic, hence `WassersteinCriticHyperModel.objective =
    Objective("val_wasserstein", "max")`.

    A penalized critic is only approximately Lipschitz and can overshoot W1,
    so maximizing the estimate favours weak penalties: the default space
    holds only critics that are Lipschitz by construction (`penalties=
    ("none",)`, constraints bjorck / spectral / linf). Penalties can be added
    (the same hyperparameters as in `WGANHyperModel`) for comparison.

    Search space: `penalty` (and its conditional hyperparameters, see
    `WGANHyperModel`), the critic (see `critic_mlp`), and `learning_rate`
    (log) of `Adam(lr)`.

    Args:
        data_dim: size of one sample.
        held_out_pairs: `(p, q)`, held-out samples `(n, data_dim)` of P and Q.
        penalties: penalty names (`"none"` default; `"gp"`, `"lp"`, `"alp"`,
            `"maxgp"`, `"maxal"`).
        penalty_weight: as in `WGANHyperModel`.
        alp_epsilon_low: as in `WGANHyperModel`.
        alp_epsilon_high: as in `WGANHyperModel`.
        alp_power_iterations: as in `WGANHyperModel`.
        constraints: critic constraints (default bjorck, spectral, linf).
        activations: see `critic_mlp`.
        group_sizes: see `critic_mlp`.
        critic_depth: see `critic_mlp`.
        critic_width: see `critic_mlp`.
        learning_rate: a number or a `(low, high)` log range.
        seed: seed of the penalties.
        name: hypermodel name.
        tunable: as in `keras_tuner.HyperModel`.

    Example:

        >>> p, q = tflip.datasets.three_cones(8192, seed=0)
        >>> hypermodel = WassersteinCriticHyperModel(2, tflip.datasets.three_cones(1024, seed=1))
        >>> tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=8)
        >>> tuner.search(p, q, batch_size=256, epochs=5, verbose=0)
    """

    objective = keras_tuner.Objective("val_wasserstein", direction="max")

    def __init__(
        self,
        data_dim,
        held_out_pairs,
        penalties=("none",),
        penalty_weight=None,
        alp_epsilon_low=None,
        alp_epsilon_high=None,
        alp_power_iterations=None,
        constraints=("bjorck", "spectral", "linf"),
        activations=ACTIVATIONS,
        group_sizes=(2, 4),
        critic_depth=(1, 3),
        critic_width=(16, 64),
        learning_rate=(1e-4, 1e-2),
        seed=0,
        name=None,
        tunable=True,
    ):
        penalty_space = PenaltySpace(penalties, {
            "penalty_weight": penalty_weight, "alp_epsilon_low": alp_epsilon_low,
            "alp_epsilon_high": alp_epsilon_high, "alp_power_iterations": alp_power_iterations,
        })
        critic_space = _CriticSpace(constraints, activations, group_sizes, critic_depth, critic_width)
        super().__init__(data_dim, penalty_space, critic_space, seed, name, tunable)
        try:
            p, q = held_out_pairs
        except (TypeError, ValueError):
            raise ValueError(
                f"`held_out_pairs` must be a pair (p, q) of sample arrays, got {type(held_out_pairs).__name__}."
            ) from None
        p = _samples("held_out_pairs", p, self.data_dim)
        q = _samples("held_out_pairs", q, self.data_dim)
        if len(p) != len(q):
            raise ValueError(f"`held_out_pairs` must hold as many p as q samples, got {len(p)} and {len(q)}.")
        self.held_out_pairs = (p, q)
        self.learning_rate = _float_bounds("learning_rate", learning_rate)

    def build(self, hp):
        """Builds and compiles a WassersteinCritic from `hp`.

        Args:
            hp: a `keras_tuner.HyperParameters`.

        Returns:
            A compiled, built `tflip.models.WassersteinCritic`.
        """
        penalty = self.build_penalty(hp)
        critic = self.build_critic(hp)
        learning_rate = _hp_float(hp, "learning_rate", self.learning_rate, default=1e-3)
        model = WassersteinCritic(critic, penalty=penalty)
        model.compile(keras.optimizers.Adam(learning_rate))
        return model

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` on pairs with the held-out pairs as validation data.

        Args:
            hp: the trial's `keras_tuner.HyperParameters`.
            model: the WassersteinCritic from `build`.
            *args: `fit` positional arguments (`p_samples, q_samples` or a
                dataset of pairs).
            **kwargs: `fit` keyword arguments (`epochs`, `batch_size`, ...);
                not `validation_data`.

        Returns:
            The `History`, with `val_wasserstein` every epoch.
        """
        if kwargs.get("validation_data") is not None or kwargs.get("validation_split"):
            raise ValueError(
                "WassersteinCriticHyperModel validates on its `held_out_pairs`: do not pass `validation_data` or "
                "`validation_split` to `search`."
            )
        kwargs["validation_data"] = self.held_out_pairs
        return model.fit(*args, **kwargs)
