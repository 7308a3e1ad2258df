"""tflip.tuner: search spaces reach the models, tuners run end to end with the right objective."""

import keras
import keras_tuner
import numpy as np
import pytest

import tflip
import tflip.tuner
from tests.layer_checks import mirrored_strategy
from tflip.datasets import eight_gaussians, three_cones
from tflip.metrics import wasserstein1_exact
from tflip.tuner import WassersteinCriticHyperModel, WGANHyperModel, critic_mlp

HELD_OUT = eight_gaussians(100, seed=1)
TRAIN = eight_gaussians(256, seed=0)
# Björck and L-inf critics take ~6 s to trace a WGAN step on 2 cores; the
# end-to-end searches use the cheap constraints and the build tests the rest.
TINY = dict(critic_depth=1, critic_width=8, generator_depth=1, generator_width=8, n_critic=(1, 2),
            critic_learning_rate=(1e-3, 1e-2), generator_learning_rate=(1e-3, 1e-2))


def build_with(hypermodel, **values):
    """Builds once to register the space, then again with `values` set (the others at their defaults)."""
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(values)
    hp.ensure_active_values()
    return hypermodel.build(hp), hp


class Recorder(keras.callbacks.Callback):
    """Sends each fit's `w1_exact` / `val_wasserstein` values to `sink`.

    The tuner deep-copies callbacks; a plain function survives the copy
    (a list attribute would not), so the records reach the test.
    """

    def __init__(self, sink, key):
        super().__init__()
        self.sink = sink
        self.key = key

    def on_train_begin(self, logs=None):
        self.sink(None)

    def on_epoch_end(self, epoch, logs=None):
        self.sink(logs[self.key])


def recorder(key):
    runs = []

    def sink(value):
        if value is None:
            runs.append([])
        else:
            runs[-1].append(value)

    return Recorder(sink, key), runs


def sorted_trials(tuner):
    return [tuner.oracle.trials[i] for i in sorted(tuner.oracle.trials, key=int)]


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(data_dim=0), "data_dim"),
        (dict(latent_dim=-1), "latent_dim"),
        (dict(held_out_real=np.zeros((10, 3))), "held_out_real"),
        (dict(held_out_real=np.zeros((0, 2))), "held_out_real"),
        (dict(penalties=["lp", "wgan"]), "penalties"),
        (dict(penalties=[]), "penalties"),
        (dict(constraints=["orthogonal"]), "constraints"),
        (dict(activations=["tanh"]), "activations"),
        (dict(group_sizes=[1]), "group_sizes"),
        (dict(penalty_weight=(10.0, 1.0)), "penalty_weight"),
        (dict(penalty_weight=-1.0), "penalty_weight"),
        (dict(critic_learning_rate="fast"), "critic_learning_rate"),
        (dict(n_critic=0), "n_critic"),
        (dict(alp_epsilon_low=(0.1, 2.0), alp_epsilon_high=(1.0, 10.0)), "alp_epsilon_high"),
        (dict(critic_width=6, group_sizes=(4,)), "critic_width"),
        (dict(critic_width=(5, 7), group_sizes=(4,)), "critic_width"),
        (dict(penalties=["none"], constraints=["none", "bjorck"]), "penalties"),
        (dict(critic_batch_size=0), "critic_batch_size"),
        (dict(loss="l2"), "loss"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, argument):
    arguments = dict(data_dim=2, latent_dim=2, held_out_real=HELD_OUT)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        WGANHyperModel(**arguments)


def test_bad_critic_hypermodel_arguments():
    with pytest.raises(ValueError, match="`held_out_pairs`"):
        WassersteinCriticHyperModel(2, HELD_OUT)
    with pytest.raises(ValueError, match="`held_out_pairs`"):
        WassersteinCriticHyperModel(2, (HELD_OUT, HELD_OUT[:50]))
    with pytest.raises(ValueError, match="`penalties`"):
        WassersteinCriticHyperModel(2, three_cones(10), constraints=["none"])


@pytest.mark.parametrize("penalty", ["gp", "lp", "alp", "maxgp", "maxal", "none"])
def test_penalty_and_optimizer_hyperparameters_reach_the_wgan(penalty):
    hypermodel = WGANHyperModel(2, 3, HELD_OUT, penalties=tflip.tuner.PENALTIES, constraints=["spectral"],
                                **{**TINY, "n_critic": (1, 5)})
    values = dict(penalty=penalty, penalty_weight=3.5, alp_epsilon_low=0.05, alp_epsilon_high=4.0,
                  alp_power_iterations=2, critic_learning_rate=2e-3, generator_learning_rate=5e-3, n_critic=3)
    gan, hp = build_with(hypermodel, **values)
    assert isinstance(gan, tflip.models.WGAN) and gan.built
    assert gan.latent_dim == 3 and gan.n_critic == 3
    assert float(gan.critic_optimizer.learning_rate) == pytest.approx(2e-3)
    assert float(gan.generator_optimizer.learning_rate) == pytest.approx(5e-3)
    classes = {"gp": tflip.penalties.GradientPenalty, "lp": tflip.penalties.LipschitzPenalty,
               "alp": tflip.penalties.AdversarialLipschitzPenalty, "maxgp": tflip.penalties.MaxGradientPenalty,
               "maxal": tflip.penalties.MaxGradientAugmentedLagrangian}
    if penalty == "none":
        assert gan.penalty is None
    else:
        assert type(gan.penalty) is classes[penalty]
    # Conditional hyperparameters: the weight only where a weight exists, ALP's only for ALP.
    assert ("penalty_weight" in hp) == (penalty in ("gp", "lp", "alp", "maxgp"))
    for name in ("alp_epsilon_low", "alp_epsilon_high", "alp_power_iterations"):
        assert (name in hp) == (penalty == "alp")
    if penalty in ("gp", "lp", "alp", "maxgp"):
        assert gan.penalty.weight == pytest.approx(3.5)
    if penalty == "alp":
        assert gan.penalty.epsilon == pytest.approx((0.05, 4.0))
        assert gan.penalty.power_iterations == 2


@pytest.mark.parametrize("constraint", ["bjorck", "spectral", "linf", "none"])
def test_critic_layers_follow_constraint_and_activation(constraint):
    dense = {"bjorck": tflip.layers.BjorckDense, "spectral": tflip.layers.SpectralNormDense,
             "linf": tflip.layers.LInfProjectedDense, "none": keras.layers.Dense}[constraint]
    activations = {"relu": keras.layers.ReLU, "maxmin": tflip.layers.MaxMin, "groupsort": tflip.layers.GroupSort,
                   "fullsort": tflip.layers.FullSort}
    for activation, layer_class in activations.items():
        hp = keras_tuner.HyperParameters()
        critic = critic_mlp(hp, 3, constraints=[constraint], activations=[activation], group_sizes=(4,), depth=2,
                            width=8)
        assert critic.built and critic.input_shape == (None, 3) and critic.output_shape == (None, 1)
        kinds = [type(layer) for layer in critic.layers]
        assert kinds == [dense, layer_class, dense, layer_class, dense], kinds
        assert ("critic_group_size" in hp) == (activation == "groupsort")
        if activation == "groupsort":
            assert all(layer.group_size == 4 for layer in critic.layers if isinstance(layer, tflip.layers.GroupSort))


def test_widths_suit_every_activation_and_group_size():
    hypermodel = WGANHyperModel(2, 2, HELD_OUT, activations=["maxmin", "groupsort"], group_sizes=(3, 4),
                                critic_width=(10, 40))
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    space = {h.name: h for h in hp.space}
    width = space["critic_width"]
    # lcm(2, 3, 4) = 12, and the range is rounded inwards to its multiples.
    assert (width.min_value, width.max_value, width.step) == (12, 36, 12)
    group_size = space["critic_group_size"]
    assert group_size.values == [3, 4] and group_size.conditions[0].values == ["groupsort"]
    gan, _ = build_with(hypermodel, critic_activation="groupsort", critic_group_size=3, critic_width=36)
    assert gan.critic.layers[0].units == 36 and gan.critic.layers[1].group_size == 3


def test_fixed_values_become_fixed_hyperparameters():
    hypermodel = WGANHyperModel(2, 2, HELD_OUT, penalties=["alp"], penalty_weight=7.0, alp_epsilon_low=0.2,
                                alp_power_iterations=1, n_critic=4, critic_depth=(1, 1))
    hp = keras_tuner.HyperParameters()
    gan = hypermodel.build(hp)
    fixed = {h.name for h in hp.space if type(h).__name__ == "Fixed"}
    assert {"penalty_weight", "alp_epsilon_low", "alp_power_iterations", "n_critic", "critic_depth"} <= fixed
    assert "alp_epsilon_high" not in fixed
    assert gan.penalty.weight == 7.0 and gan.penalty.epsilon[0] == 0.2 and gan.n_critic == 4


def test_built_models_checkpoint_and_reload(tmp_path):
    hypermodel = WGANHyperModel(2, 2, HELD_OUT, penalties=["maxal"], constraints=["spectral"], **TINY)
    gan, hp = build_with(hypermodel, n_critic=2)
    assert gan.critic_optimizer.built and gan.generator_optimizer.built and gan.penalty.built
    path = str(tmp_path / "gan.weights.h5")
    gan.save_weights(path)
    fresh = hypermodel.build(hp)
    assert any(not np.array_equal(a, b) for a, b in zip(gan.weights, fresh.weights))
    fresh.load_weights(path)
    for a, b in zip(gan.weights, fresh.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    critic_hm = WassersteinCriticHyperModel(2, three_cones(64, seed=1), constraints=["spectral"], critic_depth=1,
                                            critic_width=8)
    critic = critic_hm.build(keras_tuner.HyperParameters())
    assert critic.built and critic.optimizer.built
    critic.save_weights(str(tmp_path / "critic.weights.h5"))


def test_critic_batch_size_sets_the_fit_batch():
    hypermodel = WGANHyperModel(2, 2, HELD_OUT, penalties=["lp"], constraints=["none"], activations=["relu"],
                                critic_batch_size=32, **TINY)
    gan, hp = build_with(hypermodel, n_critic=2)
    # 256 samples in batches of n_critic * 32 = 64.
    history = hypermodel.fit(hp, gan, TRAIN, epochs=1, verbose=0)
    assert history.params["steps"] == 4
    with pytest.raises(ValueError, match="critic_batch_size"):
        hypermodel.fit(hp, gan, TRAIN, epochs=1, batch_size=64, verbose=0)


def test_random_search_minimizes_the_exact_w1(tmp_path):
    hypermodel = WGANHyperModel(2, 2, HELD_OUT, penalties=["lp", "alp"], constraints=["none", "spectral"],
                                activations=["relu", "groupsort"], group_sizes=(2, 4), **TINY)
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=3, seed=3,
                                     directory=str(tmp_path), project_name="random", overwrite=True)
    assert tuner.oracle.objective.name == "w1_exact" and tuner.oracle.objective.direction == "min"
    # Building once per condition registered the whole conditional space up front.
    names = {hp.name for hp in tuner.oracle.hyperparameters.space}
    assert {"penalty_weight", "alp_epsilon_low", "alp_power_iterations", "critic_group_size"} <= names
    record, runs = recorder("w1_exact")
    tuner.search(TRAIN, epochs=2, batch_size=64, verbose=0, callbacks=[record])

    trials = sorted_trials(tuner)
    assert len(trials) == len(runs) == 3
    for trial, values in zip(trials, runs):
        # The score is the best epoch's w1_exact of the history, as logged.
        assert len(values) == 2
        assert trial.score == pytest.approx(min(values))
        assert trial.best_step == int(np.argmin(values))
        active = trial.hyperparameters.values
        assert ("alp_epsilon_low" in active) == (active["penalty"] == "alp")
        assert ("penalty_weight" in active)
        assert ("critic_group_size" in active) == (active["critic_activation"] == "groupsort")
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == min(trial.score for trial in trials)

    # The checkpoint holds the best epoch's weights: it reproduces the score.
    model = tuner.get_best_models(1)[0]
    assert isinstance(model, tflip.models.WGAN)
    assert wasserstein1_exact(model.generate(len(HELD_OUT), seed=hypermodel.eval_seed), HELD_OUT) == pytest.approx(
        best.score, rel=1e-5
    )
    assert model.n_critic == best.hyperparameters.values["n_critic"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Model 'wgan.*had a build config")
def test_hyperband_resumes_trials_from_checkpoints(tmp_path):
    hypermodel = WGANHyperModel(2, 2, HELD_OUT, penalties=["gp", "maxgp"], constraints=["none"],
                                activations=["relu", "maxmin"], **{**TINY, "n_critic": 1})
    tuner = keras_tuner.Hyperband(hypermodel, objective=hypermodel.objective, max_epochs=2, factor=2, seed=1,
                                  directory=str(tmp_path), project_name="hyperband", overwrite=True)
    tuner.search(TRAIN, batch_size=64, verbose=0)
    trials = sorted_trials(tuner)
    # max_epochs=2, factor=2: two 1-epoch trials, the better one continued for a 2nd epoch, two 2-epoch trials.
    assert len(trials) == 5
    resumed = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
    assert len(resumed) == 1 and resumed[0].hyperparameters.values["tuner/initial_epoch"] == 1
    assert all(np.isfinite(t.score) for t in trials)
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == min(t.score for t in trials)
    model = tuner.get_best_models(1)[0]
    assert wasserstein1_exact(model.generate(len(HELD_OUT), seed=0), HELD_OUT) == pytest.approx(best.score, rel=1e-5)


@pytest.mark.slow
def test_random_search_under_mirrored_strategy(tmp_path):
    strategy = mirrored_strategy()
    hypermodel = WGANHyperModel(2, 2, HELD_OUT, penalties=["lp"], constraints=["none"], activations=["relu"],
                                **{**TINY, "n_critic": 1})
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=2, seed=0,
                                     distribution_strategy=strategy, directory=str(tmp_path),
                                     project_name="mirrored", overwrite=True)
    record, runs = recorder("w1_exact")
    tuner.search(TRAIN, epochs=1, batch_size=64, verbose=0, callbacks=[record])
    trials = sorted_trials(tuner)
    assert len(trials) == len(runs) == 2
    for trial, values in zip(trials, runs):
        assert trial.score == pytest.approx(min(values))
    model = tuner.get_best_models(1)[0]
    assert model.distribute_strategy is strategy
    best = tuner.oracle.get_best_trials(1)[0]
    assert wasserstein1_exact(model.generate(len(HELD_OUT), seed=0), HELD_OUT) == pytest.approx(best.score, rel=1e-5)


@pytest.mark.slow
def test_critic_search_maximizes_the_held_out_estimate(tmp_path):
    held_out = three_cones(128, seed=1)
    hypermodel = WassersteinCriticHyperModel(2, held_out, constraints=["spectral"], activations=["relu", "maxmin"],
                                             critic_depth=1, critic_width=8, learning_rate=(1e-3, 1e-1))
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=3, seed=2,
                                     directory=str(tmp_path), project_name="critic", overwrite=True)
    assert tuner.oracle.objective.name == "val_wasserstein" and tuner.oracle.objective.direction == "max"
    record, runs = recorder("val_wasserstein")
    p, q = three_cones(256, seed=0)
    tuner.search(p, q, epochs=2, batch_size=64, verbose=0, callbacks=[record])
    trials = sorted_trials(tuner)
    assert len(trials) == len(runs) == 3
    for trial, values in zip(trials, runs):
        assert trial.score == pytest.approx(max(values))
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == max(trial.score for trial in trials)
    model = tuner.get_best_models(1)[0]
    assert isinstance(model, tflip.models.WassersteinCritic)
    logs = model.evaluate(*held_out, batch_size=64, verbose=0, return_dict=True)
    assert logs["wasserstein"] == pytest.approx(best.score, rel=1e-5)
    with pytest.raises(ValueError, match="held_out_pairs"):
        hypermodel.fit(best.hyperparameters, model, p, q, validation_data=held_out)
